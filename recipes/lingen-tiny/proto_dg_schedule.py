"""Prototype, not in the library (session 37, issue 14): direction guidance with one weight above a noise level and
another below it, on the 4 s sampler (step caching on).

Direction guidance adds ``w·(v_c − v_x)`` (v_x: the velocity under the prompt with its direction words swapped) at
every step. The direction of a clip is decided at high noise (session 27); at weight 20 everywhere 4k lost colour and
unity on the 4 s tuning prompts (session 36), perhaps from the push at low noise, where only details are drawn. Here
the push is scaled by ``DG_HIGH`` at model times t ≥ ``DG_SPLIT_T`` and by ``DG_LOW`` below (factors of the request's
weight): the contrast call's velocity is replaced by ``v_c + r(t)·(v_x − v_c)``, so the sampler's term becomes
``r(t)·w·(v_c − v_x)``. ``v_c`` is the conditional velocity of the guided call that the sampler makes just before
each contrast call on the same z and t (with step caching the contrast runs apart from the guided batch and only on
full calls: ``flow.sample``, "held contrast"). Runs without step caching (the contrast batched with the rest) are
not changed.

    DG_SPLIT_T=0.8 DG_HIGH=2 DG_LOW=1 python recipes/lingen-tiny/proto_dg_schedule.py eval \\
        -m recipes/lingen-tiny/state-4k --length 4s --limit 80 --seed-base 3000003 --json F

Only the process running it is patched (the ``sample`` that ``pipeline`` calls).
"""
import functools
import os
import sys

import torch

from lingen_model.generation import pipeline as pipeline_mod

DG_SPLIT_T = float(os.environ.get("DG_SPLIT_T", "0.8"))
DG_HIGH = float(os.environ.get("DG_HIGH", "2"))
DG_LOW = float(os.environ.get("DG_LOW", "1"))


def install(split_t: float = DG_SPLIT_T, high: float = DG_HIGH, low: float = DG_LOW) -> None:
    """Patch ``pipeline.sample`` as the module docstring says."""
    sample = pipeline_mod.sample

    @functools.wraps(sample)
    def scheduled(velocity_fn, noise, steps, **kw):
        cc = kw.get("contrast_context")
        if cc is None or not kw.get("contrast_scale"):
            return sample(velocity_fn, noise, steps, **kw)
        b = noise.shape[0]
        cond = 1 if kw.get("cfg_scale", 1.0) != 1.0 else 0
        last = {}

        def wrapped(z, t, ctx, mask, **k):
            v = velocity_fn(z, t, ctx, mask, **k)
            if ctx.shape == cc.shape and torch.equal(ctx, cc.to(ctx)) and z.shape[0] == b and "v_c" in last:
                r = high if float(t.reshape(-1)[0]) >= split_t else low
                return last["v_c"] + r * (v - last["v_c"])
            if v.shape[0] >= (cond + 1) * b:
                last["v_c"] = v[cond * b:(cond + 1) * b]
            return v

        return sample(wrapped, noise, steps, **kw)

    pipeline_mod.sample = scheduled


if __name__ == "__main__":
    install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
