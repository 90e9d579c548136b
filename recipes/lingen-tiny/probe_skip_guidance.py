"""Skip guidance: push the prediction away from the same denoiser with blocks left out (session 24, issue 14;
a probe, not in the library)

Spatiotemporal skip guidance (Hyung et al. 2024, "Spatiotemporal Skip Guidance for Enhanced Video Diffusion
Sampling", §3) builds a weaker model without training by skipping layers of the denoiser, and moves the sample
away from it, as autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself")
does with a separately trained weak model: ``v ← v + s·(v_c − v_skip)``, where ``v`` is the sampler's guided
velocity (CFG, direction guidance), ``v_c`` the conditional velocity and ``v_skip`` the conditional velocity of
the denoiser with the blocks in ``--skip`` left out (every block is residual, so leaving one out is well defined).

The probe wraps ``flow.sample`` as the pipeline calls it and runs ``lingen eval`` with every other setting as
given (the model's defaults unless overridden). With step caching, ``v_skip`` runs on the full calls only
(batch B, uncached) and its difference is held through the cached calls that follow, as contrast guidance
does (``flow.sample``); the direction contrast's own uncached call is passed through untouched.

    python recipes/lingen-tiny/probe_skip_guidance.py --skip 4 --scale 1.0 -- --length 4s --limit 40 \\
        --seed-base 3000003 --json docs/eval/tuning/...json

Every argument after ``--`` goes to ``lingen eval``.
"""
import argparse
import sys

import torch
from torch import nn

import lingen_model.generation.pipeline as pipeline_module

STATE = {"pipe": None, "skip": (), "scale": 0.0, "max_t": 1.0, "min_t": 0.0}


def _skip_velocity(z, t, ctx, mask):
    """The conditional velocity of the denoiser without the blocks in STATE['skip']."""
    den = STATE["pipe"].denoiser
    blocks = den.blocks
    den.blocks = nn.ModuleList([b for i, b in enumerate(blocks) if i not in STATE["skip"]])
    try:
        return den(z, t.to(z.dtype), ctx, mask)
    finally:
        den.blocks = blocks


def _wrapped_sample(velocity_fn, noise, steps, **kw):
    batch = noise.shape[0]
    cond = 1 if kw.get("cfg_scale", 1.0) != 1.0 else 0
    cache = kw.get("cache", "none")
    step_cache = None if isinstance(cache, str) else cache
    held = {}

    def velocity(z, t, ctx, mask, cache=None, t_offset=None):
        extra = {} if cache is None else {"cache": cache}
        if t_offset is not None:
            extra["t_offset"] = t_offset
        if step_cache is not None and cache is None:  # the direction contrast's own uncached call
            return velocity_fn(z, t, ctx, mask, **extra)
        before = step_cache.full_calls if step_cache is not None else None
        v = velocity_fn(z, t, ctx, mask, **extra)
        tc = float(t.reshape(-1)[0])
        if not STATE["min_t"] <= tc <= STATE["max_t"] or STATE["scale"] == 0:
            return v
        rows = slice(cond * batch, (cond + 1) * batch)
        if step_cache is None or step_cache.full_calls > before or "delta" not in held:
            v_skip = _skip_velocity(z[rows], t[rows], ctx[rows], mask[rows])
            held["delta"] = STATE["scale"] * (v[rows] - v_skip)
        return v + held["delta"].repeat(v.shape[0] // batch, *([1] * (v.dim() - 1)))

    return ORIGINAL_SAMPLE(velocity, noise, steps, **kw)


ORIGINAL_SAMPLE = pipeline_module.sample
ORIGINAL_DENOISE = pipeline_module.LinGenPipeline.denoise


def _denoise(self, *args, **kw):
    STATE["pipe"] = self
    return ORIGINAL_DENOISE(self, *args, **kw)


def main() -> None:
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    mine = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="4", help="blocks to leave out, comma-separated (0-based)")
    ap.add_argument("--scale", type=float, default=1.0, help="s")
    ap.add_argument("--max-t", type=float, default=1.0, help="apply at sampler times t <= this only")
    ap.add_argument("--min-t", type=float, default=0.0, help="apply at sampler times t >= this only")
    a = ap.parse_args(mine)
    STATE.update(skip=tuple(int(x) for x in a.skip.split(",") if x), scale=a.scale, max_t=a.max_t, min_t=a.min_t)
    pipeline_module.sample = _wrapped_sample
    pipeline_module.LinGenPipeline.denoise = _denoise
    print(f"skip guidance: blocks {STATE['skip']} scale {a.scale} t in [{a.min_t}, {a.max_t}]", flush=True)
    from lingen_cli.app import main as cli_main

    sys.argv = ["lingen", "eval", *rest]
    cli_main()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
