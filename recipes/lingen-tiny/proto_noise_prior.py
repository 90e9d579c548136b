"""Prototype, not in the library (session 28, issue 14): initial noise correlated along time.

Session 27 found the splits and jumps decided in the top fifth of the noise levels, where the model draws the
layout from the initial noise z₁ alone. Here z₁ is drawn with a first-order autoregressive correlation between
consecutive latent frames (the "progressive" noise prior of PYoCo, Ge et al., arXiv 2305.10474, §3.2):

    ε_0 ~ N(0, I),   ε_f = ρ·ε_{f−1} + √(1 − ρ²)·ξ_f,   ξ_f ~ N(0, I)

so every latent frame is still N(0, I) but neighbouring frames share part of their layout seed: the temporal
differences of z_t then carry more of the clip's own motion at high noise, where the layout is decided.
``NOISE_RHO`` = ρ (0 = the library's independent noise, from the same seed's draw). Replaces
``LinGenPipeline.prepare_latents`` (sampling) and, for ``train``, the training noise of ``flow.flow_matching_loss``
in this process, and runs the ``lingen`` CLI with the given arguments, e.g.::

    NOISE_RHO=0.5 python recipes/lingen-tiny/proto_noise_prior.py train recipes/lingen-tiny/denoiser-4e.yaml
    NOISE_RHO=0.5 python recipes/lingen-tiny/proto_noise_prior.py eval -m runs/lingen-tiny-4e/export --length 4s \
        --limit 80 --seed-base 3000003
"""
import math
import os
import sys

import torch

from lingen_model.generation import flow, pipeline

NOISE_RHO = float(os.environ.get("NOISE_RHO", "0.5"))


def correlate(xi: torch.Tensor, rho: float) -> torch.Tensor:
    """xi: independent N(0, I) noise B×C×T'×H'×W' → AR(1) noise along T' with lag-one correlation ``rho``
    (same shape; every frame N(0, I)). ``rho`` in [0, 1); ValueError outside."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    out = xi.clone()
    keep = math.sqrt(1.0 - rho * rho)
    for f in range(1, xi.shape[2]):
        out[:, :, f] = rho * out[:, :, f - 1] + keep * xi[:, :, f]
    return out


_prepare = pipeline.LinGenPipeline.prepare_latents


def prepare_latents(self, num_frames, height, width, seed, batch=1):
    """The library's z₁ from ``seed`` (B×C×T'×H'×W' for ``num_frames`` × ``height`` × ``width`` pixels, independent
    frames), made AR(1) along T' with ρ = ``NOISE_RHO`` (:func:`correlate`; ValueError for ρ outside [0, 1))."""
    noise = _prepare(self, num_frames, height, width, seed, batch)
    return correlate(noise.float(), NOISE_RHO).to(noise.dtype)


_loss = flow.flow_matching_loss


def flow_matching_loss(model_fn, x0, *args, noise, **kw):
    """``flow.flow_matching_loss`` with its noise (B×C×T'×H'×W', which the trainer always passes) made AR(1) along
    time with ρ = ``NOISE_RHO``."""
    return _loss(model_fn, x0, *args, noise=correlate(noise, NOISE_RHO), **kw)


if __name__ == "__main__":
    pipeline.LinGenPipeline.prepare_latents = prepare_latents
    flow.flow_matching_loss = flow_matching_loss
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
