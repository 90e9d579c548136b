"""recipes/lingen-tiny/proto_slow.py (session 30 prototype, issue 14): training clips whose linear movers all move
at one speed. The patch must give every linear mover exactly ``SLOW_SPEED``, leave every other scene parameter of a
clip seed as the unpatched world draws it (same generator draws), and refuse a speed outside the world's range."""
import dataclasses

import pytest

from lingen_model.shapes import world
from lingen_model.shapes.clips import make_clip
from support.recipes import load_recipe


@pytest.fixture
def slow(monkeypatch):
    mod = load_recipe("proto_slow")
    monkeypatch.setattr(world, "SPEED_RANGE", world.SPEED_RANGE)  # restored after the test
    return mod


def _scenes(seeds):
    return [make_clip(s, 9, 32, 32, 8.0, max_objects=2, entry_prob=0.5)[2] for s in seeds]


def test_every_linear_mover_moves_at_the_one_speed_and_nothing_else_changes(slow, monkeypatch):
    seeds = range(1000, 1060)
    before = _scenes(seeds)
    monkeypatch.setattr(slow, "SLOW_SPEED", 0.13)
    slow.install()
    after = _scenes(seeds)
    movers = 0
    for a, b in zip(before, after):
        assert len(a.objects) == len(b.objects)
        for oa, ob in zip(a.objects, b.objects):
            if oa.motion in world.LINEAR_MOTIONS:
                movers += 1
                assert ob.speed == 0.13 and oa.speed != 0.13
            else:
                assert ob.speed == oa.speed
            da, db = dataclasses.asdict(oa), dataclasses.asdict(ob)
            da.pop("speed"), db.pop("speed")
            assert da == db  # shape, colour, motion, size, start, entry: the same draws
    assert movers > 20


@pytest.mark.parametrize("speed", [0.05, 0.3])
def test_a_speed_outside_the_world_is_refused(slow, monkeypatch, speed):
    monkeypatch.setattr(slow, "SLOW_SPEED", speed)
    with pytest.raises(ValueError, match="SPEED_RANGE"):
        slow.install()
    assert world.SPEED_RANGE == (0.1, 0.25)
