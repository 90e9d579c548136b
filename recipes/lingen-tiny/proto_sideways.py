"""Prototype, not in the library (session 34, issue 14): train one-speed movers with most sideways movers drawn as circles.

After three circle-heavy stages (``proto_circles.py``: half of all objects circles), the 4 s tuning circles that still
fail are the sideways movers: over 27 runs, circles moving down pass shape in 88 %, up 44 %, left 39 %, right 10 %
(docs/eval/README.md, "Session 32"), and the failing "right" circles are drawn with corners, not smeared along their
path ("Session 33"). Here the training world keeps the world's circle share among vertical and still movers (a third)
and moves the extra circles of ``proto_circles.py`` onto the sideways movers: a left or right mover drawn as a square
or triangle is redrawn as a circle with probability ``SIDEWAYS_CIRCLE_PROB`` (0.625), so three quarters of the
sideways movers are circles and half of all objects are (as in ``proto_circles.py``: 0.4 × 0.75 + 0.6 × 1/3 = 0.5).
Everything else is ``proto_slow.py``'s (every linear mover at ``SLOW_SPEED``).

Only the training process is patched, and only while a scene's objects are laid out:
``lingen_model.shapes.world.layout_objects`` sees the new shape, so the start stays inside the frame for that shape's
extent. One extra generator draw is taken for a sideways non-circle, after the colour, motion, shape, background and
texture draws, so those are the unpatched world's; the size and start of such a clip come from later draws. The world,
the captions (made from the drawn scene) and the judge are unchanged.

    python recipes/lingen-tiny/proto_sideways.py train recipes/lingen-tiny/denoiser-4m.yaml

Raises ValueError (at start) as ``proto_slow.install`` does.
"""
import functools
import sys
from pathlib import Path

from lingen_model.shapes import world

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proto_slow  # noqa: E402  (the sibling prototype, imported as proto_circles.py imports it)

SIDEWAYS = ("left", "right")
SIDEWAYS_CIRCLE_PROB = 0.625  # 1/3 + 2/3 × 0.625 = 0.75 of the sideways movers are circles


def install() -> None:
    """Patch this process: linear movers at ``proto_slow.SLOW_SPEED``, three quarters of the sideways movers circles.

    Raises ValueError when ``SLOW_SPEED`` lies outside the world's ``SPEED_RANGE`` (``proto_slow.install``)."""
    proto_slow.install()
    original = world.layout_objects

    @functools.wraps(original)
    def layout_objects(rng, attrs, entry_prob=0.0):
        attrs = [("circle" if motion in SIDEWAYS and shape != "circle" and rng.random() < SIDEWAYS_CIRCLE_PROB
                  else shape, color, motion) for shape, color, motion in attrs]
        return original(rng, attrs, entry_prob)

    world.layout_objects = layout_objects


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
