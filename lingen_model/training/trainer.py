"""Training: a VAE stage, a denoiser stage and a distill stage (Wan-converted students), resumable,
single process or FSDP2 under torchrun.

Config (YAML, every key checked)::

    stage: vae | denoiser | distill
    run_dir: runs/tiny-vae            # checkpoints + state; resumed when it already holds one
    steps: 3000                       # total optimiser steps (resume continues up to this)
    batch_size: 8                     # per process
    lr: 1.0e-3, weight_decay: 0.0, warmup_steps: 100, grad_clip: 1.0, ema_decay: 0.999
    lr_floor: 0.1                     # the cosine ends at lr_floor · lr at `steps`
    schedule_start: 0                 # the step the warm-up and cosine are counted from (a stage continuing a run)
    seed: 0, log_every: 10, save_every_steps: 200, save_every_minutes: 10, num_threads: null
    max_minutes: null                 # stop (save, export) after this many wall-clock minutes of this invocation
    stop_at_step: null                # stop (save, export) at this step; the lr schedule still runs to `steps`
    data: {source: shapes|folder|shards, path, height, width, fps, frames, still_prob, max_objects, entry_prob, workers}
    vae: {VAEConfig fields}           # vae stage: the architecture
    kl_weight: 1.0e-6                 # vae stage
    vae_checkpoint: runs/tiny-vae     # denoiser stage: the trained VAE (a run dir or a checkpoint dir)
    denoiser: {size: tiny, mixer: mate, overrides: {...}}
    text_encoder: {backend: minilm}
    caption_dropout: 0.1              # captions replaced by "" (for classifier-free guidance)
    t_offset_max: 0                   # denoiser stage: with probability t_offset_prob (0.5), shift the
    t_offset_prob: 0.5                #   temporal positions of a batch by a random 0…t_offset_max latent
                                      #   frames, so short training clips cover every position of long clips
    amp: auto                         # bf16 autocast: auto (on CUDA only) | bf16 (any device; ~1.9x faster
                                      #   denoiser steps on a CPU with AVX512-BF16, ~7x slower on one
                                      #   without: AVX2) | "off" (quoted: YAML reads a bare off as false)
    t_logit_mean: 0.0                 # denoiser stage: training times t = sigmoid(u), u ~ N(t_logit_mean, 1);
                                      #   > 0 trains more on high noise, where the layout is decided (SD3 §3.1)
    t_high_prob: 0.0                  # denoiser stage: with this probability a training time is drawn from
    t_high_min: 0.9                   #   U(t_high_min, 1) instead: trains the first sampler steps, where only
                                      #   the caption can place the object (0 = off)
    t_ramp_prob: 0.0                  # denoiser stage: with this probability a sample's time becomes a ramp
    t_ramp_max: 0.15                  #   over its latent frames, slope U(0, t_ramp_max) per frame (earlier
                                      #   frames less noisy), as a staggered sampler walks it (flow.ramp_times;
                                      #   0 = off). Not with context parallelism or the distill stage
    contrast_weight: 0.0              # denoiser stage: λ of a contrastive flow-matching term (ΔFM) whose
    contrast_t_min: 0.5               #   negative is the same clip played backwards, for captioned samples
                                      #   with t ≥ contrast_t_min: the caption's motion words must explain
                                      #   the direction of time (0 = off)
    export: {dir: ..., name: lingen-tiny, sampling: {steps: 20, cfg_scale: 5.0}}   # denoiser and distill stages
    student: ./lingen-wan-1.3b        # distill stage: a `lingen convert` checkpoint (student, VAE, text encoder)
    train: ma                         # distill stage: ma (MA-branch only; teacher = same weights, as_teacher)
                                      #   | all (every weight; teacher = frozen copy of the converted weights)
    activation_checkpointing: false   # recompute each block in backward (denoiser blocks; VAE blocks)
    dp_replicate: 1                   # torchrun: replica groups (1 = FSDP, shard over all ranks; R > 1 = HSDP:
                                      #   shard within each of R groups of world/R ranks, all-reduce across them)
    context_parallel: 1               # torchrun, denoiser stage: split each clip's latent frames over groups of C
                                      #   consecutive ranks (mesh (dp, cp) = (world/C, C)); batch_size is per group

Method: rectified flow with logit-normal timesteps (SD3, Esser et al. 2024 §3–5), 10 %
caption dropout, AdamW, EMA of the weights (distill stage: velocity distillation against the
full-attention teacher on the same noised latents, ``lingen_model.wan.distill``), bf16 autocast (on CUDA by default; on a CPU with ``amp: bf16``,
where it wraps the denoiser only: VAE latents, flow targets and the loss stay float32), hybrid image/video
batches (LinGen §4). Files in ``run_dir`` are safetensors + JSON only, written atomically.

Under torchrun (``WORLD_SIZE`` > 1) the model is sharded with FSDP2 (``lingen_model.training.parallel``):
each rank draws its rows of one global batch of ``batch_size × world`` clips and the same
random numbers (timesteps, noise, caption dropout) that one process would draw for that
batch, so N ranks train like one process with an N× batch. The resumable state is a
distributed checkpoint (``lingen_model.training.dist_checkpoint``) in ``run_dir/checkpoints/step-N``
plus ``train_state.json`` (step, history, data position, optimizer hyper-parameters); it
resumes on any number of ranks. Run dirs of the older single-file layout
(``denoiser.safetensors`` + ``denoiser_ema.safetensors`` [+ ``optimizer.safetensors``]) still resume.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from lingen_model.errors import InputError
from lingen_model.io.files import atomic_path, atomic_write_json
from lingen_model.training.data import batches
from lingen_model.training.data_stream import ShardedBatches
from lingen_model.training.distributed import init_distributed



# --------------------------------------------------------------------------- safetensors state


def _save_tensors(tensors: dict[str, torch.Tensor], file: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(file) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))



def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state into (flat tensors for safetensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class EMA:
    """Exponential moving average of parameters (and copies of buffers): ``e ← d·e + (1−d)·p``.

    Under FSDP2 the shadow tensors are DTensors sharded like the parameters and each rank
    updates its own shards (no communication). Frozen parameters (``requires_grad`` off, e.g.
    the Wan weights of the distill stage's ``train: ma``) keep the value the shadow was cloned or
    resumed with: the average of a constant is the constant, but ``d·w + (1−d)·w`` in float32 is
    not always ``w``, and copying them every step would move the whole frozen model for nothing."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
        self.frozen = {n for n, p in model.named_parameters() if not p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move the shadow weights toward ``model``'s after optimizer step ``step`` (decay warmed up as
        ``min(decay, (1 + step) / (10 + step))``); under FSDP2 each rank updates its own shards."""
        from lingen_model.training.parallel import local

        d = min(self.decay, (1 + step) / (10 + step))  # warm-up of the decay
        for k, v in model.state_dict().items():
            shadow, v = local(self.shadow[k]), local(v.detach())
            if k in self.frozen:  # constant since the shadow was cloned (or resumed) from it: nothing to do
                continue
            if v.dtype.is_floating_point:
                shadow.mul_(d).add_(v.float(), alpha=1 - d)
            else:
                shadow.copy_(v)


# --------------------------------------------------------------------------- trainer


def _lr_at(step: int, cfg: dict) -> float:
    """The learning rate of optimizer step ``step``: a linear warm-up over ``warmup_steps`` (none when 0), then a
    cosine decay to ``lr_floor`` × the peak ``lr`` at ``steps``, both counted from ``schedule_start`` (a stage that
    continues a run with a fresh schedule; steps before it get the schedule's first value). ``cfg``: a loaded
    training config (``load_train_config``: every key present, defaults filled); a plain dict without
    ``schedule_start`` counts from 0. Cosine schedule: Loshchilov & Hutter, SGDR (2017)."""
    start = cfg.get("schedule_start", 0)
    step, total, warm = max(0, step - start), cfg["steps"] - start, cfg["warmup_steps"]
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    floor = cfg["lr_floor"]
    return cfg["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def load_vae(path: str | Path, device="cpu"):
    """The VAE of a VAE-stage run dir (``vae_config.json`` + ``vae_ema.safetensors``) or of a checkpoint dir
    (a ``WanVAE`` for a Wan-converted one: ``lingen preprocess --vae`` on a ``lingen convert`` output)."""
    from safetensors.torch import load_file

    from lingen_model.models.vae import CausalVideoVAE, VAEConfig

    path = Path(path)
    if (path / "vae_config.json").is_file():
        cfg = json.loads((path / "vae_config.json").read_text())
        weights = path / "vae_ema.safetensors"
    elif (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text())["vae"]
        weights = path / "vae.safetensors"
    else:
        raise ValueError(f"no VAE found in {path} (expected vae_config.json or config.json)")
    if cfg.get("arch") == "wan":
        from lingen_model.wan.vae import WanVAE, WanVAEConfig

        vae = WanVAE(WanVAEConfig.from_dict(cfg))
        vae.load_state_dict(load_file(str(weights)))
        return vae.to(device).eval().requires_grad_(False)
    vae = CausalVideoVAE(VAEConfig.from_dict(cfg))
    vae.load_state_dict(load_file(str(weights)))
    return vae.to(device).eval().requires_grad_(False)


def _rounded(x):
    """Times for the history, to 4 decimals: a list of floats, or of per-frame lists."""
    return [_rounded(v) if isinstance(v, list) else round(v, 4) for v in x]


class Trainer:
    """Runs one stage from a config dict (see the module docstring). ``log(str)`` receives progress lines.

    Under torchrun every rank builds the same model from the same seed, then shards it with
    FSDP2 (``lingen_model.training.parallel.apply_fsdp``); :meth:`save`, :meth:`export` and :meth:`train`
    are collective. Raises ValueError for a run dir of another stage or an unreadable checkpoint.
    """

    def __init__(self, cfg: dict, log: Callable[[str], None] | None = None,
                 on_step: Callable[[int, dict], None] | None = None):
        from lingen_model.training.parallel import apply_activation_checkpointing, apply_fsdp, device_mesh, mixed_precision_policy

        self.cfg = cfg
        self.rank, self.world = init_distributed()
        # context parallelism: groups of ``cp`` consecutive ranks share their clips (one data-parallel
        # replica each) and split every clip's latent frames (models/context_parallel.py)
        self.cp = int(cfg.get("context_parallel", 1))
        if self.world % self.cp:
            raise InputError(f"context_parallel {self.cp} must divide the number of ranks ({self.world})")
        if self.cp > 1 and cfg.get("t_ramp_prob", 0.0) > 0:
            raise InputError("t_ramp_prob > 0 (per-frame times) does not combine with context_parallel > 1")
        self.dp_rank, self.dp_world = self.rank // self.cp, self.world // self.cp
        self.cp_group = None
        if self.cp > 1:
            from lingen_model.models.context_parallel import context_parallel_group

            self.cp_group = context_parallel_group(self.cp)
        self.log = log if (log and self.rank == 0) else (lambda s: None)
        self.on_step = on_step if self.rank == 0 else None
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        self.device = torch.device(f"cuda:{self.rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
        self.amp = cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and self.device.type == "cuda")
        if self.amp and self.device.type == "cpu" and not cpu_has_native_bf16():
            self.log(f"note: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16, so bf16 autocast "
                     "is emulated: measured ~7x slower than amp: \"off\" (float32) on a 2-core AVX2 CPU")
        self.run_dir = Path(cfg["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stage = cfg["stage"]
        self.teacher = None  # distill stage, ``train: all``: a frozen copy of the converted weights
        torch.manual_seed(cfg["seed"])
        if self.stage == "vae":
            from lingen_model.models.vae import CausalVideoVAE, VAEConfig

            self.model = CausalVideoVAE(VAEConfig(**cfg["vae"]))
        elif self.stage == "distill":
            self._init_distill()
        else:
            from lingen_model.models.config import get_config
            from lingen_model.models.denoiser import Denoiser
            from lingen_model.models.text_encoder import build_text_encoder

            self.vae = load_vae(cfg["vae_checkpoint"], self.device)
            self.text_encoder = build_text_encoder(cfg["text_encoder"], device=self.device)
            spec = dict(cfg["denoiser"])
            dcfg = get_config(spec.get("size", "tiny"), spec.get("mixer", "mate"), **spec.get("overrides", {}))
            if dcfg.in_channels != self.vae.latent_channels or dcfg.text_dim != self.text_encoder.dim:
                dcfg = dataclasses.replace(dcfg, in_channels=self.vae.latent_channels, text_dim=self.text_encoder.dim)
            self.model = Denoiser(dcfg)
        if cfg["activation_checkpointing"]:
            apply_activation_checkpointing(self.model)
        if self.world > 1:  # same seed on every rank, so every rank holds the same weights before sharding
            self.mesh = device_mesh(self.world, self.device, cfg["dp_replicate"])
            apply_fsdp(self.model, self.mesh, mixed_precision_policy(self.device, self.amp))
            if self.teacher is not None:  # the frozen teacher copy is sharded like the student
                apply_fsdp(self.teacher, self.mesh, mixed_precision_policy(self.device, self.amp))
        self.model.to(self.device)
        if self.teacher is not None:
            self.teacher.to(self.device)
        self.ema = EMA(self.model, cfg["ema_decay"])
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if not p.requires_grad:  # distill stage ``train: ma``: the frozen Wan weights
                continue
            (no_decay if p.dim() < 2 or "norm" in n or "table" in n else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.99))
        self.step, self.elapsed = 0, 0.0
        self.history: list[dict] = []
        self._rewarm_from: int | None = None  # set when resuming without optimizer moments
        self._exported_step: int | None = None
        # every rank draws the same random numbers (for the whole global batch) and its own rows of the data
        self.gen = torch.Generator().manual_seed(cfg["seed"] * 1000)
        self.data = self._data_stream(cfg["seed"] * 1000)
        if cfg["data"].source == "shards":
            self._check_shards()
        self._resume()

    def _init_distill(self) -> None:
        """Distill stage: the student, its VAE and text encoder from the ``student`` checkpoint
        directory (``lingen convert``), float32 master weights; ``train: ma`` freezes every
        weight outside the MA-branch (the teacher is then the student under ``as_teacher``),
        ``train: all`` keeps a frozen teacher copy (full window, no MA-branch) of the converted weights.
        The run's text-encoder spec becomes the checkpoint's. Raises ValueError (not a
        Wan-converted checkpoint, no MA-branch to train, unreadable checkpoint)."""
        from lingen_model.generation.checkpoint import load_checkpoint
        from lingen_model.models.text_encoder import build_text_encoder
        from lingen_model.wan.denoiser import WanDenoiser, WanDenoiserConfig
        from lingen_model.wan.distill import ma_parameters

        path = self.cfg["student"]
        student, vae, ckpt = load_checkpoint(path)  # CheckpointError is a ValueError
        if not isinstance(student, WanDenoiser):
            raise ValueError(f"{path}: the distill stage needs a Wan-converted checkpoint (lingen convert), "
                             f"this one's denoiser is not arch 'wan'")
        if student.config.mixer != "mate" and self.cfg["train"] == "ma":
            raise ValueError(f"{path} has no MA-branch (converted with --mixer attention): nothing for train 'ma'")
        self.student_checkpoint = ckpt
        self.cfg = {**self.cfg, "text_encoder": dict(ckpt["text_encoder"])}
        self.vae = vae.to(self.device).eval().requires_grad_(False)
        self.text_encoder = build_text_encoder(self.cfg["text_encoder"], device=self.device)
        if self.cfg["train"] == "ma":
            trained = {id(p) for p in ma_parameters(student)}
            for p in student.parameters():
                p.requires_grad_(id(p) in trained)
        else:
            tcfg = WanDenoiserConfig.from_dict({**student.config.to_dict(), "mixer": "attention", "window": [0, 0, 0]})
            self.teacher = WanDenoiser(tcfg)
            self.teacher.load_state_dict({k: v for k, v in student.state_dict().items() if ".ma." not in k})
            self.teacher.eval().requires_grad_(False)
        self.model = student.train()

    def _data_stream(self, seed: int):
        """This rank's batches: the shapes world / an mp4 folder (``ShardedBatches``) or preprocessed
        shards (``ShardBatches``: latents and text embeddings)."""
        d = self.cfg["data"]
        if d.source == "shards":
            from lingen_model.training.shard_data import ShardBatches

            return ShardBatches(d.path, self.cfg["batch_size"], seed, self.dp_rank, self.dp_world, d.workers)
        return ShardedBatches(d, self.cfg["batch_size"], seed, self.dp_rank, self.dp_world,
                              object_masks=self.cfg["object_weight"] > 0)

    def _check_shards(self) -> None:
        man = self.data.manifest
        if man.get("latent_channels") != self.vae.latent_channels or man.get("text_encoder") != self.cfg["text_encoder"]:
            raise ValueError(f"{self.cfg['data'].path} was preprocessed with latent_channels "
                             f"{man.get('latent_channels')} and text encoder {man.get('text_encoder')}, this run uses "
                             f"{self.vae.latent_channels} and {self.cfg['text_encoder']}")

    # -- files ---------------------------------------------------------------
    @property
    def _prefix(self) -> str:
        return "vae" if self.stage == "vae" else "denoiser"

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"generator": self.gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def _resume(self) -> None:
        from lingen_model.training.dist_checkpoint import load_training_checkpoint

        state_file = self.run_dir / "train_state.json"
        if not state_file.is_file():
            return
        try:
            state = json.loads(state_file.read_text())
            if not isinstance(state, dict):
                raise ValueError("train_state.json is not a JSON object")
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot resume from {self.run_dir}: train_state.json is unreadable or truncated "
                             f"({str(e).splitlines()[0]}); use a new run_dir") from None
        if state.get("stage") != self.stage:
            raise ValueError(f"{self.run_dir} holds a {state.get('stage')} run, not {self.stage}")
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.history = state.get("history", [])
        try:  # truncated or missing files, or a state of another model size than this config's
            if "checkpoint" in state:  # distributed checkpoint (any world size)
                rng = load_training_checkpoint(self.run_dir / state["checkpoint"], self.model, self.opt, self.ema.shadow,
                                               state["optimizer"]["param_groups"], self._rng_state())
                self._set_rng_state(rng)
                self._rewarm_from = state.get("rewarm_from")
                self.data = self._data_stream(int(state["data"]["seed"]))
                self.data.load_state_dict(state["data"])
                where = f"{state['checkpoint']}, written by {state.get('world_size', 1)} rank(s)"
            else:
                self._resume_single_file(state)
                where = "single-file state"
        except Exception as e:  # noqa: BLE001 - safetensors, DCP, torch and key errors all mean "cannot resume"
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot resume from {self.run_dir}: its state does not load into this config "
                             f"({why[:160]}); use a new run_dir") from None
        self.log(f"resumed {self.run_dir} at step {self.step} ({self.elapsed / 60:.1f} min trained; {where})")

    def _resume_single_file(self, state: dict) -> None:
        """The run-dir layout before distributed checkpoints (``recipes/lingen-tiny/state``): full
        weights, EMA and optimizer moments (optional) in safetensors keyed by parameter index."""
        from safetensors.torch import load_file

        from lingen_model.training.dist_checkpoint import load_full_state

        weights = load_file(str(self.run_dir / f"{self._prefix}.safetensors"))
        ema = {k: v.float() for k, v in load_file(str(self.run_dir / f"{self._prefix}_ema.safetensors")).items()}
        optim_file = self.run_dir / "optimizer.safetensors"
        optim_state = None
        if optim_file.is_file():
            optim_state = _named_optimizer_state(self.model, self.opt, load_file(str(optim_file)), state["optimizer"])
        else:  # fresh Adam moments: ramp the learning rate up again over warmup_steps
            self._rewarm_from = self.step
        load_full_state(self.model, self.opt, self.ema.shadow, weights, ema, optim_state)
        # the random streams the single-file trainer started on resume (its rank 0)
        self.gen.manual_seed(self.cfg["seed"] * 1000 + 17 * self.step)
        self.data = self._data_stream(self.cfg["seed"] * 1000 + self.step)

    def save(self) -> None:
        """Write the distributed checkpoint ``checkpoints/step-N`` (every rank its shards), then
        (rank 0) ``train_state.json`` pointing at it, and drop older checkpoints. The VAE stage also
        writes its EMA weights and ``vae_config.json`` (what the denoiser stage loads); the denoiser
        stage exports when the config has ``export``. Collective under torchrun."""
        from lingen_model.training.dist_checkpoint import save_training_checkpoint
        from lingen_model.training.parallel import full_tensors

        rel = f"checkpoints/step-{self.step:08d}"
        vae_ema = vae_config = None
        if self.stage == "vae":  # computed before anything is written: a failure leaves the previous save whole
            vae_ema = full_tensors(self.ema.shadow, keep=self.rank == 0)
            if self.rank == 0:
                vae_config = self._vae_config_with_latent_stats(vae_ema)
        groups = save_training_checkpoint(self.run_dir / rel, self.model, self.opt, self.ema.shadow, self._rng_state())
        if self.stage == "vae" and self.rank == 0:
            _save_tensors(vae_ema, self.run_dir / f"{self._prefix}_ema.safetensors")
            atomic_write_json(self.run_dir / "vae_config.json", vae_config)
        if self.rank == 0:
            cfg_json = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in self.cfg.items()}
            atomic_write_json(self.run_dir / "train_state.json", {
                "stage": self.stage, "step": self.step, "elapsed_s": self.elapsed, "checkpoint": rel,
                "optimizer": {"param_groups": groups}, "data": self.data.state_dict(), "rewarm_from": self._rewarm_from,
                "config": cfg_json, "world_size": self.world, "device": str(self.device), "history": self.history[-2000:]})
            for old in (self.run_dir / "checkpoints").iterdir():
                if old.name != Path(rel).name:
                    shutil.rmtree(old, ignore_errors=True)
        if self.stage in ("denoiser", "distill") and self.cfg.get("export"):
            self.export(self.cfg["export"])

    @torch.no_grad()
    def _vae_config_with_latent_stats(self, ema: dict[str, torch.Tensor]) -> dict:
        """The VAE config with ``shift_factor``/``scaling_factor`` set so EMA latents have mean 0, std 1."""
        from lingen_model.models.vae import CausalVideoVAE, VAEConfig

        vcfg = VAEConfig(**self.cfg["vae"]).to_dict()
        vae = CausalVideoVAE(VAEConfig.from_dict(vcfg))
        vae.load_state_dict({k: v.to(vae.state_dict()[k].dtype) for k, v in ema.items()})
        vae.eval()
        data_cfg = dataclasses.replace(self.cfg["data"], still_prob=0.0, crop=None)
        video, _ = next(batches(data_cfg, 8, seed=10_000 + self.cfg["seed"]))
        mean, _ = vae.encode_distribution(video)
        vcfg["shift_factor"] = float(mean.mean())
        vcfg["scaling_factor"] = float(1.0 / (mean.std() + 1e-6))
        return vcfg

    def export(self, spec: dict) -> Path | None:
        """Write a pipeline checkpoint (EMA denoiser + VAE + text-encoder spec) to ``spec['dir']``:
        the safetensors directory ``lingen generate`` loads. Collective under torchrun (the EMA
        weights are gathered to full tensors on rank 0, which writes); returns the directory on
        rank 0, None on the others."""
        from lingen_model.generation.checkpoint import save_checkpoint
        from lingen_model.models.denoiser import Denoiser
        from lingen_model.training.parallel import full_tensors

        ema = full_tensors(self.ema.shadow, keep=self.rank == 0)
        self._exported_step = self.step
        if self.rank != 0:
            return None
        if self.stage == "distill":
            return self._export_distilled(spec, ema)
        ema_model = Denoiser(self.model.config)
        ema_model.load_state_dict({k: v.to(ema_model.state_dict()[k].dtype) for k, v in ema.items()})
        data = self.cfg["data"]
        native = {"fps": data.fps, "height": data.height, "width": data.width}
        extra = {"training": {"steps": self.step, "elapsed_s": round(self.elapsed, 1), "run_dir": str(self.run_dir),
                              "data": data.source}}
        return save_checkpoint(spec["dir"], ema_model, self.vae, self.cfg["text_encoder"], native,
                               spec.get("sampling", {}), name=spec.get("name"), extra=extra)

    def _export_distilled(self, spec: dict, ema: dict[str, torch.Tensor]) -> Path:
        """Distill stage export (rank 0): the student's EMA weights (float32) with the student
        checkpoint's VAE, text encoder, native format, sampling defaults (``spec['sampling']`` on
        top), source and licence; LICENSE and NOTICE are carried over, NOTICE gains a line."""
        from lingen_model.generation.checkpoint import save_checkpoint
        from lingen_model.wan.denoiser import WanDenoiser

        model = WanDenoiser(self.model.config)
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in ema.items()})
        src, ckpt = Path(self.cfg["student"]), self.student_checkpoint
        files = {n: (src / n).read_text(errors="replace") for n in ("LICENSE", "NOTICE") if (src / n).is_file()}
        files["NOTICE"] = files.get("NOTICE", "") + (
            f"- then distilled by `lingen train` (stage distill, train '{self.cfg['train']}', {self.step} steps) "
            f"from {src.resolve()} toward its full-attention teacher.\n")
        extra = {k: ckpt[k] for k in ("source", "license") if k in ckpt}
        extra["training"] = {"stage": "distill", "train": self.cfg["train"], "steps": self.step,
                             "elapsed_s": round(self.elapsed, 1), "run_dir": str(self.run_dir),
                             "student": str(src.resolve()), "data": self.cfg["data"].source}
        return save_checkpoint(spec["dir"], model, self.vae, ckpt["text_encoder"], ckpt["native"],
                               {**ckpt.get("sampling", {}), **spec.get("sampling", {})},
                               name=spec.get("name") or ckpt.get("name"), extra=extra, files=files)

    # -- steps ---------------------------------------------------------------
    def _loss(self, video: torch.Tensor | None, captions: list[str], gen: torch.Generator,
              encoded: tuple | None = None, objects: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Loss of this rank's rows ``first … first + b − 1`` of a global batch of ``b × world``
        clips; every random number is drawn for the whole global batch (the same on every rank).
        ``encoded``: (latents, context, mask) from preprocessed shards instead of ``video``.
        ``objects``: B×1×T×H×W object masks of ``video`` (``object_weight`` > 0)."""
        b = len(captions)
        total, first = b * self.dp_world, b * self.dp_rank
        rows = slice(first, first + b)
        if self.stage == "vae":
            from lingen_model.models.vae import vae_loss

            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                return vae_loss(self.model, video, kl_weight=self.cfg["kl_weight"], generator=gen,
                                batch_rows=(first, total))
        from lingen_model.generation.flow import (drop_captions, flow_matching_loss, mix_high_noise_times, ramp_times,
                                                  sample_timesteps_logit_normal)

        lam = self.cfg["contrast_weight"]
        with torch.no_grad():
            latents = self.vae.encode(video) if encoded is None else encoded[0]
            everyone = [""] * total
            everyone[rows] = captions
            kept = drop_captions(everyone, self.cfg["caption_dropout"], gen)[rows]
            if encoded is None:
                ctx, mask = self.text_encoder.encode(kept)
            else:
                ctx, mask = self._drop_encoded(encoded[1], encoded[2], captions, kept)
            # ΔFM negative: the clip played backwards (a mover's opposite direction; a still clip is its own)
            negative = self.vae.encode(video.flip(2)) if lam > 0 else None
        offset = 0
        if self.cfg["t_offset_max"] and float(torch.rand((), generator=gen)) < self.cfg["t_offset_prob"]:
            offset = int(torch.randint(0, self.cfg["t_offset_max"] + 1, (), generator=gen))

        cp = None  # context parallel: this rank's slab of latent frames (a clip shorter than the group runs whole)
        if self.cp > 1 and latents.shape[2] >= self.cp:
            from lingen_model.models.context_parallel import ContextParallel

            cp = ContextParallel.for_clip(latents.shape[2], self.cp_group)

        def model_fn(z, t, c, m):  # bf16 autocast around the denoiser only; the loss is taken in float32
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                return self.model(z, t, c, m, t_offset=offset, cp=cp).float()

        t_all = sample_timesteps_logit_normal(total, gen, mean=self.cfg["t_logit_mean"], device=gen.device)
        t_all = mix_high_noise_times(t_all, self.cfg["t_high_prob"], self.cfg["t_high_min"], gen)
        if self.stage == "denoiser" and cp is None:  # per-frame ramps (prob 0: unchanged, nothing drawn)
            t_all = ramp_times(t_all, latents.shape[2], self.cfg["t_ramp_prob"], self.cfg["t_ramp_max"], gen)
        noise = torch.randn((total, *latents.shape[1:]), generator=gen, device=gen.device, dtype=latents.dtype)
        t, noise = t_all[rows].to(latents.device), noise[rows].to(latents.device)
        if self.stage == "distill":
            return self._distill_loss(latents, ctx, mask, t, noise, offset, t_all)
        weight = None
        if negative is not None:  # only captioned samples at high noise, where the layout is decided
            captioned = torch.tensor([bool(c) for c in kept], device=t.device)
            t_mean = t if t.dim() == 1 else t.mean(1)
            weight = lam * (captioned & (t_mean >= self.cfg["contrast_t_min"])).float()
        if cp is not None:
            latents, noise = cp.slab(latents), cp.slab(noise)
            negative = cp.slab(negative) if negative is not None else None
        wmap = None
        if objects is not None:  # only streamed when object_weight > 0
            from lingen_model.training.object_weight import weight_map

            wmap = weight_map(objects, self.vae.spatial_factor, self.vae.temporal_factor, self.cfg["object_weight"])
        loss = flow_matching_loss(model_fn, latents, ctx, mask, t=t, noise=noise, negative=negative,
                                  negative_weight=weight, weight_map=wmap)
        if cp is not None:
            # the loss is a mean over elements: the slab's share of the clip's mean, times the group
            # size, because FSDP averages gradients over all world = dp × cp ranks
            loss = loss * (cp.frames[cp.rank] * cp.world / cp.total_frames)
        return loss, {"t_offset": offset, "t": _rounded(t_all.tolist())}

    def _distill_loss(self, latents, ctx, mask, t, noise, offset: int, t_all) -> tuple[torch.Tensor, dict]:
        """Distill stage: velocity MSE of the student against the teacher on ``z_t = (1−t)x₀ + t·ε``
        (:func:`lingen_model.wan.distill.velocity_distill_loss`); both run under the same bf16 autocast
        (``amp``), the loss in float32. The teacher is the student under ``as_teacher`` (``train: ma``)
        or the frozen copy (``train: all``). Stats carry this rank's squared-error sums."""
        from lingen_model.wan.distill import velocity_distill_loss

        def run(model, z, tt, c, m):
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                return model(z, tt, c, m, t_offset=offset).float()

        def teacher(*args):
            if self.teacher is not None:
                return run(self.teacher, *args)
            with self.model.as_teacher():
                return run(self.model, *args)

        loss, sq_err, sq_ref = velocity_distill_loss(lambda *a: run(self.model, *a), teacher, latents, t, noise,
                                                     ctx, mask)
        return loss, {"t_offset": offset, "t": [round(x, 4) for x in t_all.tolist()],
                      "sq": (float(sq_err), float(sq_ref))}

    def _drop_encoded(self, ctx: torch.Tensor, mask: torch.Tensor, captions: list[str],
                      kept: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed text tokens with the dropped captions' rows replaced by the encoding of ""."""
        dropped = [k == "" and c != "" for c, k in zip(captions, kept)]
        if not any(dropped):
            return ctx, mask
        e_ctx, e_mask = self.text_encoder.encode([""])
        length = max(ctx.shape[1], e_ctx.shape[1])
        ctx = torch.nn.functional.pad(ctx, (0, 0, 0, length - ctx.shape[1]))
        mask = torch.nn.functional.pad(mask, (0, length - mask.shape[1]))
        for i, d in enumerate(dropped):
            if d:
                ctx[i] = 0
                mask[i] = False
                ctx[i, :e_ctx.shape[1]], mask[i, :e_mask.shape[1]] = e_ctx[0].to(ctx), e_mask[0]
        return ctx, mask

    def train(self) -> dict:
        """Run until ``steps``; saves every ``save_every_steps`` / ``save_every_minutes`` and at the end.

        Logged losses and gradient norms are those of the global batch (mean over ranks)."""
        cfg = self.cfg
        dist = None
        if self.world > 1:
            import torch.distributed as dist
        last_save, t_log, n_log, clips = time.time(), time.time(), 0, 0
        budget_end = time.time() + 60 * cfg["max_minutes"] if cfg.get("max_minutes") else None
        self.model.train()
        end_step = cfg.get("stop_at_step") or cfg["steps"]  # the config refuses a stop_at_step past steps
        while self.step < end_step:
            t0 = time.time()
            batch = next(self.data)
            if len(batch) == 4:  # preprocessed shards: latents and text tokens
                latents, ctx, mask, captions = batch
                encoded, video = (latents.to(self.device), ctx.to(self.device), mask.to(self.device)), None
                objects = None
                n_clips, frames = latents.shape[0], 1 + self.vae.temporal_factor * (latents.shape[2] - 1)
            else:
                (video, captions), encoded = batch[:2], None
                objects = batch[2].to(self.device) if len(batch) == 3 else None  # object masks (object_weight)
                video = video.to(self.device)
                n_clips, frames = video.shape[0], video.shape[2]
            lr = _lr_at(self.step, cfg)
            if self._rewarm_from is not None:
                lr *= min(1.0, (self.step - self._rewarm_from + 1) / max(1, cfg["warmup_steps"]))
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss, stats = self._loss(video, captions, self.gen, encoded, objects)  # bf16 autocast (``amp``) is applied inside
            self.opt.zero_grad(set_to_none=True)
            loss.backward()  # under FSDP2 the gradients are reduce-scattered (averaged over ranks) here
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg["grad_clip"])
            if hasattr(gnorm, "full_tensor"):
                gnorm = gnorm.full_tensor()
            self.opt.step()
            self.ema.update(self.model, self.step)
            self.step += 1
            self.elapsed += time.time() - t0
            clips += n_clips * self.dp_world
            n_log += 1
            over = budget_end is not None and time.time() >= budget_end  # max_minutes of this invocation spent
            due = (self.step % cfg["save_every_steps"] == 0 or time.time() - last_save > 60 * cfg["save_every_minutes"]
                   or self.step == end_step or over)
            loss_value = float(loss.detach())
            sq = stats.get("sq", (0.0, 0.0))  # distill stage: squared error and squared teacher velocity
            if dist is not None:  # global-batch loss; rank 0's clock decides time-based saves and the budget for all
                packed = torch.tensor([loss_value, float(due and self.rank == 0), float(over and self.rank == 0), *sq],
                                      dtype=torch.float64, device=self.device)
                dist.all_reduce(packed)
                loss_value = float(packed[0]) / self.world
                over = float(packed[2]) > 0
                due = (self.step % cfg["save_every_steps"] == 0 or self.step == end_step or float(packed[1]) > 0)
                sq = (float(packed[3]), float(packed[4]))
            rec = {"step": self.step, "loss": loss_value, "grad_norm": float(gnorm), "lr": self.opt.param_groups[0]["lr"],
                   "frames": int(frames), **{k: stats[k] for k in ("t_offset", "t") if k in stats}}
            if "sq" in stats:  # relative error ‖v_student − v_teacher‖ / ‖v_teacher‖ of the global batch
                rec["rel_err"] = math.sqrt(sq[0] / max(sq[1], 1e-30))
            self.history.append(rec)
            if self.on_step:
                self.on_step(self.step, rec)
            if self.step % cfg["log_every"] == 0 or self.step == end_step:
                recent = [h["loss"] for h in self.history[-n_log:]]
                dt = time.time() - t_log
                rel = f" rel_err {rec['rel_err']:.4f}" if "rel_err" in rec else ""
                self.log(f"step {self.step}/{cfg['steps']} loss {sum(recent) / len(recent):.4f}{rel} "
                         f"lr {rec['lr']:.2e} {n_log / dt:.2f} steps/s {clips / dt:.1f} clips/s")
                t_log, n_log, clips = time.time(), 0, 0
            if due:
                self.save()
                last_save = time.time()
                self.log(f"saved {self.run_dir} at step {self.step}")
            if self.step == end_step < cfg["steps"]:
                self.log(f"stopping at step {self.step}: stop_at_step (the schedule runs to {cfg['steps']})")
            if over:
                self.log(f"stopping at step {self.step}: max_minutes ({cfg['max_minutes']:g}) of this run spent")
                break
        if self.stage in ("denoiser", "distill") and cfg.get("export") and self._exported_step != self.step:
            self.export(cfg["export"])  # e.g. ``lingen train --export`` on a finished run
        if dist is not None:
            dist.barrier()
        return {"step": self.step, "elapsed_s": self.elapsed, "last_loss": self.history[-1]["loss"] if self.history else None}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX; PyTorch's own check). On other CPUs
    bf16 autocast is emulated: a denoiser step of stage 4b took ~7x as long as in float32 on a 2-core AVX2 CPU
    (recipes/lingen-tiny/TRAINING_LOG.md, session 26)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _named_optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict) -> dict:
    """A single-file optimizer state (``optimizer_tensors``: keyed by parameter index) keyed by
    parameter name instead, the full-state-dict form of ``torch.distributed.checkpoint.state_dict``.
    Indices follow the optimizer's param groups, built in the same order by every trainer."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    state: dict[str, dict] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        pid, k = key.split(".", 1)
        state.setdefault(order[int(pid)], {})[k] = v
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}
