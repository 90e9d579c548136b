"""Probe, not in the library (session 37, issue 14): the model's own denoising losses of each clip it samples.

Session 36's best-of-two (``proto_rerank.py``) kept the clip with the lower direction *margin* (its loss under the
prompt minus that under the direction-swapped caption) and picked the right-way clip in 15 of 22 disagreements.
That margin cancels what both captions share, including how plausible the clip is at all (one object, whole).
This probe logs, for every clip ``x`` a run samples, the raw pieces from which any such score can be built
offline: the per-latent-frame flow-matching loss

    L(x, c, t, ε)[f] = mean over channels, height, width of frame f of  (v(z_t, t, c) − (ε − x))²,
    z_t = (1 − t)·x + t·ε

for ``t`` in ``TIMES``, ``len(NOISE_SEEDS)`` fixed ε, and the captions c ∈ {prompt, contrast caption (direction words
swapped, when the prompt has one), "" (the unconditional caption CFG uses)}. The denoising loss bounds the clip's
likelihood under the model (Song et al. 2021, "Maximum Likelihood Training of Score-Based Diffusion Models", §4;
used as a classifier by Li et al. 2023, §3), so ``L(x, prompt)`` reads p(x | prompt) and ``L(x, "")`` reads p(x).
The clip the run writes is unchanged: run it under ``lingen eval`` and the judge's verdicts are those of a plain
run, clip for clip, which lets the analysis (``selfscore_select.py``) score any selector over two seed sets whose
verdicts are known.

    SELFSCORE_LOG=scores.jsonl python recipes/lingen-tiny/probe_selfscore.py eval \\
        -m recipes/lingen-tiny/state-4k --length 4s --limit 80 --seed-base 3000003 --json F

Each line of the log: {"seed", "prompt", "frames": T', "losses": {caption: [[[per-frame loss] per ε] per t]}}.
Only the process running it is patched (``LinGenPipeline.generate`` and ``LinGenPipeline.denoise``).
"""
import functools
import json
import os
import sys

import torch

from lingen_model.generation import pipeline as pipeline_mod

#: Noise levels of the losses (rectified-flow times; 1 = pure noise).
TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Seeds of the fixed noises ε (the same for every clip and caption).
NOISE_SEEDS = (12345, 54321)
SELFSCORE_LOG = os.environ.get("SELFSCORE_LOG")


@torch.no_grad()
def frame_losses(denoiser, x, captions, times=TIMES, noise_seeds=NOISE_SEEDS) -> dict:
    """Per-latent-frame flow-matching losses of latents ``x`` (1×C×T'×H×W) under each caption.

    ``captions`` maps a name to ``(context 1×L×D, mask 1×L bool)``; ``denoiser(z, t, ctx, mask)`` takes z of
    B×C×T'×H×W and t of shape [B]. Returns ``{name: list over times of list over noises of T' floats}``: the mean
    over channels, height and width of (v − (ε − x))² in latent frame f. All captions of one time run as one batch.
    Raises what the denoiser raises for mismatched shapes."""
    if x.dim() != 5 or x.shape[0] != 1:
        raise ValueError(f"x must be 1×C×T×H×W, got {tuple(x.shape)}")
    eps = [torch.randn(x.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float32).to(x)
           for s in noise_seeds]
    names = list(captions)
    width = max(captions[n][0].shape[1] for n in names)
    ctx = torch.zeros(len(names), width, captions[names[0]][0].shape[2], dtype=captions[names[0]][0].dtype)
    msk = torch.zeros(len(names), width, dtype=torch.bool)
    for i, n in enumerate(names):  # pad every caption to one length; the mask hides the padding
        c, m = captions[n]
        ctx[i, :c.shape[1]], msk[i, :m.shape[1]] = c[0], m[0]
    ctx, msk = ctx.to(x.device), msk.to(x.device)
    out = {n: [] for n in names}
    for t in times:
        per_noise = {n: [] for n in names}
        for e in eps:
            z = ((1 - t) * x + t * e).expand(len(names), *x.shape[1:])
            v = denoiser(z, torch.full((len(names),), float(t), dtype=x.dtype, device=x.device), ctx, msk)
            err = (v.to(x.dtype) - (e - x)).pow(2).mean(dim=(1, 3, 4))  # B×T', in x's dtype
            for i, n in enumerate(names):
                per_noise[n].append([float(a) for a in err[i]])
        for n in names:
            out[n].append(per_noise[n])
    return out


def install(log_path: str | None = SELFSCORE_LOG) -> None:
    """Patch ``LinGenPipeline`` so that every single-clip ``denoise`` appends :func:`frame_losses` of its result
    to ``log_path`` (JSON lines). The sampled latents are returned unchanged. Raises ValueError without a path."""
    if not log_path:
        raise ValueError("set SELFSCORE_LOG to the JSON-lines file to append to")
    cls = pipeline_mod.LinGenPipeline
    generate, denoise = cls.generate, cls.denoise

    @functools.wraps(generate)
    def scored_generate(self, request, progress=None):
        req = request if isinstance(request, pipeline_mod.ResolvedRequest) else self.resolve(request)
        self._score_req = req
        try:
            return generate(self, req, progress)
        finally:
            del self._score_req

    @functools.wraps(denoise)
    def scored_denoise(self, noise, context, mask, uncond_context=None, uncond_mask=None, **kw):
        z0 = denoise(self, noise, context, mask, uncond_context, uncond_mask, **kw)
        if noise.shape[0] != 1:
            return z0
        captions = {"prompt": (context, mask)}
        if kw.get("contrast_context") is not None:
            captions["contrast"] = (kw["contrast_context"], kw["contrast_mask"])
        if uncond_context is not None:
            captions["empty"] = (uncond_context, uncond_mask)
        losses = frame_losses(self.denoiser, z0.float(), captions)
        req = getattr(self, "_score_req", None)
        row = {"seed": getattr(req, "seed", None), "prompt": getattr(req, "prompt", None),
               "frames": int(z0.shape[2]), "losses": losses}
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return z0

    cls.generate, cls.denoise = scored_generate, scored_denoise


if __name__ == "__main__":
    install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
