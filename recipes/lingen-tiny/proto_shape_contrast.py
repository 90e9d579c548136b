"""Prototype, not in the library (session 23, issue 14): direction guidance whose contrast caption also
swaps the shape word.

Direction guidance pushes each prediction along ``v(prompt) − v(contrast)``, with the contrast the prompt
with its direction words swapped (``contrast.opposite_direction``; composable diffusion's weights g + w
on the prompt and −w on the contrast). Here the contrast swaps the shape word as well (circle ↔ square,
triangle → ``TRIANGLE_TO``), so the same one extra batch also pushes away from the wrong shape: with
``v(prompt) − v(contrast) ≈ Δdirection + Δshape``, the 4 s circles, drawn as square-ish blobs (docs/eval
/README.md, "Session 22"), get a push away from "square". A prompt without a direction word gets a
shape-only contrast (one more batch per step than now); a prompt without either keeps none.

It replaces ``opposite_direction`` where the pipeline reads it and then runs the ``lingen`` CLI, e.g.::

    python recipes/lingen-tiny/proto_shape_contrast.py eval --length 4s --limit 80 --seed-base 3000003

``SHAPES_ONLY=1`` swaps only the shape word (the direction stays): the shape push alone.
"""
import os
import re
import sys

from lingen_model.generation import contrast, pipeline

SWAP = {"circle": "square", "square": "circle", "triangle": os.environ.get("TRIANGLE_TO", "circle")}
_SHAPE = re.compile(r"\b(circle|square|triangle)\b", re.IGNORECASE)


def shape_swapped(prompt: str) -> str | None:
    """The prompt with each of circle / square / triangle replaced by ``SWAP``'s shape (lower case)."""
    out, n = _SHAPE.subn(lambda m: SWAP[m.group(0).lower()], prompt)
    return out if n else None


def opposite_direction_and_shape(prompt: str) -> str | None:
    """The contrast caption: direction words swapped (unless SHAPES_ONLY), then the shape word."""
    base = prompt if os.environ.get("SHAPES_ONLY") else (contrast.opposite_direction(prompt) or prompt)
    both = shape_swapped(base)
    if both is None:
        return None if base == prompt else base
    return both


if __name__ == "__main__":
    pipeline.opposite_direction = opposite_direction_and_shape
    from lingen_cli.app import main

    sys.argv = ["lingen"] + sys.argv[1:]
    main()
