"""`lingen benchmark --cp` as a user runs it: one row per (mixer, step, degree) with per-rank time and
peak activation memory, the 2-rank peak below the 1-rank one, and one-line errors for bad degrees."""
import json
import os

import pytest
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.bench.context_parallel import MAX_RANKS_PER_CORE, parse_cp_degrees
from lingen_model.errors import InputError
from cli_utils import one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["benchmark", *map(str, args)])



def test_cp_table_and_json_per_rank(tmp_path):
    js = tmp_path / "cp.json"
    # 5 frames at 32 px: 2 latent frames (1 per rank on 2 ranks), 2×2 tokens each; LinGen only
    r = run("--cp", "1,2", "--length", "5f", "--res", 32, "--compare", "none", "--json", js)
    assert r.exit_code == 0, r.output
    table = [l.split() for l in r.stdout.splitlines() if "LinGen" in l and ("fwd" in l or "train" in l)]
    assert [(l[4], l[5], l[6]) for l in table] == [("fwd", "1", "2"), ("train", "1", "2"),
                                                   ("fwd", "2", "1+1"), ("train", "2", "1+1")], r.stdout
    rep = json.loads(js.read_text())
    assert rep["degrees"] == [1, 2] and rep["settings"]["threads"] == 1 and rep["settings"]["repeats"] == 1
    rows = {(x["mixer"], x["step"], x["cp"]): x for x in rep["rows"]}
    assert sorted(rows) == sorted((m, s, n) for m in ["mate"] for s in ("fwd", "train") for n in (1, 2))
    for (mixer, step, n), x in rows.items():
        assert x["status"] == "ok", x
        assert x["tokens"] == 2 * 2 * 2 and x["frames_per_rank"] == ([2] if n == 1 else [1, 1])
        for key in ("wall_s_per_rank", "cpu_s_per_rank", "peak_bytes_per_rank"):
            assert len(x[key]) == n, (key, x)
        assert all(w > 0 for w in x["wall_s_per_rank"]) and x["wall_s"] == max(x["wall_s_per_rank"])
        assert x["cpu_s_sum"] == pytest.approx(sum(x["cpu_s_per_rank"]))
        assert all(isinstance(p, int) and p > 0 for p in x["peak_bytes_per_rank"])
        assert x["peak_bytes_max"] == max(x["peak_bytes_per_rank"])
    for step in ("fwd", "train"):  # each rank holds half the clip's activations
        assert rows[("mate", step, 2)]["peak_bytes_max"] < rows[("mate", step, 1)]["peak_bytes_max"], step
    assert not [p for p in tmp_path.rglob(".*")]  # atomic write leaves no temp file


@pytest.mark.parametrize("args,needle", [
    (["--cp", "0"], ">= 1"),
    (["--cp", "-2"], ">= 1"),
    (["--cp", "1.5"], "whole numbers"),
    (["--cp", "two"], "whole numbers"),
    (["--cp", ""], "at least one"),
    (["--cp", "2,2"], "twice"),
    (["--cp", "3", "--length", "5f"], "latent frame"),  # 5 frames → 2 latent frames
    (["--cp", "2", "--pipeline"], "exclude"),
    (["--cp", "2", "--flops-only"], "exclude"),
    (["--cp", "2", "--plot", "x.png"], "exclude"),
    (["--cp", "2", "--device", "cuda"], "CPU"),
    (["--cp", "2", "--dtype", "bfloat16"], "float32"),
    (["--cp", "2", "--repeats", "0"], "--repeats"),
])
def test_bad_cp_values_exit_2_with_one_line(args, needle):
    assert needle in one_line_error(run("--res", 32, "--length", "9f", *args))


def test_cp_above_the_machine_limit_is_refused():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = MAX_RANKS_PER_CORE * cores + 1
    frames = 1 + 4 * n  # n + 1 latent frames: only the machine limit refuses it
    assert "sensibly" in one_line_error(run("--cp", n, "--res", 32, "--length", f"{frames}f"))


def test_parse_cp_degrees():
    assert parse_cp_degrees(" 4, 1,2 ", latent_frames=121, cores=2) == [4, 1, 2]
    assert parse_cp_degrees("8", latent_frames=8, cores=2) == [8]
    with pytest.raises(InputError, match="sensibly"):
        parse_cp_degrees("9", latent_frames=121, cores=2)
    with pytest.raises(InputError, match="latent frame"):
        parse_cp_degrees("9", latent_frames=8, cores=16)


def test_a_launch_past_the_cell_timeout_is_a_row_not_a_crash(tmp_path):
    js = tmp_path / "t.json"
    # no spawned process imports torch within 0.2 s: the launch is stopped and reported
    r = run("--cp", "1", "--length", "5f", "--res", 32, "--compare", "none", "--cell-timeout", 0.2, "--json", js)
    assert "timeout" in one_line_error(r, code=1)
    rows = json.loads(js.read_text())["rows"]
    assert [(x["step"], x["status"]) for x in rows] == [("fwd", "timeout"), ("train", "timeout")]
