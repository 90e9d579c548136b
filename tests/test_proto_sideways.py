"""recipes/lingen-tiny/proto_sideways.py (session 34 prototype, issue 14): one-speed training clips with three
quarters of the sideways movers drawn as circles and the world's third elsewhere. The patch must move the circle share
only among left/right movers, keep the colour, motion, background and texture draws of every clip seed, caption each
clip with the shape it shows, and leave the world's ``layout_objects`` and ``SHAPES`` as they were for the judge."""
import pytest

from lingen_model.shapes import world
from lingen_model.shapes.clips import make_clip
from lingen_model.shapes.language import parse_prompt
from support.recipes import load_recipe


@pytest.fixture
def sideways(monkeypatch):
    mod = load_recipe("proto_sideways")
    monkeypatch.setattr(world, "SPEED_RANGE", world.SPEED_RANGE)  # restored after the test
    monkeypatch.setattr(world, "layout_objects", world.layout_objects)
    return mod


def _clips(seeds):
    return [make_clip(s, 5, 32, 32, 8.0, max_objects=1, entry_prob=1.0) for s in seeds]


def _circle_share(cs, side):
    objs = [o for _, _, s in cs for o in s.objects if (o.motion in ("left", "right")) == side]
    return sum(o.shape == "circle" for o in objs) / len(objs), len(objs)


def test_sideways_movers_are_mostly_circles_and_the_other_draws_are_kept(sideways):
    seeds = range(5000, 5600)
    before = _clips(seeds)
    sideways.install()
    after = _clips(seeds)
    assert world.SHAPES == ("circle", "square", "triangle")
    share_side, n_side = _circle_share(after, True)
    share_rest, n_rest = _circle_share(after, False)
    assert n_side > 150 and n_rest > 250
    assert 0.65 < share_side < 0.85  # 0.75 expected; ±3 standard errors at n ≈ 240
    assert 0.25 < share_rest < 0.42  # the world's third, unchanged
    for (_, _, a), (_, cap_b, b) in zip(before, after):
        assert (a.background, a.texture, a.texture_seed) == (b.background, b.texture, b.texture_seed)
        oa, ob = a.objects[0], b.objects[0]
        assert (oa.color, oa.motion) == (ob.color, ob.motion)
        if oa.motion not in ("left", "right"):
            assert ob.shape == oa.shape and (ob.x0, ob.y0, ob.size) == (oa.x0, oa.y0, oa.size)
        elif oa.shape == "circle":
            assert ob.shape == "circle"
        if ob.motion in world.LINEAR_MOTIONS:
            assert ob.speed == 0.1
        target = parse_prompt(cap_b).objects[0]
        assert (target.shape, target.color) == (ob.shape, ob.color)


def test_the_patch_keeps_starts_inside_the_frame_for_the_new_shape(sideways):
    """A redrawn object is laid out as a circle: its start leaves the circle's half extent (plus margin) free."""
    sideways.install()
    redrawn = 0
    for _, _, scene in _clips(range(7000, 7400)):
        o = scene.objects[0]
        hx, hy = (e * o.size + world._MARGIN for e in world._HALF_EXTENT[o.shape])
        assert hx <= o.x0 <= 1.0 - hx and hy <= o.y0 <= 1.0 - hy
        redrawn += o.shape == "circle" and o.motion in ("left", "right")
    assert redrawn > 70  # the loop saw sideways circles (about 0.3 of 400 clips)
