"""Prototype, not in the library (session 28, issue 14): autoguidance by an earlier checkpoint of the same model.

Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself", §3) pushes each step
away from a weaker model of the same kind: the errors the weaker model makes more of (here, perhaps, the second
copies and forward bursts drawn at high noise, session 27) are extrapolated away. Every row of the sampler's batch
(the unconditional, the conditional and the direction-contrast rows) gets

    v ← v + s·(v − v_bad)

with v_bad the earlier checkpoint's velocity for the same latent, time and caption, so that the guided velocity
the sampler forms from the rows moves by s·(guided − guided_bad). Only calls (and, under the staircase, latent
frames) at the model's time t ≥ ``AG_MIN_T`` are changed. v_bad is always a full call (no step caching).
Session 24's skip guidance (a layer left out) was a different weak model and lost colour at every scale.

Environment: ``AG_WEIGHTS`` (a denoiser.safetensors of the same architecture and latent space; e.g. step 9,000
from commit 17f33fd), ``AG_SCALE`` (s), ``AG_MIN_T``. Replaces ``LinGenPipeline.denoise`` and
``pipeline.sample`` in this process and runs the ``lingen`` CLI with the given arguments, e.g.::

    AG_WEIGHTS=runs/p28/bad-9000/denoiser.safetensors AG_SCALE=0.5 AG_MIN_T=0.8 \\
        python recipes/lingen-tiny/proto_autoguidance.py eval --length 4s --limit 80 --seed-base 3000003
"""
import copy
import os
import sys

import torch
from safetensors.torch import load_file

from lingen_model.generation import pipeline

AG_WEIGHTS = os.environ.get("AG_WEIGHTS", "runs/p28/bad-9000/denoiser.safetensors")
AG_SCALE = float(os.environ.get("AG_SCALE", "0.5"))
AG_MIN_T = float(os.environ.get("AG_MIN_T", "0.8"))
_bad = {}
_denoise = pipeline.LinGenPipeline.denoise
_sample = pipeline.sample


def denoise(self, noise, *args, **kw):
    """``LinGenPipeline.denoise`` (same arguments and latent B×C×T'×H'×W' result) with the weak denoiser built once:
    a copy of this one with ``AG_WEIGHTS`` loaded (safetensors; RuntimeError from ``load_state_dict`` when the
    architecture differs, FileNotFoundError when the file is missing)."""
    if "model" not in _bad:
        bad = copy.deepcopy(self.denoiser)
        state = load_file(AG_WEIGHTS)
        bad.load_state_dict({k: v.to(next(bad.parameters()).dtype) for k, v in state.items()})
        _bad["model"] = bad.eval()
    return _denoise(self, noise, *args, **kw)


def autoguided(velocity_fn):
    """velocity_fn of ``pipeline.denoise`` → the same with every row pushed away from the weak model's velocity:
    ``wrapped(z B×C×T'×H'×W', t [B] or [B, T'] (the model's time, 1 = noise), ctx B×L×D, mask B×L)`` returns v
    of z's shape, ``v + AG_SCALE·(v − v_weak)`` where t ≥ ``AG_MIN_T`` (per latent frame), v elsewhere. Needs the
    weak model loaded (:func:`denoise`; KeyError before); raises what the denoisers raise for bad shapes."""
    bad = _bad["model"]

    def wrapped(z, t, ctx, m, cache=None, t_offset=None):
        v = velocity_fn(z, t, ctx, m, cache=cache, t_offset=t_offset)
        high = t >= AG_MIN_T  # [n] or [n, T']
        if AG_SCALE == 0 or not bool(high.any()):
            return v
        extra = {} if t_offset is None else {"t_offset": t_offset}
        v_bad = bad(z, t.to(z.dtype), ctx, m, **extra)
        mask = high.reshape(z.shape[0], 1, -1, 1, 1)
        return torch.where(mask, v + AG_SCALE * (v - v_bad), v)

    return wrapped


def sample(velocity_fn, noise, steps, **kw):
    """``flow.sample`` (same arguments) with ``velocity_fn`` autoguided (:func:`autoguided`)."""
    return _sample(autoguided(velocity_fn), noise, steps, **kw)


if __name__ == "__main__":
    pipeline.LinGenPipeline.denoise = denoise
    pipeline.sample = sample
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
