"""recipes/lingen-tiny/probe_elongation.py (session 33, issue 14): the stretch and axis of the named object's blob.
Checked against shapes whose covariance is known: the world's own circles are round, an axis-aligned ellipse with
semi-axes a and b has variance ratio (a / b)^2 along its axes, also when it straddles the frame's edge (the world
wraps), and other colours are ignored."""
import json

import numpy as np
import pytest

from lingen_model.io.video import write_mp4
from lingen_model.shapes.clips import scene_from_prompt
from lingen_model.shapes.render import render
from support.recipes import load_recipe


def _ellipse(a, b, cx=64, cy=64, color=(255, 0, 0), size=128):
    frames = np.zeros((2, size, size, 3), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    dx = (xx - cx + size / 2) % size - size / 2
    dy = (yy - cy + size / 2) % size - size / 2
    frames[:, (dx / a) ** 2 + (dy / b) ** 2 < 1] = color
    return frames


def test_world_circles_are_round():
    probe = load_recipe("probe_elongation")
    for prompt in ("a red circle moving right on a black background", "a cyan circle moving up on a gray background"):
        scene = scene_from_prompt(prompt, np.random.default_rng(1))
        geo = probe.blob_geometry(render(scene, 9, 128, 128, 8), scene.objects[0].color)
        assert geo.shape == (9, 3)
        assert np.all(geo[:, 0] < 1.1) and np.all(np.abs(geo[:, 1]) < 0.2)


@pytest.mark.parametrize("a,b,cx", [(24, 12, 64), (12, 24, 64), (24, 12, 2)])
def test_ellipse_stretch_and_axis(a, b, cx):
    geo = load_recipe("probe_elongation").blob_geometry(_ellipse(a, b, cx=cx), "red")
    assert geo.shape == (2, 3)
    assert geo[0, 0] == pytest.approx(max(a, b) / min(a, b), rel=0.05)
    assert geo[0, 1] == pytest.approx(2 * np.log2(a / b), abs=0.1)


def test_other_colours_and_small_specks_are_ignored():
    frames = _ellipse(20, 10, color=(0, 0, 255))
    frames[:, 0, 0] = (255, 0, 0)  # one red pixel: below the 4-pixel floor at any working size
    assert load_recipe("probe_elongation").blob_geometry(frames, "red").shape == (0, 3)


def test_main_reports_by_motion_and_verdict(tmp_path, capsys):
    clips = [{"prompt": "a red circle moving right on a black background", "passed": {"shape": False}},
             {"prompt": "a red square moving right on a black background", "passed": {"shape": True}}]
    (tmp_path / "eval.json").write_text(json.dumps({"clips": clips}))
    write_mp4(np.repeat(_ellipse(24, 12), 4, axis=0), tmp_path / "000-a-red-circle.mp4", 8)
    probe = load_recipe("probe_elongation")
    probe.main([str(tmp_path / "eval.json"), str(tmp_path)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == 1 and rows[0][:3] == ["right", "fail", "1"]
    assert float(rows[0][3]) == pytest.approx(2.0, rel=0.1) and float(rows[0][4]) == pytest.approx(2.0, abs=0.2)
    with pytest.raises(SystemExit, match="no clip 000"):
        probe.main([str(tmp_path / "eval.json"), str(tmp_path / "empty")])
