"""recipes/lingen-tiny/tally_by_scene.py (session 37, issue 14): pass counts by the prompt's background, colour,
shape and motion over several runs, and the spread of passes per prompt against the binomial expectation."""
import json

import pytest

from support.recipes import load_recipe


def _run(path, passes):
    prompts = ["a green circle moving left on a gray background", "a red square moving up on a black background"]
    clips = [{"prompt": p, "passed": {"motion": ok, "unity": ok, "shape": True}, "unity": 1.0 if ok else 0.5}
             for p, ok in zip(prompts, passes)]
    path.write_text(json.dumps({"clips": clips}))
    return path


def test_groups_and_spread(tmp_path):
    t = load_recipe("tally_by_scene")
    runs = t.load_runs([_run(tmp_path / "a.json", [False, True]), _run(tmp_path / "b.json", [False, False])])
    groups = t.by_group(runs, "motion")
    assert groups["background"]["gray"] == (0, 2, 0.5)
    assert groups["colour"]["red"] == (1, 2, 0.75)
    assert groups["motion"]["left"][:2] == (0, 2) and groups["shape"]["square"][:2] == (1, 2)
    counts, expected = t.spread(runs, "motion")
    assert counts == [1, 1, 0]                       # the green circle never passes, the red square once
    assert expected == pytest.approx([2 * 0.75 ** 2, 2 * 2 * 0.25 * 0.75, 2 * 0.25 ** 2])  # p = 1/4


def test_bad_input_is_one_line(tmp_path):
    t = load_recipe("tally_by_scene")
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(SystemExit, match="not a `lingen eval --json` file"):
        t.load_runs([bad])
    a = _run(tmp_path / "a.json", [True, True])
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"clips": [{"prompt": "a blue circle", "passed": {}, "unity": 1.0}]}))
    with pytest.raises(SystemExit, match="same prompts"):
        t.load_runs([a, other])
