"""Prototype, not in the library (session 27, issue 14): a polishing pass after the staircase.

The staircase decides each latent frame in turn, and a judged jump is one latent frame that settled about one
latent step ahead of its neighbours (docs/eval/README.md, "Session 21"). This pass re-noises the finished clip to
a low time ``t0`` (``z_t0 = (1 − t0)·z_0 + t0·ε``, the rectified-flow path; SDEdit, Meng et al. 2022) and
integrates it back to 0 with every latent frame at the same time, so that each frame is re-drawn beside
neighbours at its own noise level, as in training's all-at-once clips. It replaces ``pipeline.sample`` in this
process and runs the ``lingen`` CLI with the given arguments, e.g.::

    POLISH_T=0.3 POLISH_STEPS=6 python recipes/lingen-tiny/proto_polish.py eval --length 60s --limit 12 \
        --seed-base 4000003

Environment: ``POLISH_T`` (t0, the model's time in (0, 1]; 0 = no pass), ``POLISH_STEPS`` (Euler steps of the
pass; the whole clip goes through the network at once), ``POLISH_CACHE`` (a folder: the staircase's
result is stored there per noise and settings, so that passes with other settings reuse it), ``POLISH_TSIGMA``
(session 29: before re-noising, blur the clip along its latent frames with a Gaussian of this standard deviation,
in latent frames; 0 = no blur: a latent frame that ran ahead of its neighbours becomes a faint mix of their
places, for the pass to redraw as one object).
"""
import hashlib
import math
import os
import sys

import torch

from lingen_model.generation import flow, pipeline
from probe_sdedit_gt import renoise, schedule_from  # this folder (the script's own)

T0 = float(os.environ.get("POLISH_T", "0.3"))
STEPS = int(os.environ.get("POLISH_STEPS", "6"))
TSIGMA = float(os.environ.get("POLISH_TSIGMA", "0"))
CACHE = os.environ.get("POLISH_CACHE", "runs/polish_cache")
_sample = flow.sample


def _key(noise, steps, kw) -> str:
    h = hashlib.sha256(noise.detach().cpu().float().numpy().tobytes())
    for name in ("stagger", "stagger_context", "shift", "cfg_scale", "cfg_max_t", "contrast_scale", "cache"):
        h.update(repr((name, kw.get(name))).encode())
    h.update(repr(steps).encode())
    h.update(repr(kw["context"].float().sum().item()).encode())
    return h.hexdigest()[:24]


def _base(velocity_fn, noise, steps, **kw):
    """The run as asked (cached on disk by noise and settings)."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, _key(noise, steps, kw) + ".pt")
    if os.path.exists(path):
        return torch.load(path, weights_only=True).to(noise.device, noise.dtype)
    z = _sample(velocity_fn, noise, steps, **kw)
    torch.save(z.cpu(), path + ".tmp")
    os.replace(path + ".tmp", path)
    return z


def temporal_blur(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """Latent B×C×T×H×W → the same shape, each (b, c, h, w) series along T convolved with a normalised Gaussian of
    standard deviation ``sigma`` latent frames (radius ⌈3σ⌉, edges replicated). ``sigma <= 0`` returns ``z``."""
    if sigma <= 0:
        return z
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    k = (k / k.sum()).to(z.dtype)
    b, c, t, h, w = z.shape
    x = z.permute(0, 1, 3, 4, 2).reshape(-1, 1, t)
    x = torch.nn.functional.pad(x, (r, r), mode="replicate")
    x = torch.nn.functional.conv1d(x, k.view(1, 1, -1))
    return x.reshape(b, c, h, w, t).permute(0, 1, 4, 2, 3).contiguous()


def _polish(velocity_fn, z0, **kw):
    """Re-noise z0 (B×C×T×H×W) to T0 and integrate back to 0 in STEPS Euler steps, all frames at one time."""
    with schedule_from(T0, STEPS):
        return _sample(velocity_fn, renoise(temporal_blur(z0, TSIGMA), T0, 1234), STEPS,
                       **dict(kw, stagger=0.0, stagger_context=None, cache="none", progress=None))


def sample(velocity_fn, noise, steps, **kw):
    """``flow.sample``, then (for staircase runs only) the polishing pass."""
    staircase = (kw.get("stagger") or 0.0) > 0
    if not staircase:
        return _sample(velocity_fn, noise, steps, **kw)
    z0 = _base(velocity_fn, noise, steps, **kw)
    if T0 <= 0:
        return z0
    return _polish(velocity_fn, z0, **kw)


if __name__ == "__main__":
    pipeline.sample = sample
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
