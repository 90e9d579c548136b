"""Prototype, not in the library (session 34, issue 14): sample with the world's mirror symmetry (frame averaging).

The shapes world is symmetric under a left–right mirror: mirror a clip's frames and swap "left" and "right" in its
caption, and the result is as likely a clip of the world (circles and squares are symmetric, the world's triangle has
its apex up, textures are random). lingen-tiny is not: on 48 fresh circle prompts at 4 s (seeds 6,000,003 + i;
docs/eval/README.md, "Session 34") circles moving right keep their outline in 3 of 12 and circles moving left in 10
of 12, for 4k and for 4m alike, although the training data hold both equally. The scan orders and the two scan
directions have their own weights, so nothing in the network ties the two.

Here every velocity the sampler asks for is made mirror-equivariant by averaging over the group {identity, mirror}
(frame averaging, Puny et al. 2022, "Frame Averaging for Invariant and Equivariant Network Design", §2):

    v̄(z, p) = ½ · [ v(z, p) + M v(M z, mirror(p)) ]

where ``M`` flips the latent's width axis and ``mirror(p)`` swaps the horizontal direction words of the prompt (and
of its contrast caption; "up"/"down" prompts are their own mirror). The sampler runs on the batch
``[z, M z]`` with the captions ``[p, mirror(p)]``, one call per step as before, and each pair of rows is replaced by
``[v̄, M v̄]``, so the second row stays the mirror of the first at every step, cached steps included. Cost: twice the
batch of every denoiser call. The VAE decodes the first row only.

    python recipes/lingen-tiny/proto_mirror.py eval -m <export> --length 4s --limit 80 --seed-base 3000003 --json F
    MIRROR_MAX_T=0.84 python recipes/lingen-tiny/proto_mirror.py eval ...   # average only at t ≤ 0.84

Measured (session 34, 4k, tuning): shape 67 → 71 of 80, unity mean 0.86 → 0.92, persistence 68 → 64 (dark objects
fade); right-moving fresh circles 3 → 10 of 12 (docs/eval/README.md, "Session 34").

Only the process running it is patched (``LinGenPipeline.generate`` and ``LinGenPipeline.denoise``); the library,
the world and the judge are unchanged.
"""
import functools
import os
import re
import sys

import torch

from lingen_model.generation import contrast
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.flow import _pad_tokens

#: Average only at noise levels t ≤ this (1.0: at every step). Above it the first row's own velocity is taken and
#: mirrored onto the second, so the layout is the plain model's and the rows stay mirror images.
MIRROR_MAX_T = float(os.environ.get("MIRROR_MAX_T", "1.0"))

#: The horizontal pairs of direction guidance's swap table (left/right and their -ward forms); up/down are kept.
HORIZONTAL_PAIRS = tuple(p for p in contrast.DIRECTION_PAIRS if p[0].startswith("left"))
_WORD = re.compile(r"\b(" + "|".join(sorted({w for p in HORIZONTAL_PAIRS for w in p}, key=len, reverse=True)) + r")\b",
                   re.IGNORECASE)


#: A mirror reverses an orbit's sense of rotation (the world's captions say "clockwise", "counterclockwise" or
#: "anticlockwise" for half of its orbits); "clockwise" inside "counterclockwise" is not a whole word.
_ROTATION = re.compile(r"\b(counterclockwise|anticlockwise|clockwise)\b", re.IGNORECASE)


def _swap_rotation(match: re.Match) -> str:
    word = match.group(0)
    other = "counterclockwise" if word.lower() == "clockwise" else "clockwise"
    return other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other


def mirror_prompt(prompt: str) -> str:
    """The caption of the mirrored clip: every horizontal direction word and sense of rotation swapped, whole
    words, case kept.

    ``"a red circle moving from left to right"`` → ``"a red circle moving from right to left"``, ``"orbiting
    clockwise"`` → ``"orbiting counterclockwise"`` (and "anticlockwise" → "clockwise"); a prompt without one (up,
    down, still) is returned unchanged. The left/right swap is direction guidance's (``contrast._swap``), restricted
    to the horizontal words. Raises TypeError when ``prompt`` is not a string."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    return _ROTATION.sub(_swap_rotation, _WORD.sub(contrast._swap, prompt))


def _pair_tokens(a: torch.Tensor, ma: torch.Tensor, b: torch.Tensor, mb: torch.Tensor):
    """Rows of two token batches (B×L×D, B×L bool) stacked, the shorter right-padded (the sampler's ``_pad_tokens``)."""
    n = max(a.shape[1], b.shape[1])
    (a, ma), (b, mb) = _pad_tokens(a, ma, n), _pad_tokens(b, mb, n)
    return torch.cat([a, b]), torch.cat([ma, mb])


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows [a0, b0, a1, b1, …] of two equal batches (the pair layout the averaging reads)."""
    return torch.stack([a, b], dim=1).flatten(0, 1)


def pair_average(v: torch.Tensor, average: bool = True) -> torch.Tensor:
    """Velocities of 2K rows, pairs (2i, 2i+1) = (z, M z): each pair becomes [v̄, M v̄], v̄ = ½(v_2i + M v_2i+1)
    (``average`` False: v̄ = v_2i, the first row's own velocity).

    ``M`` flips the last axis (latent width). Raises ValueError for an odd batch."""
    if v.shape[0] % 2:
        raise ValueError(f"mirror averaging needs pairs of rows, got a batch of {v.shape[0]}")
    pairs = v.unflatten(0, (-1, 2))
    mean = 0.5 * (pairs[:, 0] + pairs[:, 1].flip(-1)) if average else pairs[:, 0]
    return _interleave(mean, mean.flip(-1))


class _MirrorAveraged:
    """Wraps a denoiser so that its output rows are pair-averaged; every other attribute is the denoiser's."""

    def __init__(self, denoiser):
        self._denoiser = denoiser

    def __call__(self, z, t, *args, **kwargs):
        return pair_average(self._denoiser(z, t, *args, **kwargs), average=float(t.flatten()[0]) <= MIRROR_MAX_T)

    def __getattr__(self, name):
        return getattr(self._denoiser, name)


def install() -> None:
    """Patch ``LinGenPipeline`` in this process so that every clip is sampled with mirror averaging.

    The patched ``denoise`` raises ValueError for a batch of more than one clip (``generate`` makes one)."""
    cls = pipeline_mod.LinGenPipeline
    generate, denoise = cls.generate, cls.denoise

    @functools.wraps(generate)
    def mirrored_generate(self, request, progress=None):
        req = request if isinstance(request, pipeline_mod.ResolvedRequest) else self.resolve(request)
        self._mirror_texts = (mirror_prompt(req.prompt),
                              mirror_prompt(req.contrast_prompt) if req.contrast_prompt else None)
        try:
            return generate(self, req, progress)
        finally:
            del self._mirror_texts

    @functools.wraps(denoise)
    def mirrored_denoise(self, noise, context, mask, uncond_context=None, uncond_mask=None, **kw):
        if noise.shape[0] != 1:  # generate() samples one clip at a time
            raise ValueError(f"mirror averaging samples one clip at a time, got a batch of {noise.shape[0]}")
        mp, mc = self._mirror_texts
        mctx, mmask = self.encode_prompt([mp] + ([mc] if mc else []))
        # rows [clip, mirrored clip]: the pair layout pair_average reads (the unconditional tokens, one row, serve both)
        context, mask = _pair_tokens(context, mask, mctx[:1], mmask[:1])
        if kw.get("contrast_context") is not None:
            kw["contrast_context"], kw["contrast_mask"] = _pair_tokens(kw["contrast_context"], kw["contrast_mask"],
                                                                       mctx[1:2], mmask[1:2])
        noise = torch.cat([noise, noise.flip(-1)])
        inner = self.denoiser
        self.denoiser = _MirrorAveraged(inner)
        try:
            z = denoise(self, noise, context, mask, uncond_context, uncond_mask, **kw)
        finally:
            self.denoiser = inner
        return z[:1]

    cls.generate, cls.denoise = mirrored_generate, mirrored_denoise


if __name__ == "__main__":
    install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
