"""Prototype, not in the library (session 21, issue 14): a staircase with a different slope at its start.

The first HEAD_FRAMES latent frames lag HEAD_STAGGER each (default 10 × 0.1: the frames that share the
staircase's first unit of time), the later ones lag the CLI's ``--stagger`` each. It replaces
``flow.staggered_times`` in this process (the sampler and the time estimate both read it from there) and
then runs the ``lingen`` CLI with the given arguments, e.g. (docs/eval/README.md, "Session 21")::

    HEAD_FRAMES=10 HEAD_STAGGER=0.1 python recipes/lingen-tiny/proto_stagger_start.py eval --length 60s \
        --seed-base 4000003 --limit 12 --stagger 0.2

With HEAD_STAGGER equal to ``--stagger`` it is the library's staircase (times equal up to float rounding).
"""
import math
import os
import sys

import torch

from lingen_model.generation import flow

K = int(os.environ.get("HEAD_FRAMES", "10"))
LH = float(os.environ.get("HEAD_STAGGER", "0.1"))


def staggered_times(steps, shift, stagger, frames, fixed=0):
    """``flow.staggered_times`` with lags ``LH·min(k, K) + stagger·max(k − K, 0)``: float64
    ``[⌈steps·(1 + last lag)⌉ + 1, frames]``, the clock running from 1 to minus the last lag. (``fixed``, the
    library's held head since session 36, is not combined with these lags: ValueError unless 0.)"""
    if fixed:
        raise ValueError("proto_stagger_start does not combine with a head (fixed frames)")
    k = torch.arange(frames, dtype=torch.float64)
    off = LH * k.clamp(max=K) + stagger * (k - K).clamp(min=0)
    total = float(off[-1])
    n = math.ceil(steps * (1.0 + total) - 1e-9)
    u = torch.linspace(1.0, -total, n + 1, dtype=torch.float64)
    return flow.time_shift((u[:, None] + off[None]).clamp(0.0, 1.0), shift)


if __name__ == "__main__":
    flow.staggered_times = staggered_times
    from lingen_cli.app import main

    sys.argv = ["lingen"] + sys.argv[1:]
    main()
