"""Training: a VAE stage and a denoiser stage, resumable, single process or DDP under torchrun.

Config (YAML, every key checked)::

    stage: vae | denoiser
    run_dir: runs/tiny-vae            # checkpoints + state; resumed when it already holds one
    steps: 3000                       # total optimiser steps (resume continues up to this)
    batch_size: 8                     # per process
    lr: 1.0e-3, weight_decay: 0.0, warmup_steps: 100, grad_clip: 1.0, ema_decay: 0.999
    seed: 0, log_every: 10, save_every_steps: 200, save_every_minutes: 10, num_threads: null
    data: {source: shapes|folder, path, height, width, fps, frames, still_prob, max_objects, entry_prob}
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
                                      #   denoiser steps on a CPU with AVX512-BF16) | off
    t_logit_mean: 0.0                 # denoiser stage: training times t = sigmoid(u), u ~ N(t_logit_mean, 1);
                                      #   > 0 trains more on high noise, where the layout is decided (SD3 §3.1)
    t_high_prob: 0.0                  # denoiser stage: with this probability a training time is drawn from
    t_high_min: 0.9                   #   U(t_high_min, 1) instead: trains the first sampler steps, where only
                                      #   the caption can place the object (0 = off)
    contrast_weight: 0.0              # denoiser stage: λ of a contrastive flow-matching term (ΔFM) whose
    contrast_t_min: 0.5               #   negative is the same clip played backwards, for captioned samples
                                      #   with t ≥ contrast_t_min: the caption's motion words must explain
                                      #   the direction of time (0 = off)
    export: {dir: ..., name: lingen-tiny, sampling: {steps: 20, cfg_scale: 5.0}}   # denoiser stage

Method: rectified flow with logit-normal timesteps (SD3, Esser et al. 2024 §3–5), 10 %
caption dropout, AdamW, EMA of the weights, bf16 autocast (on CUDA by default; on a CPU with ``amp: bf16``,
where it wraps the denoiser only: VAE latents, flow targets and the loss stay float32), hybrid image/video
batches (LinGen §4). Files in ``run_dir`` are safetensors + JSON only, written atomically.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from lingen_model.io.files import atomic_path, atomic_write_json
from lingen_model.training.data import DataConfig, batches
from lingen_model.training.distributed import init_distributed

TOP_KEYS = {"stage", "run_dir", "steps", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip", "ema_decay",
            "seed", "log_every", "save_every_steps", "save_every_minutes", "num_threads", "data", "vae", "kl_weight",
            "vae_checkpoint", "denoiser", "text_encoder", "caption_dropout", "export",
            "t_offset_max", "t_offset_prob", "t_logit_mean", "amp", "contrast_weight", "contrast_t_min",
            "t_high_prob", "t_high_min"}
DEFAULTS: dict[str, Any] = {"steps": 1000, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 100,
                            "grad_clip": 1.0, "ema_decay": 0.999, "seed": 0, "log_every": 10, "save_every_steps": 200,
                            "save_every_minutes": 10.0, "num_threads": None, "data": {}, "vae": {}, "kl_weight": 1e-6,
                            "vae_checkpoint": None, "denoiser": {"size": "tiny", "mixer": "mate"},
                            "text_encoder": {"backend": "minilm"}, "caption_dropout": 0.1, "export": None,
                            "t_offset_max": 0, "t_offset_prob": 0.5, "t_logit_mean": 0.0,
                            "amp": "auto", "contrast_weight": 0.0, "contrast_t_min": 0.5,
                            "t_high_prob": 0.0, "t_high_min": 0.9}


def load_train_config(path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Read a training YAML, apply ``overrides`` (top-level keys) and check every key.

    Raises ValueError naming the file and the offending key or value.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read training config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s): {', '.join(unknown)}")
    for key in ("stage", "run_dir"):
        if key not in raw:
            raise ValueError(f"{path}: missing key '{key}'")
    if raw["stage"] not in ("vae", "denoiser"):
        raise ValueError(f"{path}: stage must be 'vae' or 'denoiser', got {raw['stage']!r}")
    cfg = {**DEFAULTS, **raw}
    if cfg["stage"] == "denoiser" and not cfg["vae_checkpoint"]:
        raise ValueError(f"{path}: the denoiser stage needs 'vae_checkpoint'")
    try:
        cfg["data"] = DataConfig(**cfg["data"])
    except TypeError as e:
        raise ValueError(f"{path}: data: {e}") from None
    for key in ("steps", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"{path}: {key} must be a positive integer")
    if isinstance(cfg["t_offset_max"], bool) or not isinstance(cfg["t_offset_max"], int) or cfg["t_offset_max"] < 0:
        raise ValueError(f"{path}: t_offset_max must be a non-negative integer (latent frames)")
    if not isinstance(cfg["t_offset_prob"], (int, float)) or not 0 <= cfg["t_offset_prob"] <= 1:
        raise ValueError(f"{path}: t_offset_prob must be in [0, 1]")
    m = cfg["t_logit_mean"]
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or abs(m) > 5:
        raise ValueError(f"{path}: t_logit_mean must be a number in [-5, 5]")
    cfg["t_logit_mean"] = float(m)
    for key, hi in (("contrast_weight", 0.5), ("contrast_t_min", 1.0), ("t_high_prob", 1.0), ("t_high_min", 0.99)):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
            raise ValueError(f"{path}: {key} must be a number in [0, {hi}]")
        cfg[key] = float(v)
    if cfg["amp"] not in ("auto", "bf16", "off"):
        raise ValueError(f"{path}: amp must be 'auto', 'bf16' or 'off', got {cfg['amp']!r}")
    cfg["run_dir"] = str(cfg["run_dir"])
    return cfg


# --------------------------------------------------------------------------- safetensors state


def _save_tensors(tensors: dict[str, torch.Tensor], file: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(file) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def _save_json(obj: Any, file: Path) -> None:
    atomic_write_json(file, obj)


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
    """Exponential moving average of parameters (and copies of buffers): ``e ← d·e + (1−d)·p``."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm-up of the decay
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


# --------------------------------------------------------------------------- trainer


def _lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak learning rate."""
    warm = max(1, cfg["warmup_steps"])
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, cfg["steps"] - warm))
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def load_vae(path: str | Path, device="cpu"):
    """The VAE of a VAE-stage run dir (``vae_config.json`` + ``vae_ema.safetensors``) or of a checkpoint dir."""
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
    vae = CausalVideoVAE(VAEConfig.from_dict(cfg))
    vae.load_state_dict(load_file(str(weights)))
    return vae.to(device).eval().requires_grad_(False)


class Trainer:
    """Runs one stage from a config dict (see the module docstring). ``log(str)`` receives progress lines."""

    def __init__(self, cfg: dict, log: Callable[[str], None] | None = None,
                 on_step: Callable[[int, dict], None] | None = None):
        self.cfg = cfg
        self.rank, self.world = init_distributed()
        self.log = log if (log and self.rank == 0) else (lambda s: None)
        self.on_step = on_step if self.rank == 0 else None
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        self.device = torch.device(f"cuda:{self.rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
        self.amp = cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and self.device.type == "cuda")
        self.run_dir = Path(cfg["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stage = cfg["stage"]
        torch.manual_seed(cfg["seed"])
        if self.stage == "vae":
            from lingen_model.models.vae import CausalVideoVAE, VAEConfig

            self.model = CausalVideoVAE(VAEConfig(**cfg["vae"])).to(self.device)
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
            self.model = Denoiser(dcfg).to(self.device)
        self.ema = EMA(self.model, cfg["ema_decay"])
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            (no_decay if p.dim() < 2 or "norm" in n or "table" in n else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.99))
        self.step, self.elapsed = 0, 0.0
        self.history: list[dict] = []
        self._rewarm_from: int | None = None  # set when resuming without optimizer moments
        self._resume()
        if self.world > 1:  # every rank starts from rank 0's weights
            import torch.distributed as dist

            for t in self.model.state_dict().values():
                dist.broadcast(t, src=0)
            self.ema = EMA(self.model, cfg["ema_decay"]) if self.step == 0 else self.ema

    # -- files ---------------------------------------------------------------
    @property
    def _prefix(self) -> str:
        return "vae" if self.stage == "vae" else "denoiser"

    def _resume(self) -> None:
        from safetensors.torch import load_file

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
        optim_file = self.run_dir / "optimizer.safetensors"
        try:  # truncated files, or weights of another model size than this config's
            self.model.load_state_dict(load_file(str(self.run_dir / f"{self._prefix}.safetensors")))
            ema = load_file(str(self.run_dir / f"{self._prefix}_ema.safetensors"))
            self.ema.shadow = {k: v.float() for k, v in ema.items()}
            self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
            if optim_file.is_file():
                load_optimizer_tensors(self.opt, load_file(str(optim_file)), state["optimizer"])
        except Exception as e:  # noqa: BLE001 - safetensors, torch and key errors all mean "cannot resume"
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot resume from {self.run_dir}: its state does not load into this config "
                             f"({why[:160]}); use a new run_dir") from None
        else:  # fresh Adam moments: ramp the learning rate up again over warmup_steps
            self._rewarm_from = self.step
        self.history = state.get("history", [])
        self.log(f"resumed {self.run_dir} at step {self.step} ({self.elapsed / 60:.1f} min trained)")

    def save(self) -> None:
        """Write weights, EMA, optimizer and JSON state into the run dir (rank 0; atomic per file)."""
        if self.rank != 0:
            return
        from contextlib import ExitStack

        from safetensors.torch import save_file

        vae_config = self._vae_config_with_latent_stats() if self.stage == "vae" else None  # may fail: before any write
        tensors, meta = optimizer_tensors(self.opt)
        cfg_json = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in self.cfg.items()}
        state = {"stage": self.stage, "step": self.step, "elapsed_s": self.elapsed, "optimizer": meta,
                 "config": cfg_json, "world_size": self.world, "device": str(self.device),
                 "history": self.history[-2000:]}
        # every file goes to a temporary name first; only when all are written are they renamed, the
        # state last (contexts exit in reverse), so a failed save leaves the previous save whole
        with ExitStack() as stack:
            tmp_state = stack.enter_context(atomic_path(self.run_dir / "train_state.json"))
            files = [(self.model.state_dict(), f"{self._prefix}.safetensors"),
                     (self.ema.shadow, f"{self._prefix}_ema.safetensors"), (tensors, "optimizer.safetensors")]
            for ts, name in files:
                tmp = stack.enter_context(atomic_path(self.run_dir / name))
                save_file({k: v.detach().contiguous().cpu() for k, v in ts.items()}, str(tmp))
            if vae_config is not None:
                tmp = stack.enter_context(atomic_path(self.run_dir / "vae_config.json"))
                tmp.write_text(json.dumps(vae_config, indent=2, default=str) + "\n", encoding="utf-8")
            tmp_state.write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
        if self.stage == "denoiser" and self.cfg.get("export"):
            self.export(self.cfg["export"])

    @torch.no_grad()
    def _vae_config_with_latent_stats(self) -> dict:
        """The VAE config with ``shift_factor``/``scaling_factor`` set so EMA latents have mean 0, std 1."""
        from lingen_model.models.vae import CausalVideoVAE, VAEConfig

        vcfg = VAEConfig(**self.cfg["vae"]).to_dict()
        vae = CausalVideoVAE(VAEConfig.from_dict(vcfg))
        vae.load_state_dict({k: v.to(vae.state_dict()[k].dtype) for k, v in self.ema.shadow.items()})
        vae.eval()
        data_cfg = dataclasses.replace(self.cfg["data"], still_prob=0.0, crop=None)
        video, _ = next(batches(data_cfg, 8, seed=10_000 + self.cfg["seed"]))
        mean, _ = vae.encode_distribution(video)
        vcfg["shift_factor"] = float(mean.mean())
        vcfg["scaling_factor"] = float(1.0 / (mean.std() + 1e-6))
        return vcfg

    def export(self, spec: dict) -> Path:
        """Write a pipeline checkpoint (EMA denoiser + VAE + text-encoder spec) to ``spec['dir']``."""
        from lingen_model.generation.checkpoint import save_checkpoint
        from lingen_model.models.denoiser import Denoiser

        ema_model = Denoiser(self.model.config)
        ema_model.load_state_dict({k: v.to(ema_model.state_dict()[k].dtype) for k, v in self.ema.shadow.items()})
        data = self.cfg["data"]
        native = {"fps": data.fps, "height": data.height, "width": data.width}
        extra = {"training": {"steps": self.step, "elapsed_s": round(self.elapsed, 1), "run_dir": str(self.run_dir),
                              "data": data.source}}
        return save_checkpoint(spec["dir"], ema_model, self.vae, self.cfg["text_encoder"], native,
                               spec.get("sampling", {}), name=spec.get("name"), extra=extra)

    # -- steps ---------------------------------------------------------------
    def _loss(self, video: torch.Tensor, captions: list[str], gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        if self.stage == "vae":
            from lingen_model.models.vae import vae_loss

            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                return vae_loss(self.model, video, kl_weight=self.cfg["kl_weight"], generator=gen)
        from lingen_model.generation.flow import (
            drop_captions,
            flow_matching_loss,
            mix_high_noise_times,
            sample_timesteps_logit_normal,
        )

        lam = self.cfg["contrast_weight"]
        with torch.no_grad():
            latents = self.vae.encode(video)
            kept = drop_captions(captions, self.cfg["caption_dropout"], gen)
            ctx, mask = self.text_encoder.encode(kept)
            # ΔFM negative: the clip played backwards (a mover's opposite direction; a still clip is its own)
            negative = self.vae.encode(video.flip(2)) if lam > 0 else None
        offset = 0
        if self.cfg["t_offset_max"] and float(torch.rand((), generator=gen)) < self.cfg["t_offset_prob"]:
            offset = int(torch.randint(0, self.cfg["t_offset_max"] + 1, (), generator=gen))

        def model_fn(z, t, c, m):  # bf16 autocast around the denoiser only; the loss is taken in float32
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                return self.model(z, t, c, m, t_offset=offset).float()

        t = sample_timesteps_logit_normal(latents.shape[0], gen, mean=self.cfg["t_logit_mean"], device=latents.device)
        t = mix_high_noise_times(t, self.cfg["t_high_prob"], self.cfg["t_high_min"], gen)
        weight = None
        if negative is not None:  # only captioned samples at high noise, where the layout is decided
            captioned = torch.tensor([bool(c) for c in kept], device=t.device)
            weight = lam * (captioned & (t >= self.cfg["contrast_t_min"])).float()
        loss = flow_matching_loss(model_fn, latents, ctx, mask, t=t, generator=gen, negative=negative, negative_weight=weight)
        return loss, {"t_offset": offset, "t": [round(x, 4) for x in t.tolist()]}

    def _average_gradients(self) -> None:
        """Data parallelism (the DDP algorithm): all-reduce the gradients of all ranks and average them,
        through one flat buffer. Used for both stages (the VAE loss does not go through ``forward``,
        so torch's DDP wrapper hooks would not fire there)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def train(self) -> dict:
        """Run until ``steps``; saves every ``save_every_steps`` / ``save_every_minutes`` and at the end."""
        cfg = self.cfg
        data = batches(cfg["data"], cfg["batch_size"], seed=cfg["seed"] * 1000 + self.rank * 7919 + self.step)
        gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + self.rank + 17 * self.step)
        last_save, t_log, n_log, clips = time.time(), time.time(), 0, 0
        self.model.train()
        while self.step < cfg["steps"]:
            t0 = time.time()
            video, captions = next(data)
            video = video.to(self.device)
            lr = _lr_at(self.step, cfg)
            if self._rewarm_from is not None:
                lr *= min(1.0, (self.step - self._rewarm_from + 1) / max(1, cfg["warmup_steps"]))
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss, stats = self._loss(video, captions, gen)  # bf16 autocast (``amp``) is applied inside
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self._average_gradients()
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg["grad_clip"])
            self.opt.step()
            self.ema.update(self.model, self.step)
            self.step += 1
            self.elapsed += time.time() - t0
            clips += video.shape[0] * self.world
            n_log += 1
            rec = {"step": self.step, "loss": float(loss.detach()), "grad_norm": float(gnorm), "lr": self.opt.param_groups[0]["lr"],
                   "frames": int(video.shape[2]), **{k: stats[k] for k in ("t_offset", "t") if k in stats}}
            self.history.append(rec)
            if self.on_step:
                self.on_step(self.step, rec)
            if self.step % cfg["log_every"] == 0 or self.step == cfg["steps"]:
                recent = [h["loss"] for h in self.history[-n_log:]]
                dt = time.time() - t_log
                self.log(f"step {self.step}/{cfg['steps']} loss {sum(recent) / len(recent):.4f} "
                         f"lr {rec['lr']:.2e} {n_log / dt:.2f} steps/s {clips / dt:.1f} clips/s")
                t_log, n_log, clips = time.time(), 0, 0
            if (self.step % cfg["save_every_steps"] == 0 or time.time() - last_save > 60 * cfg["save_every_minutes"]
                    or self.step == cfg["steps"]):
                self.save()
                last_save = time.time()
                self.log(f"saved {self.run_dir} at step {self.step}")
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return {"step": self.step, "elapsed_s": self.elapsed, "last_loss": self.history[-1]["loss"] if self.history else None}
