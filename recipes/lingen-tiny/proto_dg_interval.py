"""Prototype, not in the library (session 27, issue 14): direction guidance in a limited interval of noise levels.

Session 21 found every judged jump of a 60 s clip to be a forward skip along the named direction; direction
guidance (design §7) adds ``w·(v_c − v_x)``, a push along that direction, at every noise level. This prototype
applies it only at times ``t ≥ DG_MIN_T`` (the model's time, after the time shift), where the direction is
decided, by making the contrast batch's velocity equal the prompt's below it. Only runs that batch the contrast
with the others (no step caching: the staircase, ``--cache none``) are changed. Replaces ``pipeline.sample``
in this process and runs the ``lingen`` CLI with the given arguments, e.g.::

    DG_MIN_T=0.9 python recipes/lingen-tiny/proto_dg_interval.py eval --length 60s --limit 12 --seed-base 4000003
"""
import os
import sys

import torch

from lingen_model.generation import flow, pipeline

DG_MIN_T = float(os.environ.get("DG_MIN_T", "0.9"))
_sample = flow.sample


def sample(velocity_fn, noise, steps, **kw):
    """``flow.sample`` with the contrast batch's velocity replaced by the prompt's where ``t < DG_MIN_T``."""
    joint = kw.get("contrast_context") is not None and kw.get("contrast_scale", 0) != 0 and kw.get("cache", "none") == "none"
    guided = kw.get("cfg_scale", 1.0) != 1.0
    if not joint:
        return _sample(velocity_fn, noise, steps, **kw)
    b = noise.shape[0]
    cond = b if guided else 0

    def wrapped(z, t, ctx, m, **extra):
        v = velocity_fn(z, t, ctx, m, **extra)
        low = t[cond + b:cond + 2 * b] < DG_MIN_T  # contrast rows: [B] or [B, T]
        if low.any():
            v = v.clone()
            vc, vx = v[cond:cond + b], v[cond + b:cond + 2 * b]
            mask = low.reshape(b, 1, -1, 1, 1)  # per sample, or per sample and latent frame (video v)
            v[cond + b:cond + 2 * b] = torch.where(mask, vc, vx)
        return v

    return _sample(wrapped, noise, steps, **kw)


if __name__ == "__main__":
    pipeline.sample = sample
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
