"""recipes/lingen-tiny/tally_by_motion.py (session 32, issue 14): eval verdicts tallied by the prompt's motion and
shape. The counts must follow the prompts' words (any phrasing the world's parser reads), skip two-object prompts,
and a file that is not an eval JSON must end in a one-line error, not a traceback."""
import json

import pytest

from support.recipes import load_recipe


def _clip(prompt, shape_ok, unity=1.0, jumps=0.0):
    return {"prompt": prompt, "passed": {"shape": shape_ok}, "unity": unity, "jumps": jumps}


def test_counts_follow_the_prompt_words(tmp_path, capsys):
    clips = [
        _clip("a red circle moving right on a black background", False, unity=0.5, jumps=15.0),
        _clip("a blue circle drifting to the right on a gray background", True, unity=0.7, jumps=5.0),
        _clip("a green circle falling on a black background", True),
        _clip("a white square standing still on a gray background", True),
        _clip("a red circle moving left and a blue square moving left on a black background", False),
    ]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"clips": clips, "summary": {}}))
    load_recipe("tally_by_motion").main([str(path)])
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["circle", "right", "1/2", "down", "1/1"]
    assert out[2].split() == ["square", "still", "1/1"]
    assert out[3].split() == ["triangle"]
    assert "right 0.60/10.0" in out[4] and "down 1.00/0.0" in out[4] and "left" not in out[4]


@pytest.mark.parametrize("text", ["not json", json.dumps({"summary": {}})])
def test_a_file_that_is_not_an_eval_json_is_a_one_line_error(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        load_recipe("tally_by_motion").main([str(path)])
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
