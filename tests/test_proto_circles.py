"""recipes/lingen-tiny/proto_circles.py (session 31 prototype, issue 14): one-speed training clips with circles drawn
for half of the objects. The patch must raise the circle share from a third to a half, keep every scene parameter
but the shape and the speed (and the start, where the shape changes) as the unpatched world draws it (same generator
draws), caption each clip with the shape it shows, and leave the world's ``SHAPES`` as it was for the judge."""
import dataclasses

import pytest

from lingen_model.shapes import clips, world
from lingen_model.shapes.clips import make_clip
from lingen_model.shapes.language import parse_prompt
from support.recipes import load_recipe


@pytest.fixture
def circles(monkeypatch):
    mod = load_recipe("proto_circles")
    monkeypatch.setattr(world, "SPEED_RANGE", world.SPEED_RANGE)  # restored after the test
    monkeypatch.setattr(clips, "sample_scene", clips.sample_scene)
    return mod


def _clips(seeds):
    return [make_clip(s, 5, 32, 32, 8.0, max_objects=1, entry_prob=1.0) for s in seeds]


def test_half_the_objects_are_circles_and_nothing_else_but_the_speed_changes(circles):
    seeds = range(2000, 2400)
    before = _clips(seeds)
    circles.install()
    after = _clips(seeds)
    assert world.SHAPES == ("circle", "square", "triangle")
    share = lambda cs: sum(o.shape == "circle" for _, _, s in cs for o in s.objects) / len(cs)  # noqa: E731
    assert 0.25 < share(before) < 0.42 and 0.42 < share(after) < 0.58  # 400 draws: about ±3 standard errors
    for (_, cap_a, a), (_, cap_b, b) in zip(before, after):
        assert a.background == b.background and a.texture_seed == b.texture_seed
        for oa, ob in zip(a.objects, b.objects):
            da, db = dataclasses.asdict(oa), dataclasses.asdict(ob)
            if ob.shape != oa.shape:  # the same draw read over four shapes: its start is kept inside the frame for
                for k in ("x0", "y0"):  # the new shape's extent (same draws, other bounds)
                    da.pop(k), db.pop(k)
            if oa.motion in world.LINEAR_MOTIONS:
                assert ob.speed == 0.1
            for k in ("shape", "speed"):
                da.pop(k), db.pop(k)
            assert da == db  # colour, motion, size (and start where the shape is kept): the same draws
        target = parse_prompt(cap_b).objects[0]  # the caption names the shape drawn ("box" reads as square)
        assert (target.shape, target.color) == (b.objects[0].shape, b.objects[0].color)
