"""Probe, not in the library (session 27, issue 14): at which noise level are a clip's splits and jumps decided?

Renders the shapes world's own clip of each built-in prompt (scene seed 4,000,003 + i, the 60 s tuning seeds'
numbers), encodes it with the model's VAE, re-noises the latent to ``t0`` on the rectified-flow path
(``z_t0 = (1 − t0)·z_0 + t0·ε``, ε seeded 7 + i; SDEdit, Meng et al. 2022), integrates back to 0 with the
model's guidance (CFG scale, ``cfg_max_t``, direction guidance: its ``config.json``), all frames at once, in
``--steps`` Euler steps evenly spaced in t, decodes and judges. ``t0 = 0`` is the VAE round trip, ``t0 = 1``
plain generation (from noise, with this probe's schedule). Where the layout the world drew survives a given
``t0`` (unity 1, no jumps), everything the model decides below ``t0`` is right. It is session 22's
``probe_shape_t.py`` (the circle's outline, 4 s, CFG only, the 30-step schedule's times) turned to the coherence
criteria, any length and the model's full guidance. One line per prompt and t0::

    python recipes/lingen-tiny/probe_sdedit_gt.py --length 8s --limit 12 --t0 0.8,0.9,0.95,1.0 --steps 10
"""
from __future__ import annotations

import argparse
import contextlib

import numpy as np
import torch

from lingen_model.generation import flow
from lingen_model.generation.contrast import opposite_direction
from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.geometry import frames_for_length
from lingen_model.shapes.clips import scene_from_prompt
from lingen_model.shapes.judge import score_clip
from lingen_model.shapes.prompts import EVAL_PROMPTS
from lingen_model.shapes.render import render
from lingen_model.training.data import _to_tensor as frames_to_tensor  # uint8 T×H×W×3 → 3×T×H×W in [-1, 1]


def renoise(z: torch.Tensor, t0: float, seed: int) -> torch.Tensor:
    """The rectified-flow path at ``t0`` (the model's time in [0, 1]): ``(1 − t0)·z + t0·ε``, ε ~ N(0, I) drawn on
    the CPU from ``seed``; same shape, dtype and device as the latent ``z`` (any shape). Raises nothing."""
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
    return (1 - t0) * z + t0 * eps.to(z.device, z.dtype)


@contextlib.contextmanager
def schedule_from(t0: float, steps: int):
    """Within the block, ``flow.sample`` integrates from ``t0`` (not 1) to 0 in ``steps`` Euler steps evenly spaced
    in t (its ``shift`` is then ignored); the library's ``flow.sampling_timesteps`` is restored on exit."""
    times = torch.linspace(t0, 0.0, steps + 1, dtype=torch.float64)
    original = flow.sampling_timesteps
    flow.sampling_timesteps = lambda *_a, **_k: times
    try:
        yield
    finally:
        flow.sampling_timesteps = original


def sdedit(pipe: LinGenPipeline, z: torch.Tensor, prompt: str, t0: float, steps: int, seed: int) -> torch.Tensor:
    """Latent B×C×T×H×W → the same shape: re-noised to ``t0`` (:func:`renoise`) and integrated back to 0 in ``steps``
    Euler steps (:func:`schedule_from`) with the model's guidance from its ``config.json`` (CFG scale,
    ``cfg_max_t``; direction guidance when the prompt has a direction word). ``t0 <= 0`` returns ``z`` itself.
    Raises what ``LinGenPipeline.denoise`` raises (ValueError for mismatched shapes)."""
    if t0 <= 0:
        return z
    sampling = pipe.config.get("sampling", {})
    w = float(sampling.get("direction_guidance", 0.0))
    contrast = opposite_direction(prompt)
    ctx, mask = pipe.encode_prompt([prompt, ""] + ([contrast] if contrast and w > 0 else []))
    contrasted = ctx.shape[0] > 2
    with schedule_from(t0, steps):
        return pipe.denoise(renoise(z, t0, seed), ctx[:1], mask[:1], ctx[1:2], mask[1:2], steps=steps,
                            cfg_scale=float(sampling.get("cfg_scale", 1.0)), shift=1.0,
                            contrast_context=ctx[2:3] if contrasted else None,
                            contrast_mask=mask[2:3] if contrasted else None,
                            contrast_scale=w if contrasted else 0.0,
                            cfg_max_t=float(sampling.get("cfg_max_t", 1.0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--length", default="8s")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--seed-base", type=int, default=4_000_003)
    ap.add_argument("--t0", default="0,0.8,0.9,0.95,1.0", help="comma-separated times to re-noise to")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    fps, h, w = pipe.native["fps"], pipe.native["height"], pipe.native["width"]
    n, _ = frames_for_length(args.length, fps)
    for i, prompt in enumerate(EVAL_PROMPTS[:args.limit]):
        frames = render(scene_from_prompt(prompt, np.random.default_rng(args.seed_base + i)), n, h, w, fps)
        video = frames_to_tensor(frames)[None]
        with torch.no_grad():
            z = pipe.vae.encode(video, chunk_frames=pipe.vae_chunk_frames)
        for t0 in (float(v) for v in args.t0.split(",")):
            s = score_clip(pipe.decode(sdedit(pipe, z, prompt, t0, args.steps, 7 + i)), prompt, fps)
            print(f"{i} {prompt} | t0 {t0:.2f}: unity {s['unity']:.2f} consistency {s['motion_consistency'] or 0:.2f} "
                  f"jumps {s['jumps']:.1f} persistence {s['persistence']:.2f}", flush=True)


if __name__ == "__main__":
    main()
