"""Prototype, not in the library (session 18, issue 14): a staircase whose first HEAD latent frames are
sampled first as a short clip at lingen-tiny's short-clip defaults (TaylorSeer, 30 steps, the head's own
token-count shift), then held fixed (t = 0) while the remaining frames run the staircase behind them.

It replaces ``pipeline.sample`` and ``flow.staggered_times`` in this process and then runs the ``lingen``
CLI with the given arguments, e.g. (docs/eval/README.md, "Session 18")::

    HEAD=9 python recipes/lingen-tiny/proto_headfirst.py eval --length 8s --limit 40 --seed-base 3000003 \
        --stagger 0.1 --stagger-context 6 --steps 20 --cache none

Only runs with ``--stagger`` > 0 and more than HEAD latent frames change. Assumes patch size 2 (lingen-tiny).

Since session 36 the library does the same (``GenerationRequest(head=N)``, ``--head N`` on ``generate`` and
``eval``, ``sampling.head`` in a checkpoint; ``LinGenPipeline.denoise``); ``tests/test_head_first.py`` checks that
the two give the same clip.
"""
import os
import sys

import torch

from lingen_model.generation import flow, pipeline

HEAD = int(os.environ.get("HEAD", "9"))
_sample, _times = flow.sample, flow.staggered_times
state = {"fixed": 0}  # latent frames held at t = 0 during the current staircase run


def staggered_times(steps, shift, stagger, frames, fixed=0):
    """``flow.staggered_times`` with the first ``state["fixed"]`` frames held at t = 0: float64
    ``[staggered_steps(steps, stagger, frames − fixed) + 1, frames]``, the staircase of the other frames.
    (Written before the library held frames itself, session 36; kept as the reference its test compares
    ``flow.sample(fixed_frames=)`` with.)"""
    h = state["fixed"] or fixed
    t = _times(steps, shift, stagger, frames - h)
    return torch.cat([t.new_zeros(t.shape[0], h), t], dim=1)


def sample(velocity_fn, noise, steps, **kw):
    """``flow.sample`` (noise B×C×T×H×W latents → B×C×T×H×W), but a staircase run (``stagger`` > 0, T > HEAD)
    first samples frames 0 … HEAD − 1 as a short clip (TaylorSeer, 30 steps, shift from their token count,
    patch 2 assumed) and then runs the staircase on the rest beside them."""
    stagger = kw.get("stagger", 0.0) or 0.0
    if stagger <= 0 or noise.shape[2] <= HEAD:
        return _sample(velocity_fn, noise, steps, **kw)
    tokens = HEAD * (noise.shape[3] // 2) * (noise.shape[4] // 2)  # patch 2 (lingen-tiny)
    hk = dict(kw, stagger=0.0, stagger_context=None, cache="taylor", shift=flow.shift_for_tokens(tokens), progress=None)
    z = noise.clone()
    z[:, :, :HEAD] = _sample(velocity_fn, noise[:, :, :HEAD].contiguous(), 30, **hk)
    state["fixed"] = HEAD
    try:
        return _sample(velocity_fn, z, steps, **kw)
    finally:
        state["fixed"] = 0


if __name__ == "__main__":
    flow.staggered_times = staggered_times
    pipeline.sample = sample
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
