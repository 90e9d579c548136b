"""Prototype, not in the library (session 30, issue 14): train on movers of one speed.

Session 29 found that the 60 s tuning minutes' jumps are bursts of speed (docs/eval/README.md, "Session 29"): the
world gives each linear mover one constant speed drawn from ``SPEED_RANGE`` (0.1–0.25 frame extents a second), no
caption names it, so the model must pick one; on the staircase, at high noise, the frames around say little about
the one picked, and the speed wanders between the world's values (up to ~2× for a second). Telling the model the
speed (``proto_speed.py``, stages 4f and 4g) was not taken up in ~1,300 CPU steps.

Here the training data leave the model nothing to pick: every linear mover of the training clips moves at one speed,
``SLOW_SPEED`` (frame extents per second; default 0.1, the world's slowest). The world itself, the captions and the
judge are unchanged (the judge's jump limit is still the world's fastest, 0.25 a second, plus margin), so the model
keeps to a speed inside the world's range; a prompt still names no speed. Only the training process is patched:
``lingen_model.shapes.world.SPEED_RANGE`` becomes ``(SLOW_SPEED, SLOW_SPEED)`` (one draw from the generator per
mover as before, so every other scene parameter of a clip seed is unchanged).

Run as the ``lingen`` CLI with this process's patch, e.g.::

    python recipes/lingen-tiny/proto_slow.py train recipes/lingen-tiny/denoiser-4h.yaml

Raises ValueError (at start) when ``SLOW_SPEED`` is not inside the world's ``SPEED_RANGE``.
"""
import os
import sys

from lingen_model.shapes import world

SLOW_SPEED = float(os.environ.get("SLOW_SPEED", "0.1"))


def install() -> None:
    """Make every linear mover sampled in this process move at ``SLOW_SPEED`` frame extents per second.

    Raises ValueError when ``SLOW_SPEED`` lies outside the world's ``SPEED_RANGE``."""
    lo, hi = world.SPEED_RANGE
    if not lo <= SLOW_SPEED <= hi:
        raise ValueError(f"SLOW_SPEED must lie in the world's SPEED_RANGE {world.SPEED_RANGE}, got {SLOW_SPEED}")
    world.SPEED_RANGE = (SLOW_SPEED, SLOW_SPEED)


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
