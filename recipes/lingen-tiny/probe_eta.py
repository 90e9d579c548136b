"""Stochastic sampling against plain Euler: are the 4 s circles rounder? (session 23, issue 14; a probe, not in the library)

For the prompts naming the given shapes among the first ``limit`` built-in prompts (tuning seeds
3,000,003 + i, the pipeline's own initial noise for each seed), a 4 s clip is sampled with the model's
schedule, CFG scale and guidance interval (its ``sampling`` steps, ``cfg_scale``, ``cfg_max_t``; lingen-tiny:
30 steps, CFG 5 at t ≤ 0.84, the conditional velocity alone above), no step caching and no direction guidance. Each step predicts x̂₀ = z − t·v and ε̂ = z + (1 − t)·v and moves to the
next time t' as ``z' = (1 − t')·x̂₀ + t'·(√(1 − η²)·ε̂ + η·ξ)`` with fresh noise ξ: η = 0 is exactly the
Euler step, η > 0 re-noises part of the way (DDIM's η, Song et al. 2021, §4.1, written for rectified flow),
only for steps whose t lies in [lo, hi]. The judge scores each clip.

    python recipes/lingen-tiny/probe_eta.py 0,0.5,0.8 0.3,0.9 circle,square 40

Prints one line per clip and η, then the pass counts per shape word and η.
"""
import math
import sys

import torch

from lingen_model.generation.flow import sampling_timesteps
from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.geometry import frames_for_length
from lingen_model.shapes.judge import score_clip
from lingen_model.shapes.prompts import EVAL_PROMPTS


@torch.no_grad()
def sample(pipe, prompt: str, seed: int, eta: float, lo: float, hi: float):
    """One 4 s clip (uint8 frames T×H×W×3) of ``prompt`` at the model's native size, from the pipeline's
    noise for ``seed``, with the model's steps, CFG scale and ``cfg_max_t``."""
    native, sampling = pipe.native, pipe.config.get("sampling", {})
    cfg, cfg_max_t = sampling.get("cfg_scale", 5.0), sampling.get("cfg_max_t", 1.0)
    z = pipe.prepare_latents(frames_for_length("4s", native["fps"])[0], native["height"], native["width"], seed)
    times = sampling_timesteps(sampling.get("steps", 30), pipe.default_shift(z.shape)).tolist()
    ctx, mask = pipe.encode_prompt(["", prompt])
    gen = torch.Generator().manual_seed(seed + 7)
    for t, tn in zip(times[:-1], times[1:]):
        v_u, v_c = pipe.denoiser(torch.cat([z, z]), torch.full((2,), t), ctx, mask).chunk(2)
        v = v_u + cfg * (v_c - v_u) if t <= cfg_max_t else v_c
        e = eta if lo <= t <= hi and tn > 0 else 0.0
        if e == 0:
            z = z + (tn - t) * v
        else:
            x0, eps = z - t * v, z + (1 - t) * v
            z = (1 - tn) * x0 + tn * (math.sqrt(1 - e * e) * eps + e * torch.randn(z.shape, generator=gen))
    return pipe.decode(z)


def main() -> None:
    etas = [float(x) for x in sys.argv[1].split(",")]
    lo, hi = (float(x) for x in sys.argv[2].split(","))
    words = sys.argv[3].split(",") if len(sys.argv) > 3 else ["circle"]
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    pipe = LinGenPipeline.from_pretrained(None, device="cpu")
    for eta in etas:
        res = {w: [] for w in words}
        for i in range(limit):
            w = next((w for w in words if w in EVAL_PROMPTS[i]), None)
            if w is None:
                continue
            s = score_clip(sample(pipe, EVAL_PROMPTS[i], 3_000_003 + i, eta, lo, hi), EVAL_PROMPTS[i],
                           pipe.native["fps"])
            res[w].append(s)
            print(f"eta {eta} | {EVAL_PROMPTS[i]}: shape {s['shape']:.2f} unity {s['unity']:.2f} "
                  f"colour {s['color']:.2f} motion {s['motion']:.2f}", flush=True)
        for w, r in res.items():
            n = len(r)
            print(f"eta {eta} [{lo},{hi}] {w}: shape {sum(x['shape'] >= 0.5 for x in r)}/{n} "
                  f"mean {sum(x['shape'] for x in r) / n:.2f} unity mean {sum(x['unity'] for x in r) / n:.2f} "
                  f"colour {sum(x['color'] >= 0.5 for x in r)}/{n} motion {sum(x['motion'] >= 0.5 for x in r)}/{n}",
                  flush=True)


if __name__ == "__main__":
    main()
