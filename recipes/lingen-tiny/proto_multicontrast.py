"""Prototype, not in the library (session 37, issue 14): direction guidance away from every other direction.

The library's direction guidance pushes a clip away from its prompt with the direction word swapped for its opposite
(``contrast.opposite_direction``: "left" → "right"), because in session 13 the model read the axis of a motion from
its caption but not its sign. Of 4k's 15 motion misses on the 80 tuning 4 s prompts (seeds 3,000,003 + i) only four
move the opposite way; the others move along the other axis (four), stall (four) or circle. Here the contrast velocity
is a mixture over captions that name each other direction::

    v_x = Σ_k a_k · v(z_t, t, caption_k),   caption_0 = the opposite, caption_1,2 = the two perpendicular directions,
    [caption_3 = the object "standing still", with MULTI_STILL=1]

so that the sampler's term w·(v_c − v_x) = w·Σ_k a_k (v_c − v_k) is composable diffusion's push away from each of
them (Liu et al. 2022, "Compositional Visual Generation with Composable Diffusion Models", §4.2). Weights
``MULTI_WEIGHTS`` (default ``0.5,0.25,0.25``; with the still caption ``0.5,0.1667,0.1667,0.1667``): at
``--direction-guidance 20`` the opposite keeps the library's weight 10 and each other caption gets 5 (or 3.3).

Only where the sampler runs the contrast apart from the guided batch (step caching on, the 4 s default) is the
mixture used; elsewhere the patch changes nothing. Prompts whose direction word is not one of left / right / up /
down keep the library's single contrast. Cost: the contrast runs once per full call for each caption (3 or 4 instead
of 1).

    python recipes/lingen-tiny/proto_multicontrast.py eval -m recipes/lingen-tiny/state-4k --length 4s --limit 80 \\
        --seed-base 3000003 --direction-guidance 20 --json F

Only the process running it is patched (``LinGenPipeline.generate`` and the ``sample`` that ``pipeline`` calls).
"""
import functools
import os
import re
import sys

import torch

from lingen_model.generation import pipeline as pipeline_mod

DIRECTIONS = ("left", "right", "up", "down")
_WORD = re.compile(r"\b(left|right|up|down)\b", re.IGNORECASE)
_MOVER = re.compile(r"\b(moving|drifting|sliding|floating|going|heading|travelling|traveling)\s+(to\s+the\s+)?"
                    r"(left|right|up|down)\w*", re.IGNORECASE)
STILL = os.environ.get("MULTI_STILL", "0") == "1"
MULTI_WEIGHTS = tuple(float(w) for w in os.environ.get(
    "MULTI_WEIGHTS", "0.5,0.1667,0.1667,0.1667" if STILL else "0.5,0.25,0.25").split(","))


def other_directions(prompt: str, still: bool = STILL) -> list[str] | None:
    """Captions for the mixture, in weight order: the opposite direction, the two perpendicular ones (in the order
    left, right, up, down), then with ``still`` the prompt's mover phrase replaced by "standing still". None when
    the prompt names no single one of left / right / up / down (then the library's contrast stays)."""
    words = {m.group(1).lower() for m in _WORD.finditer(prompt)}
    if len(words) != 1:
        return None
    (word,) = words
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[word]
    order = [opposite] + [d for d in DIRECTIONS if d not in (word, opposite)]
    out = [_WORD.sub(lambda m, d=d: d if m.group(1).islower() else d.capitalize(), prompt) for d in order]
    if still:
        replaced, n = _MOVER.subn("standing still", prompt)
        if n:
            out.append(replaced)
    return out


def install(weights=MULTI_WEIGHTS) -> None:
    """Patch the pipeline as the module docstring says. Raises ValueError for weights that do not sum to 1."""
    if abs(sum(weights) - 1.0) > 1e-3:
        raise ValueError(f"MULTI_WEIGHTS must sum to 1, got {weights}")
    cls = pipeline_mod.LinGenPipeline
    generate, sample = cls.generate, pipeline_mod.sample
    state = {}

    @functools.wraps(generate)
    def multi_generate(self, request, progress=None):
        req = request if isinstance(request, pipeline_mod.ResolvedRequest) else self.resolve(request)
        captions = other_directions(req.prompt) if req.contrast_prompt else None
        if captions and len(captions) != len(weights):
            captions = None
        # the opposite (captions[0]) is the library's contrast caption, already encoded: only the others are
        state["extra"] = [self.encode_prompt([c]) for c in captions[1:]] if captions else None
        try:
            return generate(self, req, progress)
        finally:
            state.pop("extra", None)

    @functools.wraps(sample)
    def multi_sample(velocity_fn, noise, steps, **kw):
        extra, cc = state.get("extra"), kw.get("contrast_context")
        if not extra or cc is None:
            return sample(velocity_fn, noise, steps, **kw)

        def mixed(z, t, ctx, mask, **k):
            v = velocity_fn(z, t, ctx, mask, **k)
            if ctx.shape == cc.shape and torch.equal(ctx, cc.to(ctx)):  # the contrast call: v is the opposite's
                return weights[0] * v + sum(w * velocity_fn(z, t, c.to(ctx), m.to(mask.device), **k)
                                            for w, (c, m) in zip(weights[1:], extra))
            return v

        return sample(mixed, noise, steps, **kw)

    cls.generate, pipeline_mod.sample = multi_generate, multi_sample


if __name__ == "__main__":
    install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
