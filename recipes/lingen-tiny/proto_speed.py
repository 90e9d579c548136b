"""Prototype, not in the library (session 29, issue 14): the denoiser told the object's speed.

Session 29 tracked the jumps of the 60 s tuning minutes frame by frame (docs/eval/README.md, "Session 29"): a judged
jump is not a teleport but a burst of speed. The red triangle of seed 4,000,011 moves at 0.16–0.32 frame heights a
second, second by second, where the world gives each clip one constant speed in 0.1–0.25 (``SPEED_RANGE``), and the
judge calls a half-second step above the world's fastest (plus margin) a jump. No caption names a speed, so the
model must read it from the frames around; at high noise, on the staircase, they say little, and the speed wanders.

Here the speed is a conditioning input, as Stable Video Diffusion conditions on a motion score and the frame rate
(Blattmann et al. 2023, §3 and appendix D, "micro-conditioning"): ``speed_embed`` maps the sinusoidal embedding of
``speed / 0.25`` (frame extents per second over the world's fastest) through a two-layer MLP, whose last layer
starts at zero, and its output (times ``SPEED_GAIN``) is added to the timestep embedding, so that it reaches every
block's adaLN modulation. An unknown speed adds nothing: the model is then exactly the one it was trained from.

* ``train``: each shapes-world clip's speed (its linear mover's; 0 for a still object) rides on its caption to the
  trainer, which strips it and drops it (unknown) with probability ``SPEED_DROP``. Start a run from a state without
  the new weights with ``init-run RUN_DIR STATE_DIR`` (copies the state and adds ``speed_embed`` to its weights
  and EMA, the same values in both).
* sampling (``generate``, ``eval``): prompts with a direction word get ``SPEED`` (frame extents per second; the
  world's mid-range 0.175 by default); others (still objects) get no speed.

Run as the ``lingen`` CLI with this process's patches, e.g.::

    python recipes/lingen-tiny/proto_speed.py init-run runs/lingen-tiny-4f recipes/lingen-tiny/state-4c
    python recipes/lingen-tiny/proto_speed.py train recipes/lingen-tiny/denoiser-4f.yaml
    SPEED=0.175 python recipes/lingen-tiny/proto_speed.py eval -m runs/lingen-tiny-4f/export --length 4s --limit 80 \
        --seed-base 3000003
"""
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from lingen_model.generation import pipeline
from lingen_model.generation.contrast import opposite_direction
from lingen_model.models import denoiser as denoiser_mod
from lingen_model.models.layers import timestep_embedding
from lingen_model.shapes import clips
from lingen_model.shapes.world import LINEAR_MOTIONS, SPEED_RANGE

SPEED = float(os.environ.get("SPEED", "0.175"))
SPEED_DROP = float(os.environ.get("SPEED_DROP", "0.2"))
SPEED_GAIN = float(os.environ.get("SPEED_GAIN", "4.0"))
SPEED_MAX = SPEED_RANGE[1]
MARK = "\x1fspeed="  # caption suffix that carries a clip's speed from the data stream to the trainer
STATE: dict = {"speed": None}  # B speeds (frame extents / s; NaN = unknown) of the current forward, or None


def scene_speed(scene) -> float:
    """Frame extents per second of a scene's linear movers (their mean), 0.0 when none moves linearly."""
    v = [o.speed for o in scene.objects if o.motion in LINEAR_MOTIONS]
    return float(sum(v) / len(v)) if v else 0.0


def speed_features(speed: torch.Tensor) -> torch.Tensor:
    """B speeds (frame extents per second, finite) → B×256 sinusoidal features of ``speed / SPEED_MAX``."""
    return timestep_embedding(speed.float() / SPEED_MAX)


def speed_offset(model, speed: torch.Tensor, rows: int, dtype) -> torch.Tensor:
    """The term added to the timestep embedding (rows×d): ``SPEED_GAIN · speed_embed(features)``, 0 where the speed
    is NaN (unknown). ``speed``: 1 value (broadcast) or B values, each repeated ``rows // B`` times (per-frame
    timesteps: B·T rows, sample-major). Raises ValueError when ``rows`` is not a multiple of B."""
    b = speed.shape[0]
    if rows % b:
        raise ValueError(f"{rows} timestep rows for {b} speeds")
    known = torch.isfinite(speed)
    e = model.speed_embed(speed_features(torch.where(known, speed, torch.zeros_like(speed))).to(dtype))
    e = SPEED_GAIN * e * known[:, None].to(dtype)
    return e.repeat_interleave(rows // b, dim=0)


_init = denoiser_mod.Denoiser.__init__
_reset = denoiser_mod.Denoiser.reset_parameters


def _make_embed(d: int) -> nn.Sequential:
    """The speed MLP, 256 features → d → d (d = the denoiser's width), at its initial values (:func:`_init_embed`)."""
    m = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
    _init_embed(m)
    return m


def _init_embed(m: nn.Sequential) -> None:
    """First layer N(0, 0.02²) with zero bias, last layer zero (so the term starts at 0); nothing on the meta device."""
    if m[0].weight.is_meta:
        return
    nn.init.normal_(m[0].weight, std=0.02)
    nn.init.zeros_(m[0].bias)
    nn.init.zeros_(m[2].weight)
    nn.init.zeros_(m[2].bias)


def init(self, cfg):
    """``Denoiser.__init__`` plus ``speed_embed`` (256 → d → d, last layer zero) and a hook that adds
    :func:`speed_offset` to ``t_embed``'s output while ``STATE["speed"]`` is set."""
    _init(self, cfg)
    self.speed_embed = _make_embed(cfg.width)

    def hook(_module, _inp, out):
        speed = STATE["speed"]
        if speed is None:
            return out
        return out + speed_offset(self, speed.to(out.device), out.shape[0], out.dtype)

    self.t_embed.register_forward_hook(hook)


def reset_parameters(self) -> None:
    """The library's init, then ``speed_embed``'s (when it exists yet)."""
    _reset(self)
    if hasattr(self, "speed_embed"):
        _init_embed(self.speed_embed)


_make_clip = clips.make_clip


def make_clip(*args, **kw):
    """``clips.make_clip`` with the scene's speed (:func:`scene_speed`) appended to the caption after ``MARK``."""
    frames, text, scene = _make_clip(*args, **kw)
    return frames, f"{text}{MARK}{scene_speed(scene):.5f}", scene


def split_captions(captions: list[str], step: int) -> tuple[list[str], torch.Tensor]:
    """Captions with ``MARK`` suffixes → (plain captions, B speeds in frame extents per second, float64, with NaN for
    none and for the dropped ones; the drop is drawn with probability ``SPEED_DROP`` from a generator seeded by
    ``step``). Raises ValueError for a suffix that is not a number."""
    plain, speeds = [], []
    for c in captions:
        text, sep, value = c.partition(MARK)
        plain.append(text)
        speeds.append(float(value) if sep else math.nan)
    s = torch.tensor(speeds, dtype=torch.float64)
    drop = torch.rand(len(s), generator=torch.Generator().manual_seed(1_000_003 * step + 7), dtype=torch.float64)
    return plain, torch.where(drop < SPEED_DROP, torch.full_like(s, math.nan), s)


def patch_trainer() -> None:
    """Wrap ``Trainer._loss``: the batch's captions lose their ``MARK`` suffixes (:func:`split_captions`, drop drawn
    from the step) and ``STATE["speed"]`` holds the B speeds for that one loss call."""
    from lingen_model.training import trainer

    _loss = trainer.Trainer._loss

    def loss(self, video, captions, gen, encoded=None, objects=None):
        plain, STATE["speed"] = split_captions(captions, self.step)
        try:
            return _loss(self, video, plain, gen, encoded, objects)
        finally:
            STATE["speed"] = None

    trainer.Trainer._loss = loss


_generate = pipeline.LinGenPipeline.generate


def generate(self, request, *args, **kw):
    """``LinGenPipeline.generate`` with ``STATE["speed"]`` = ``SPEED`` for prompts with a direction word."""
    STATE["speed"] = torch.tensor([SPEED if opposite_direction(request.prompt) is not None else math.nan])
    try:
        return _generate(self, request, *args, **kw)
    finally:
        STATE["speed"] = None


def init_run(run_dir: str, state_dir: str) -> None:
    """Copy ``denoiser.safetensors`` and ``train_state.json`` of ``state_dir`` to ``run_dir`` (EMA = the weights, as
    the stage recipes start) and add ``speed_embed`` (seeded, last layer zero) to both weight files, each written to
    a temporary file and renamed. Raises SystemExit when ``run_dir`` already holds a run, FileNotFoundError when
    ``state_dir`` lacks a file, KeyError when its weights have no ``t_embed``."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(state_dir), Path(run_dir)
    if (dst / "train_state.json").exists():
        raise SystemExit(f"{dst} already holds a run")
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "train_state.json", dst / "train_state.json")
    weights = load_file(str(src / "denoiser.safetensors"))
    d = weights["t_embed.2.weight"].shape[0]
    torch.manual_seed(29)
    m = _make_embed(d)
    weights.update({f"speed_embed.{k}": v.to(weights["t_embed.2.weight"].dtype).contiguous()
                    for k, v in m.state_dict().items()})
    for name in ("denoiser.safetensors", "denoiser_ema.safetensors"):
        save_file(weights, str(dst / (name + ".tmp")))
        os.replace(dst / (name + ".tmp"), dst / name)


def install(train: bool) -> None:
    """Patch the denoiser and the pipeline in this process; for ``train`` also the shapes world's clips and the
    trainer (only there do captions carry speeds)."""
    denoiser_mod.Denoiser.__init__ = init
    denoiser_mod.Denoiser.reset_parameters = reset_parameters
    pipeline.LinGenPipeline.generate = generate
    if train:
        clips.make_clip = make_clip
        patch_trainer()


if __name__ == "__main__":
    if sys.argv[1:2] == ["init-run"]:
        init_run(sys.argv[2], sys.argv[3])
        sys.exit(0)
    install(train=sys.argv[1:2] == ["train"])
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
