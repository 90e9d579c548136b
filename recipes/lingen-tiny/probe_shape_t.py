"""At which noise level does the denoiser lose an outline? A probe of the 4 s shape misses (session 22).

For each built-in prompt (scene seed ``--seed-base`` + i, the tuning seeds by default), the shapes
world renders its own 4 s clip, the shipped VAE encodes it (z₀), and z₀ is noised to a time t of the
sampler's schedule (``z_t = (1 − t)·z₀ + t·ε``, rectified flow, t = 1 is pure noise). The model then
samples from there to t = 0 with the remaining Euler steps of its 30-step schedule (CFG scale 5
against the empty prompt; no step caching or direction guidance, so only the denoiser is probed),
and the judge scores the decoded clip's shape. Starting at t = 0 is the VAE round trip; the largest
t from which an outline still comes back right is where the model stops keeping the world's shape.

    python recipes/lingen-tiny/probe_shape_t.py --limit 40 --t 0.4,0.6,0.8,1.0 --shapes circle,square

Prints one line per prompt and start, then the shape pass rate per shape word and start.
"""
from __future__ import annotations

import argparse
import collections

import numpy as np
import torch

from lingen_model.generation.flow import sampling_timesteps
from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.geometry import frames_for_length
from lingen_model.shapes.clips import scene_from_prompt
from lingen_model.shapes.judge import score_clip
from lingen_model.shapes.prompts import EVAL_PROMPTS
from lingen_model.shapes.render import render

SHAPES = ("circle", "square", "triangle")


@torch.no_grad()
def sample_from(pipe: LinGenPipeline, z0: torch.Tensor, t_start: float, prompt: str, seed: int, cfg: float) -> np.ndarray:
    """Noise z₀ (1×C×T×H×W) to the schedule time nearest ``t_start`` and Euler-sample to 0; uint8 frames T×H×W×3."""
    times = sampling_timesteps(30, pipe.default_shift(z0.shape)).tolist()  # LinGenPipeline.denoise's schedule
    k = min(range(len(times)), key=lambda i: abs(times[i] - t_start))
    gen = torch.Generator().manual_seed(seed)
    z = (1 - times[k]) * z0 + times[k] * torch.randn(z0.shape, generator=gen)
    ctx, mask = pipe.encode_prompt(["", prompt])
    for t, t_next in zip(times[k:-1], times[k + 1:]):
        v_u, v_c = pipe.denoiser(torch.cat([z, z]), torch.full((2,), t), ctx, mask).chunk(2)
        z = z + (t_next - t) * (v_u + cfg * (v_c - v_u))
    return pipe.decode(z)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--seed-base", type=int, default=3_000_003)
    ap.add_argument("--t", default="0.2,0.4,0.6,0.8,1.0", help="comma-separated start times (nearest schedule time)")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape words to probe")
    args = ap.parse_args()
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    fps, h, w = pipe.native["fps"], pipe.native["height"], pipe.native["width"]
    n, _ = frames_for_length("4s", fps)
    starts = [float(v) for v in args.t.split(",")]
    passed = collections.defaultdict(lambda: [0, 0])
    for i, prompt in enumerate(EVAL_PROMPTS[:args.limit]):
        word = next((s for s in SHAPES if s in prompt), None)
        if word is None or word not in args.shapes.split(","):
            continue
        seed = args.seed_base + i
        frames = render(scene_from_prompt(prompt, np.random.default_rng(seed)), n, h, w, fps)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)
        z0 = pipe.vae.encode(video, chunk_frames=pipe.vae_chunk_frames)
        for t in starts:
            s = score_clip(sample_from(pipe, z0, t, prompt, seed, args.cfg), prompt, fps)
            ok = s["shape"] >= 0.5
            passed[(word, t)][0] += ok
            passed[(word, t)][1] += 1
            print(f"{prompt} | t {t:g}: shape {s['shape']:.2f} unity {s['unity']:.2f}", flush=True)
    print("shape passed / n by start time:")
    for word in SHAPES:
        print(f"  {word:8s} " + "  ".join(f"t {t:g}: {passed[(word, t)][0]}/{passed[(word, t)][1]}" for t in starts))


if __name__ == "__main__":
    main()
