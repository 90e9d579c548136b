"""Prototype, not in the library (session 18, issue 14): a staircase whose first HEAD latent frames are
sampled first as a short clip at lingen-tiny's short-clip defaults (TaylorSeer, 30 steps, the head's own
token-count shift), then held fixed (t = 0) while the remaining frames run the staircase behind them.

It replaces ``pipeline.sample`` and ``flow.staggered_times`` in this process and then runs the ``lingen``
CLI with the given arguments, e.g. (docs/eval/README.md, "Session 18")::

    HEAD=9 python recipes/lingen-tiny/proto_headfirst.py eval --length 8s --limit 40 --seed-base 3000003 \
        --stagger 0.1 --stagger-context 6 --steps 20 --cache none

Only runs with ``--stagger`` > 0 and more than HEAD latent frames change. Assumes patch size 2 (lingen-tiny).
"""
import math, os, sys, torch
from lingen_model.generation import flow, pipeline
HEAD = int(os.environ.get("HEAD", "9"))
_sample, _times = flow.sample, flow.staggered_times
state = {"fixed": 0}

def staggered_times(steps, shift, stagger, frames):
    h = state["fixed"]
    if h == 0:
        return _times(steps, shift, stagger, frames)
    rest = frames - h
    n = math.ceil(steps * (1.0 + stagger * (rest - 1)) - 1e-9)
    u = torch.linspace(1.0, -stagger * (rest - 1), n + 1, dtype=torch.float64)
    k = torch.arange(frames, dtype=torch.float64) - h
    t = (u[:, None] + stagger * k[None]).clamp(0.0, 1.0)
    t[:, :h] = 0.0
    return flow.time_shift(t, shift)

def sample(velocity_fn, noise, steps, **kw):
    stagger = kw.get("stagger", 0.0) or 0.0
    if stagger <= 0 or noise.shape[2] <= HEAD:
        return _sample(velocity_fn, noise, steps, **kw)
    tokens = HEAD * (noise.shape[3] // 2) * (noise.shape[4] // 2)  # patch 2 (lingen-tiny)
    hk = dict(kw, stagger=0.0, stagger_context=None, cache="taylor", shift=flow.shift_for_tokens(tokens), progress=None)
    head = _sample(velocity_fn, noise[:, :, :HEAD].contiguous(), 30, **hk)
    z = noise.clone()
    z[:, :, :HEAD] = head
    state["fixed"] = HEAD
    try:
        return _sample(velocity_fn, z, steps, **kw)
    finally:
        state["fixed"] = 0

flow.staggered_times = staggered_times
pipeline.sample = sample
from lingen_cli.app import app
sys.argv = ["lingen"] + sys.argv[1:]
app()
