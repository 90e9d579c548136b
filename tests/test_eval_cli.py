"""`lingen eval`: scores a model's clips with the judge; ground-truth renders score high."""
import json

from ckpt_utils import make_tiny_checkpoint
from typer.testing import CliRunner

from lingen_cli.app import app

runner = CliRunner()


def test_eval_model_writes_scores(tmp_path):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    pf = tmp_path / "p.txt"
    pf.write_text("a red circle moving left\n# comment\na blue square moving up\n")
    out = tmp_path / "scores.json"
    r = runner.invoke(app, ["eval", "--model", str(ckpt), "--prompts", str(pf), "--length", "9f", "--steps", "1",
                            "--json", str(out), "--save-dir", str(tmp_path / "clips")])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["summary"]["n"] == 2 and len(data["clips"]) == 2
    assert set(data["summary"]["pass_pct"]) == {"color", "shape", "motion", "persistence", "flicker"}
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 2


def test_eval_ground_truth_passes_the_judge(tmp_path):
    out = tmp_path / "gt.json"
    r = runner.invoke(app, ["eval", "--ground-truth", "--limit", "10", "--length", "4s", "--json", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["n"] == 10
    for criterion in ("color", "shape", "motion", "persistence"):
        assert summary["pass_pct"][criterion] >= 90, summary


def test_eval_bad_prompts_file(tmp_path):
    r = runner.invoke(app, ["eval", "--prompts", str(tmp_path / "missing.txt"), "--ground-truth"])
    assert r.exit_code == 2 and "cannot read prompts file" in r.output
