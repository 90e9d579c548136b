"""Prototype, not in the library (session 36, issue 14): pick the clip whose direction the model itself reads.

With its head first, a minute keeps the direction of its first 4 s (docs/eval/README.md, "Session 36"), and a 4 s
clip of 4k moves the named way in 65 of 80 tuning prompts. Here each clip whose prompt names a direction is
sampled from K noises (the request's seed, then seed + 1,000,003·k), and the model scores each result ``x`` as a
diffusion classifier (Li et al. 2023, "Your Diffusion Model is Secretly a Zero-Shot Classifier", §3) between the
prompt ``p`` and its contrast caption ``p̃`` (the direction words swapped, as direction guidance uses)::

    margin(x) = Σ_t  ‖v(z_t, t, p) − (ε − x)‖² − ‖v(z_t, t, p̃) − (ε − x)‖²,   z_t = (1 − t) x + t ε

over ``t`` in ``TIMES`` with one fixed ε (seeded). The clip with the lowest margin (the prompt explains it best
against its opposite) is decoded. Prompts without a direction word, and K = 1, sample as before. Cost: K times the
denoising, plus 2·len(TIMES) denoiser calls a candidate. No judge is used: the score is the model's own loss.

    RERANK_K=2 [RERANK_LOG=margins.jsonl] python recipes/lingen-tiny/proto_rerank.py eval \
        -m recipes/lingen-tiny/state-4k --length 4s --limit 80 --seed-base 3000003 --json F

Measured (session 36, 4k, 80 tuning prompts; docs/eval/README.md, "Session 36"): of the 22 direction prompts whose
two candidates differ in motion the margin keeps the one moving the named way in 15 (p ≈ 0.13); motion 65 → 66 of
80, while a perfect choice of two would reach 73. Some signal, too little to use at K = 2.

Only the process running it is patched (``LinGenPipeline.generate`` and ``LinGenPipeline.denoise``).
"""
import functools
import json
import os
import sys

import torch

from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.flow import make_step_cache
from lingen_model.generation.step_cache import StepCache

#: Candidates a clip (the request's seed first).
RERANK_K = int(os.environ.get("RERANK_K", "2"))
#: Noise levels of the classifier's loss (rectified-flow times; 1 = pure noise).
TIMES = (0.25, 0.5, 0.75)
#: Seed of the classifier's fixed noise ε.
SCORE_SEED = 12345
#: When set, a JSON line a reranked clip is appended here: {"seed": request seed, "margins": [one a candidate]}.
RERANK_LOG = os.environ.get("RERANK_LOG")


@torch.no_grad()
def direction_margin(denoiser, x, context, mask, contrast_context, contrast_mask, times=TIMES,
                     seed: int = SCORE_SEED) -> float:
    """Σ over ``times`` of the flow-matching loss of latents ``x`` (1×C×T×H×W) under the prompt's tokens
    (1×L×D, mask 1×L) minus that under the contrast caption's (1×L'×D, 1×L'): negative when the prompt explains
    ``x`` better. One ε ~ N(0, I) from ``seed`` serves every time and both captions. ``denoiser(z, t, ctx, mask)``
    takes ``t`` of shape [1]. Raises what the denoiser raises for mismatched shapes."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x)
    target = eps - x
    total = 0.0
    for t in times:
        z = (1 - t) * x + t * eps
        tt = torch.full((1,), float(t), dtype=x.dtype, device=x.device)
        lp = (denoiser(z, tt, context, mask) - target).pow(2).mean()
        lx = (denoiser(z, tt, contrast_context, contrast_mask) - target).pow(2).mean()
        total += float(lp - lx)
    return total


def install(k: int = RERANK_K) -> None:
    """Patch ``LinGenPipeline`` so that each clip with a contrast caption is the best of ``k`` by
    :func:`direction_margin`. Raises ValueError for ``k`` < 1."""
    if k < 1:
        raise ValueError(f"RERANK_K must be >= 1, got {k}")
    cls = pipeline_mod.LinGenPipeline
    generate, denoise = cls.generate, cls.denoise

    @functools.wraps(generate)
    def rerank_generate(self, request, progress=None):
        req = request if isinstance(request, pipeline_mod.ResolvedRequest) else self.resolve(request)
        self._rerank_seed = req.seed
        try:
            return generate(self, req, progress)
        finally:
            del self._rerank_seed

    @functools.wraps(denoise)
    def rerank_denoise(self, noise, context, mask, uncond_context=None, uncond_mask=None, **kw):
        cc, cm = kw.get("contrast_context"), kw.get("contrast_mask")
        cache = kw.get("cache", "none")
        z0 = denoise(self, noise, context, mask, uncond_context, uncond_mask, **kw)
        if cc is None or k == 1 or noise.shape[0] != 1:
            return z0
        best, best_m = z0, direction_margin(self.denoiser, z0.float(), context, mask, cc, cm)
        margins = [best_m]
        for j in range(1, k):
            g = torch.Generator().manual_seed(self._rerank_seed + 1_000_003 * j)
            other = torch.randn(noise.shape, generator=g).to(noise)
            if isinstance(cache, StepCache):  # a fresh cache of the same kind for each run
                kw["cache"] = make_step_cache(cache.mode, kw.get("steps", 20))
            z = denoise(self, other, context, mask, uncond_context, uncond_mask, **kw)
            m = direction_margin(self.denoiser, z.float(), context, mask, cc, cm)
            margins.append(m)
            if m < best_m:
                best, best_m = z, m
        if RERANK_LOG:
            with open(RERANK_LOG, "a") as f:
                f.write(json.dumps({"seed": self._rerank_seed, "margins": margins}) + "\n")
        return best

    cls.generate, cls.denoise = rerank_generate, rerank_denoise


if __name__ == "__main__":
    install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
