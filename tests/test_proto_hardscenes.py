"""recipes/lingen-tiny/proto_hardscenes.py (session 37 prototype, issue 14): training clips drawn more often on the
gray background and with green or cyan objects. The patch must raise those shares to about 2/3 and 1/2, change
nothing of a scene but its background and colours (on top of proto_circles' shape and speed), caption each clip with
what it shows, stay deterministic per clip seed, and refuse shares below the world's own."""
import dataclasses

import numpy as np
import pytest

from lingen_model.shapes import clips, world
from lingen_model.shapes.clips import make_clip
from lingen_model.shapes.language import parse_prompt
from support.recipes import load_recipe


@pytest.fixture
def hard(monkeypatch):
    mod = load_recipe("proto_hardscenes")
    monkeypatch.setattr(world, "SPEED_RANGE", world.SPEED_RANGE)  # restored after the test
    monkeypatch.setattr(clips, "sample_scene", clips.sample_scene)
    return mod


def _clips(seeds):
    return [make_clip(s, 5, 32, 32, 8.0, max_objects=1, entry_prob=1.0) for s in seeds]


def test_gray_and_green_or_cyan_are_drawn_more_and_nothing_else_changes(hard):
    seeds = range(3000, 3400)
    circles = load_recipe("proto_circles")
    circles.install()
    before = _clips(seeds)  # proto_circles' world: the base the patch adds to
    hard.install()
    after = _clips(seeds)
    gray = lambda cs: sum(s.background == "gray" for _, _, s in cs) / len(cs)  # noqa: E731
    green_cyan = lambda cs: sum(s.objects[0].color in ("green", "cyan") for _, _, s in cs) / len(cs)  # noqa: E731
    assert 0.25 < gray(before) < 0.42 and 0.59 < gray(after) < 0.74  # 400 draws: about ±3 standard errors
    assert 0.18 < green_cyan(before) < 0.32 and 0.42 < green_cyan(after) < 0.58
    for (_, _, a), (frames, cap, b) in zip(before, after):
        if a.background == "gray":
            assert b.background == "gray"
        da, db = dataclasses.asdict(a.objects[0]), dataclasses.asdict(b.objects[0])
        if da["color"] in ("green", "cyan"):
            assert db["color"] == da["color"]
        da.pop("color"), db.pop("color")
        assert da == db and a.texture_seed == b.texture_seed  # shape, motion, size, start, speed: the same draws
        target = parse_prompt(cap)  # the caption names what is drawn (the background only when it names one)
        assert target.objects[0].color == b.objects[0].color and target.background in (None, b.background)
        median = np.median(frames[0].reshape(-1, 3), axis=0)  # the render shows the new background
        assert np.abs(median - np.array(world.BACKGROUNDS[b.background])).max() <= 10
    assert all((x[0] == y[0]).all() and x[1] == y[1] for x, y in zip(after[:20], _clips(range(3000, 3020))))


def test_shares_below_the_worlds_are_refused(hard):
    with pytest.raises(ValueError, match="GRAY_PROB"):
        hard.install(gray_prob=0.2)
