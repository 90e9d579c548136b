"""`lingen benchmark` as a user runs it: table, JSON, PNG, paper-scale FLOPs, bad flags; and its helpers."""
import json
import math
import statistics

import pytest
from typer.testing import CliRunner

from lingen_cli import benchmark as cli_bm
from lingen_model.bench import cells as bench_cells
from lingen_model.bench import fit, measure
from lingen_cli.app import app
from lingen_model.bench.flops import denoiser_flops
from lingen_model.models.config import get_config
from cli_utils import one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["benchmark", *map(str, args)])



def counted_flops(mixer, latent, text_len, batch=1):
    """FLOPs of one forward of the tiny denoiser by torch.utils.flop_counter (MATH attention, torch scan)."""
    import os

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from lingen_model import build_denoiser

    old = os.environ.get("LINGEN_SCAN_BACKEND")
    os.environ["LINGEN_SCAN_BACKEND"] = "torch"
    try:
        model = build_denoiser("tiny", mixer=mixer).eval()
        cfg = model.config
        x = torch.zeros(batch, cfg.in_channels, *latent)
        ctx, mask = torch.zeros(batch, text_len, cfg.text_dim), torch.ones(batch, text_len, dtype=torch.bool)
        with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x, torch.full((batch,), 0.5), ctx, mask)
    finally:
        if old is None:
            os.environ.pop("LINGEN_SCAN_BACKEND")
        else:
            os.environ["LINGEN_SCAN_BACKEND"] = old
    return fc.get_total_flops()  # the depthwise conv runs as a conv2d, which the counter sees


def test_smoke_table_json_and_png(tmp_path):
    js, png = tmp_path / "out" / "bench.json", tmp_path / "bench.png"
    r = run("--res", 32, "--length", "5f", "--repeats", 1, "--threads", 1, "--json", js, "--plot", png)
    assert r.exit_code == 0, r.output
    assert "LinGen" in r.stdout and "DiT" in r.stdout and "log-log slope" in r.stdout
    rep = json.loads(js.read_text())
    assert [c["label"] for c in rep["cells"]] == ["LinGen", "DiT"]
    for c in rep["cells"]:
        assert c["status"] == "ok", c
        assert c["tokens"] == 2 * 2 * 2  # 5 frames → 2 latent frames; 32 px → 4 latent → 2×2 tokens
        assert c["median_s"] > 0 and c["first_call_s"] > 0 and len(c["times_s"]) == 1
        assert isinstance(c["peak_memory_bytes"], int)  # its size: test_in_process_measurement_and_memory
        assert c["projected_run_s"] == pytest.approx(50 * statistics.median(c["times_s"]))  # --steps 50
        # FLOPs as torch's own counter sees the same forward (batch 1, 64 text tokens)
        assert c["flops"] == counted_flops(c["mixer"], c["latent"], text_len=64)
    counted = {c["mixer"]: counted_flops(c["mixer"], c["latent"], text_len=64) for c in rep["cells"]}
    assert rep["ratios"][0]["flops"] == pytest.approx(counted["attention"] / counted["mate"], rel=1e-12)
    assert rep["machine"]["logical_cores"] >= 1 and "load_average_end" in rep["machine"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.rglob(".*")]  # atomic writes leave no temp files


def test_paper_scale_flops_only_needs_no_gpu(tmp_path):
    js = tmp_path / "p.json"
    r = run("--model", "4b", "--res", 512, "--length", "17s,34s,68s", "--flops-only", "--json", js)
    assert r.exit_code == 0, r.output
    rep = json.loads(js.read_text())
    ratios = [x["flops"] for x in rep["ratios"]]
    assert ratios == sorted(ratios) and ratios[0] > 1  # the DiT's disadvantage grows with length
    fits = rep["fits"]
    assert 0.95 < fits["LinGen"]["flops_slope"] < 1.05 and fits["DiT"]["flops_slope_long_end"] > 1.7
    assert all(c["status"] == "flops-only" for c in rep["cells"])


@pytest.mark.parametrize("args,needle", [
    (["--length", "abc"], "length"),
    (["--length", "0s"], "length"),
    (["--res", "100"], "divisible"),
    (["--res", "big"], "resolution"),
    (["--compare", "unet"], "--compare"),
    (["--model", "huge"], "--model"),
    (["--steps", "0"], "--steps"),
    (["--repeats", "0"], "--repeats"),
    (["--dtype", "int8"], "--dtype"),
    (["--plot", "x.jpg"], ".png"),
    (["--fps", "-1"], "fps"),
    (["--flops-only", "--pipeline"], "exclude"),
])
def test_bad_flags_exit_2_with_one_line(args, needle):
    assert needle in one_line_error(run(*args))


def test_cuda_without_gpu_is_a_one_line_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert "CUDA" in one_line_error(run("--device", "cuda", "--res", 32, "--length", "5f"))


def test_parse_cells_lengths_and_resolutions():
    cells = bench_cells.parse_cells("128,512x288", "4s,60s,97f", fps=8)
    assert [(c.width, c.height) for c in cells[::3]] == [(128, 128), (512, 288)]
    assert [c.frames for c in cells[:3]] == [33, 481, 97]
    assert cells[0].latent == (9, 16, 16) and cells[1].latent == (121, 16, 16) and cells[5].latent == (25, 36, 64)
    assert cells[0].seconds == pytest.approx(33 / 8)
    # the embedded model's native setting: 4 s = 576 tokens, 60 s = 7,744 tokens
    cfg = get_config("tiny")
    assert [denoiser_flops(cfg, c.latent).tokens for c in cells[:2]] == [576, 7744]


def test_fit_loglog_slope_recovers_exponents():
    xs = [500, 1000, 3000, 8000]
    assert fit.fit_loglog_slope(xs, [3 * x ** 1.7 for x in xs]) == pytest.approx(1.7)
    assert fit.fit_loglog_slope(xs, [0.2 * x for x in xs]) == pytest.approx(1.0)
    assert fit.fit_loglog_slope([5, 5], [1, 2]) is None


def test_crossover_tokens_interpolates_and_extrapolates():
    # DiT / LinGen = (x / 2000)^0.8: crosses 1 at exactly 2,000 tokens in log-log
    xs = [500, 1000, 4000, 8000]
    lin = [x * 1e-3 for x in xs]
    dit = [l * (x / 2000) ** 0.8 for l, x in zip(lin, xs)]
    tok, how = fit.crossover_tokens(xs, lin, dit)
    assert how == "measured" and tok == pytest.approx(2000, rel=1e-9)
    tok, how = fit.crossover_tokens(xs[2:], lin[2:], dit[2:])  # LinGen already cheaper everywhere
    assert how == "extrapolated" and tok == pytest.approx(2000, rel=1e-9)
    assert fit.crossover_tokens(xs, dit, lin) == (None, "none")  # ratio only falls through 1
    assert fit.crossover_tokens(xs[:2], lin[:2], [0.5 * l for l in lin[:2]]) == (None, "dit-always")
    assert fit.crossover_tokens(xs[:2], lin[:2], [2 * l for l in lin[:2]]) == (None, "lingen-always")


def test_flops_crossover_is_the_first_latent_frame_where_dit_costs_more():
    cell = bench_cells.parse_cells("128", "4s", fps=8)[0]
    sec = fit.flops_crossover_seconds("tiny", cell, 1, 64)
    t = round((sec * 8 - 1) / 4) + 1  # latent frames at the crossover

    def ratio(frames):
        shape = (frames, 16, 16)
        return (denoiser_flops(get_config("tiny", "attention"), shape).total
                / denoiser_flops(get_config("tiny", "mate"), shape).total)

    assert ratio(t) > 1 >= ratio(t - 1)
    assert fit.tokens_to_seconds(t * 64, cell, 2) == pytest.approx(sec)


def test_worker_failures_are_reported_not_raised():
    spec = {"model": "tiny", "mixer": "mate", "latent": [1, 4, 4], "batch": 1, "text_len": 4, "device": "cpu",
            "dtype": "float32", "threads": 1, "warmup": 1, "repeats": 1, "overrides": {"no_such_field": 1}}
    res = measure.run_worker(spec, timeout=120)
    assert res["status"] == "error" and "no_such_field" in res["message"]
    assert measure.run_worker(spec, timeout=0.01)["status"] == "timeout"


def test_cells_that_do_not_fit_say_so(monkeypatch):
    monkeypatch.setattr(measure, "_free_memory_bytes", lambda device: 1000)
    cells = bench_cells.parse_cells("32", "5f", fps=8)
    rep = measure.run_benchmark(cells, bench_cells.BenchSettings(repeats=1), isolate=False)
    assert [c["status"] for c in rep["cells"]] == ["does not fit"] * 2
    rep["machine"] = {"cpu": "test"}
    from rich.console import Console

    con = Console(width=200, record=True)
    con.print(cli_bm.render_table(rep))
    assert "does not fit" in con.export_text()


def test_in_process_measurement_and_memory():
    spec = {"model": "tiny", "mixer": "attention", "latent": [2, 8, 8], "batch": 1, "text_len": 4, "device": "cpu",
            "dtype": "float32", "threads": 1, "warmup": 2, "repeats": 3, "overrides": {}}
    res = measure.measure_cell(spec)
    assert res["status"] == "ok" and len(res["times_s"]) == 3
    assert min(res["times_s"]) <= res["median_s"] <= max(res["times_s"])
    assert res["spread"] == pytest.approx((max(res["times_s"]) - min(res["times_s"])) / 2 / res["median_s"])
    # memory: 2 latent frames of 64×64 → 2,048 tokens; every block's SwiGLU makes a 2,048 × 1,024 float32
    # hidden (8 MiB) and its Mamba2 in_proj a 2,048 × 902 one (7 MiB): the peak is at least 4 MiB
    big = measure.measure_cell({**spec, "mixer": "mate", "latent": [2, 64, 64], "warmup": 1, "repeats": 1})
    assert big["status"] == "ok", big
    assert big["peak_memory_bytes"] >= 4 * 2**20, (big["peak_memory_bytes"], big["memory_method"])


def test_pipeline_mode_splits_generate_into_shares(tmp_path):
    js = tmp_path / "pipe.json"
    r = run("--pipeline", "--res", 32, "--length", "5f", "--steps", 1, "--compare", "none", "--threads", 1, "--json", js)
    assert r.exit_code == 0, r.output
    rep = json.loads(js.read_text())
    (row,) = rep["pipeline"]
    assert set(row["shares"]) == {"encode", "denoise", "decode", "write"}
    assert math.isclose(sum(row["shares"].values()), 1.0, rel_tol=1e-9)
    assert all(row[k + "_s"] > 0 for k in row["shares"])
