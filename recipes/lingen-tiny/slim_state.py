"""Write a run dir's newest training checkpoint as the slim, committable single-file state.

A stage's run dir holds a distributed checkpoint (``checkpoints/step-N``: weights, EMA, Adam
moments and random streams; ~4× the weights). What the repository keeps at the end of a stage
is the single-file layout the trainer also resumes from (``Trainer._resume_single_file``):

    OUT/denoiser.safetensors       the raw weights (float32)
    OUT/denoiser_ema.safetensors   the EMA weights (float32)
    OUT/train_state.json           step, elapsed seconds, optimizer param groups, config, loss history

The Adam moments are left out (they would double the size); a run resumed from OUT re-warms its
learning rate over ``warmup_steps`` (TRAINING_LOG.md, "resumable from the repository").

    python recipes/lingen-tiny/slim_state.py runs/lingen-tiny-long recipes/lingen-tiny/state-3a
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def slim_state(run_dir: Path, out: Path, prefix: str = "denoiser") -> int:
    """Write ``out/{prefix}.safetensors``, ``out/{prefix}_ema.safetensors`` and ``out/train_state.json``
    from ``run_dir``'s newest distributed checkpoint (one shard, as one CPU process writes it).

    Returns:
        The step of the written state.

    Raises:
        ValueError: ``run_dir`` has no distributed checkpoint, or it has several shards.
    """
    state = json.loads((run_dir / "train_state.json").read_text())
    if "checkpoint" not in state:
        raise ValueError(f"{run_dir} holds no distributed checkpoint (already single-file?)")
    shards = sorted((run_dir / state["checkpoint"]).glob("*.safetensors"))
    if len(shards) != 1:
        raise ValueError(f"expected one shard in {run_dir / state['checkpoint']}, found {len(shards)}")
    groups: dict[str, dict] = {"model": {}, "ema": {}}
    with safe_open(str(shards[0]), "pt") as f:
        for key in f.keys():
            head, _, name = key.partition(".")
            if head in groups:
                groups[head][name] = f.get_tensor(key).float().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    for head, suffix in (("model", ""), ("ema", "_ema")):
        tmp = out / f".{prefix}{suffix}.safetensors.tmp"
        save_file(groups[head], str(tmp))
        os.replace(tmp, out / f"{prefix}{suffix}.safetensors")
    slim = {k: state[k] for k in ("stage", "step", "elapsed_s", "optimizer", "config", "world_size", "device", "history")
            if k in state}
    tmp = out / ".train_state.json.tmp"
    tmp.write_text(json.dumps(slim, indent=2))
    os.replace(tmp, out / "train_state.json")
    return int(state["step"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    print(f"wrote step {slim_state(args.run_dir, args.out)} to {args.out}")
