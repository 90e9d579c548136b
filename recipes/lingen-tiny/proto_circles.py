"""Prototype, not in the library (session 31, issue 14): train one-speed movers with circles drawn twice as often.

The 4 s shape misses are circles (docs/eval/README.md, "Session 22" and "Session 31"): the denoiser draws a circle
as a rounded square, while squares and triangles pass in 50 of 53 tuning clips. The outline is decided in the noisy
half of the schedule, not by the VAE. Here the training world draws a circle for half of its objects instead of a
third, so the stage sees circle outlines 1.5× as often; everything else is ``proto_slow.py``'s (every linear mover at
``SLOW_SPEED``).

Only the training process is patched, and only while a scene is drawn: ``lingen_model.shapes.clips.sample_scene``
runs with ``world.SHAPES`` as ``("circle", "square", "triangle", "circle")`` (one generator draw per object as before,
read over four entries, so an object's shape may change to any of the three and its start stays inside the frame for
that shape's extent; every other draw of a clip seed is unchanged) and puts the world's ``SHAPES`` back afterwards,
so the judge and the captions see the world's three shapes. The world, the captions and the judge are unchanged.

    python recipes/lingen-tiny/proto_circles.py train recipes/lingen-tiny/denoiser-4j.yaml

Raises ValueError (at start) as ``proto_slow.install`` does.
"""
import functools
import sys
from pathlib import Path

from lingen_model.shapes import clips, world

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proto_slow  # noqa: E402  (the sibling prototype, imported as probe_shape_contrast.py imports its own)

CIRCLE_HEAVY = ("circle", "square", "triangle", "circle")


def install() -> None:
    """Patch this process: linear movers at ``proto_slow.SLOW_SPEED``, and half of the objects drawn as circles.

    Raises ValueError when ``SLOW_SPEED`` lies outside the world's ``SPEED_RANGE`` (``proto_slow.install``)."""
    proto_slow.install()
    original = clips.sample_scene

    @functools.wraps(original)
    def sample_scene(*args, **kwargs):
        shapes = world.SHAPES
        world.SHAPES = CIRCLE_HEAVY
        try:
            return original(*args, **kwargs)
        finally:
            world.SHAPES = shapes

    clips.sample_scene = sample_scene


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
