"""`lingen eval`: scores a model's clips with the judge; ground-truth renders score high."""
import json

from ckpt_utils import make_tiny_checkpoint
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.shapes.judge import wilson_interval

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
    crit = {"color", "shape", "motion", "persistence", "flicker", "unity", "motion_consistency", "jumps"}
    assert set(data["summary"]["pass_pct"]) == crit == set(data["summary"]["pass_ci95"]) == set(data["summary"]["passed"])
    for c in crit:
        k = sum(bool(row["passed"][c]) for row in data["clips"])
        assert data["summary"]["passed"][c] == k
        assert data["summary"]["pass_ci95"][c] == [round(100 * v, 1) for v in wilson_interval(k, 2)]
    assert "95 % interval" in r.output and "passed / n" in r.output
    mp4s = sorted((tmp_path / "clips").glob("*.mp4"))
    assert len(mp4s) == 2 and all(m.with_suffix(".png").is_file() for m in mp4s)  # a contact sheet beside each


def test_eval_frames_cache_and_shards_reproduce_the_full_run(tmp_path):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    pf = tmp_path / "p.txt"
    pf.write_text("a red circle moving left\na blue square moving up\n")
    base = ["eval", "--model", str(ckpt), "--prompts", str(pf), "--length", "9f", "--steps", "1"]
    cache = tmp_path / "cache"
    full = runner.invoke(app, base + ["--json", str(tmp_path / "full.json")])
    assert full.exit_code == 0, full.output
    for k in (0, 1):
        r = runner.invoke(app, base + ["--shard", f"{k}/2", "--frames-cache", str(cache), "--json", str(tmp_path / f"s{k}.json")])
        assert r.exit_code == 0, r.output
    assert len(list(cache.glob("*.npy"))) == 2
    shards = [json.loads((tmp_path / f"s{k}.json").read_text())["clips"] for k in (0, 1)]
    assert [c["seed"] for c in shards[0]] == [1_000_003] and [c["seed"] for c in shards[1]] == [1_000_004]
    cached = runner.invoke(app, base + ["--frames-cache", str(cache), "--json", str(tmp_path / "cached.json")])
    assert cached.exit_code == 0, cached.output
    a = json.loads((tmp_path / "full.json").read_text())
    b = json.loads((tmp_path / "cached.json").read_text())
    timing = ("denoise_s", "full_calls")  # only a clip generated in this run has a denoise time
    strip = lambda clips: [{k: v for k, v in c.items() if k not in timing} for c in clips]  # noqa: E731
    assert strip(a["clips"]) == strip(b["clips"])  # generation is deterministic: cached clips score as fresh ones
    # --shift reaches the sampler's settings: recorded in the summary, and its clips are new cache entries
    shifted = runner.invoke(app, base + ["--shift", "3", "--frames-cache", str(cache), "--json", str(tmp_path / "shift.json")])
    assert shifted.exit_code == 0, shifted.output
    assert a["summary"]["shift"] is None and json.loads((tmp_path / "shift.json").read_text())["summary"]["shift"] == 3.0
    assert len(list(cache.glob("*.npy"))) == 4
    bad = runner.invoke(app, base + ["--shift", "0"])
    assert bad.exit_code == 2 and "shift" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, base + ["--shard", "2/2"])
    assert bad.exit_code == 2 and "--shard" in bad.output


def test_eval_ground_truth_passes_the_judge(tmp_path):
    out = tmp_path / "gt.json"
    r = runner.invoke(app, ["eval", "--ground-truth", "--limit", "10", "--length", "4s", "--json", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["n"] == 10
    for criterion in ("color", "shape", "motion", "persistence"):
        assert summary["pass_pct"][criterion] >= 90, summary
    for criterion in ("unity", "motion_consistency", "jumps"):  # the world's own renders are coherent
        assert summary["passed"][criterion] == 10, summary


def test_eval_bad_prompts_file(tmp_path):
    r = runner.invoke(app, ["eval", "--prompts", str(tmp_path / "missing.txt"), "--ground-truth"])
    assert r.exit_code == 2 and "cannot read prompts file" in r.output
