"""``lingen benchmark``: FLOPs, latency and memory of LinGen vs its DiT twin, per denoising step.

For each (resolution, length) and each mixer — LinGen (MATE) and, unless ``--compare none``,
its DiT twin of the same size (full self-attention) — it reports the token count, the
analytic FLOPs of one denoising step (``lingen_model.bench.flops``), the latency of one step
(warm-up first, device synchronised, median and spread of ``--repeats``; the first call,
which holds the mamba-ssm/Triton compile on CUDA, reported separately), the peak memory
and the projected time of the whole sampling run (``steps`` × median step). Then the
DiT÷LinGen ratios, the fitted log-log slope of cost vs tokens per mixer, and the
crossover length past which LinGen is cheaper. Writes JSON (``--json``) and a PNG plot in
the manner of the efficiency figure of LinGen (arXiv 2412.09856, Fig. 1/§4) (``--plot``).

How each cell is measured (a fresh worker process per cell, the memory high-water mark, timeouts):
see :mod:`lingen_model.bench.measure`.

``--pipeline`` times the whole ``generate`` path instead (text encoding / denoising /
VAE decode / mp4 writing shares) with random weights.

``--cp 1,2,4`` measures context parallelism instead: per-rank time and peak activation memory of
one forward and one training step with the clip split over N gloo ranks on CPU
(:mod:`lingen_model.bench.context_parallel`).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Optional

import typer

from lingen_cli.common import CLIError, console, err_console, fail
from lingen_model.bench.cells import BenchSettings, parse_cells
from lingen_model.bench.constants import MODEL_DEFAULTS
from lingen_model.bench.context_parallel import parse_cp_degrees, run_cp_benchmark
from lingen_model.bench.measure import run_benchmark
from lingen_model.environment import machine_facts
from lingen_model.bench.pipeline_bench import run_pipeline_benchmark
from lingen_model.bench.report import _fmt_slope, write_plot
from lingen_model.errors import LinGenError
from lingen_model.io.files import atomic_path, format_bytes

# ----------------------------------------------------------------------------- output


def _fmt_s(s: Optional[float]) -> str:
    if s is None:
        return "–"
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 120:
        return f"{s / 60:.1f}min"
    if s >= 1:
        return f"{s:.3g}s"
    return f"{s * 1e3:.3g}ms"


def _fmt_clip(r: dict) -> str:
    res = f"{r['width']}²" if r["width"] == r["height"] else f"{r['width']}x{r['height']}"
    return f"{res} {r['length']}"


def _short(x: Optional[float], unit: str = "") -> str:
    """3 significant digits with k/M/G/T/P prefixes (``1.23T``)."""
    if x is None:
        return "–"
    for p, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{p}{unit}"
    return f"{x:.3g}{unit}"


def render_table(report: dict):
    """The rich table of a report: one row per (cell, mixer); DiT rows carry the DiT÷LinGen ratios.

    Columns: clip (resolution, length), frames, tokens, model, FLOPs per step, latency per
    step (wall clock: median ± half the min–max spread), CPU time per step (median; all
    threads), µs of latency per token, peak memory, first call (compile/warm-up), projected
    sampling run (steps × median), and DiT÷LinGen ratios of FLOPs and latency.
    """
    from rich import box
    from rich.table import Table

    st = report["settings"]
    flops_only = st["flops_only"]
    on_cpu = st["device"] == "cpu"
    where = report["machine"].get("gpu") or report["machine"].get("cpu")
    title = (f"lingen benchmark: {st['model']}, analytic FLOPs (batch {st['batch']})" if flops_only else
             f"lingen benchmark: {st['model']}, {where} ({st['device']}, {st['dtype']}, batch {st['batch']}, "
             f"{st['repeats']} repeats)")
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    t.add_column("clip", no_wrap=True)
    t.add_column("frames", justify="right")
    t.add_column("tokens", justify="right")
    t.add_column("model", no_wrap=True)
    t.add_column("FLOP/step", justify="right")
    if not flops_only:
        for name in ("s/step", "CPU s", "µs/tok", "peak mem", "1st call", f"{st['steps']} steps"):
            if name != "CPU s" or on_cpu:
                t.add_column(name, justify="right", no_wrap=True)
    if st["compare"] == "dit":
        t.add_column("÷FLOP", justify="right")
        if not flops_only:
            t.add_column("÷time", justify="right")
    ratios = {(r["res"], r["length"]): r for r in report["ratios"]}
    for r in report["cells"]:
        row = [_fmt_clip(r), str(r["frames"]), f"{r['tokens']:,}", r["label"], _short(r["flops"])]
        if not flops_only:
            if r.get("status") == "ok":
                row += [f"{_fmt_s(r['median_s'])}±{100 * r['spread']:.0f}%"] + ([_fmt_s(r["cpu_median_s"])] if on_cpu else [])
                row += [f"{r['per_token_us']:.0f}",
                        format_bytes(r.get("peak_memory_bytes"), unknown="–"), _fmt_s(r["first_call_s"]), _fmt_s(r["projected_run_s"])]
            else:
                row += [r.get("status", "?")] + [""] * (4 if on_cpu else 3) + [(r.get("message") or "")[:30]]
        if st["compare"] == "dit":
            rat = ratios.get((r["res"], r["length"])) if r["mixer"] == "attention" else None
            row.append(f"{rat['flops']:.2f}×" if rat else "")
            if not flops_only:
                row.append(f"{rat['latency']:.2f}×" if rat and "latency" in rat else "")
        t.add_row(*row, end_section=r["mixer"] == "attention" and st["compare"] == "dit")
    t.caption = "÷ = DiT ÷ LinGen (FLOPs, latency); > 1 means LinGen is cheaper"
    return t


def summary_lines(report: dict) -> list[str]:
    """Fitted slopes and crossover lengths as plain lines."""
    lines = []
    for label, f in report["fits"].items():
        parts = [f"{label}: FLOPs ∝ tokens^{_fmt_slope(f['flops_slope'])}"]
        if not report["settings"]["flops_only"]:
            parts.append(f"latency ∝ tokens^{_fmt_slope(f['latency_slope'])} "
                         f"(long end: ^{_fmt_slope(f['latency_slope_long_end'])})")
            if report["settings"]["device"] == "cpu":
                parts.append(f"CPU time ∝ tokens^{_fmt_slope(f['cpu_time_slope'])} "
                             f"(long end: ^{_fmt_slope(f['cpu_time_slope_long_end'])})")
        lines.append("log-log slope " + ", ".join(parts))
    for c in report["crossover"]:
        msg = f"crossover at {c['res']}: "
        fs = c.get("flops_seconds")
        msg += f"FLOPs — DiT costlier from {fs:.3g} s" if fs else "FLOPs — none found"
        if not report["settings"]["flops_only"]:
            for name in ("latency", "cpu_time") if report["settings"]["device"] == "cpu" else ("latency",):
                how, sec, what = c[f"{name}_how"], c.get(f"{name}_seconds"), name.replace("_", " ")
                if sec is not None:
                    msg += f"; {what} — DiT slower from {sec:.3g} s ({how}, {c[f'{name}_tokens']:,.0f} tokens)"
                else:
                    msg += {"lingen-always": f"; {what} — LinGen faster at every length measured",
                            "dit-always": f"; {what} — DiT faster at every length measured, gap not closing",
                            "none": f"; {what} — DiT÷LinGen does not rise through 1"}.get(how, f"; {what} — n/a")
        lines.append(msg)
    return lines


def render_pipeline_table(report: dict):
    """Rich table of a ``--pipeline`` report: seconds and shares per phase."""
    from rich.table import Table

    st = report["settings"]
    t = Table(title=f"lingen benchmark --pipeline — {st['model']} ({st['device']}, {st['dtype']}, "
                    f"{st['steps']} steps, cfg {report['cfg_scale']:g})")
    for name in ("res", "length", "model", "encode text", "denoise", "VAE decode", "write mp4", "total"):
        t.add_column(name, justify="left" if name in ("length", "model") else "right")
    for r in report["pipeline"]:
        cells = [f"{_fmt_s(r[k + '_s'])} ({100 * r['shares'][k]:.0f}%)" for k in ("encode", "denoise", "decode", "write")]
        t.add_row(r["res"], f"{r['length']} ({r['frames']}f)", r["label"], *cells, _fmt_s(r["total_s"]))
    return t


def render_cp_table(report: dict):
    """Rich table of a ``--cp`` report: one row per (clip, degree, mixer, step).

    Columns: clip, tokens, model, step (fwd: inference forward; train: forward + backward), cp
    (ranks), latent frames per rank, wall seconds (slowest rank), CPU seconds of the busiest rank
    and of all ranks, peak activation memory of the largest rank.
    """
    from rich import box
    from rich.table import Table

    st = report["settings"]
    where = report.get("machine", {}).get("cpu") or "CPU"
    t = Table(title=f"lingen benchmark --cp: {st['model']}, {where} (gloo, float32, batch {st['batch']}, "
                    f"{st['threads']} thread(s)/rank, {st['repeats']} repeats)",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for name in ("clip", "tokens", "model", "step", "cp", "frames/rank", "wall s", "CPU s/rank", "CPU s all",
                 "peak act/rank"):
        t.add_column(name, justify="left" if name in ("clip", "model", "step") else "right", no_wrap=True)
    rows = report["rows"]
    for i, r in enumerate(rows):
        head = [_fmt_clip(r), f"{r['tokens']:,}" if "tokens" in r else "–", r["label"], r["step"], str(r["cp"])]
        if r["status"] == "ok":
            head += ["+".join(map(str, r["frames_per_rank"])), _fmt_s(r["wall_s"]), _fmt_s(r["cpu_s_max"]),
                     _fmt_s(r["cpu_s_sum"]), format_bytes(r["peak_bytes_max"])]
        else:
            head += [r["status"], "", "", "", (r.get("message") or "")[:40]]
        last = i + 1 == len(rows) or rows[i + 1]["cp"] != r["cp"] or rows[i + 1]["length"] != r["length"]
        t.add_row(*head, end_section=last)
    t.caption = ("wall: slowest rank (median); CPU s: busiest rank / all ranks; "
                 "peak act: largest rank's live tensors made in the step")
    return t


# ----------------------------------------------------------------------------- command


def _wide_console(min_width: int = 132):
    """The stdout console, or one at least ``min_width`` columns wide (rich would hide columns on a narrow one)."""
    from rich.console import Console

    return console if console.width >= min_width else Console(width=min_width, highlight=False)


def _finish_report(report: dict, started: float, json_out) -> None:
    """Stamp the end-of-run load average and wall time on ``report`` and write ``--json`` (atomically)."""
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_end"] = list(os.getloadavg())
    report["wall_s"] = time.perf_counter() - started
    if json_out is None:
        return
    try:
        _write_json(report, json_out)
    except OSError as e:
        raise fail(f"cannot write {e.filename or json_out}: {e.strerror or e}", 1)
    err_console.print(f"wrote {json_out}", highlight=False)


def _write_json(report: dict, path: Path) -> None:
    with atomic_path(Path(path), suffix=".json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


def _validate(model, compare, device, dtype, steps, repeats, warmup, batch, text_len, threads, cell_timeout, plot,
              flops_only=False, pipeline=False):
    import torch

    from lingen_cli.options import DTYPES
    from lingen_model.models.config import DENOISER_CONFIGS

    if model not in DENOISER_CONFIGS:
        raise CLIError(f"unknown --model {model!r}; expected one of {', '.join(DENOISER_CONFIGS)}")
    if compare not in ("dit", "none"):
        raise CLIError(f"--compare must be 'dit' or 'none', got {compare!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise CLIError(f"--device must be cpu or cuda, got {device!r}")
    if flops_only and pipeline:
        raise CLIError("--flops-only and --pipeline exclude each other")
    if device.startswith("cuda") and not torch.cuda.is_available() and not flops_only:
        raise CLIError("--device cuda asked for, but torch sees no CUDA device")
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if dtype not in DTYPES:
        raise CLIError(f"unknown --dtype {dtype!r}; use float32, bfloat16 or float16")
    for name, v, lo in (("--steps", steps, 1), ("--repeats", repeats, 1), ("--warmup", warmup, 1),
                        ("--batch", batch, 1), ("--text-len", text_len, 1)):
        if v < lo:
            raise CLIError(f"{name} must be >= {lo}, got {v}")
    if threads is not None and threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    if cell_timeout is not None and not (math.isfinite(cell_timeout) and cell_timeout > 0):
        raise CLIError(f"--cell-timeout must be a finite number of seconds > 0, got {cell_timeout}")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise CLIError(f"--plot must name a .png file, got {plot}")
    return device, DTYPES[dtype]


def _check_outputs_and_lengths(cells, json_out, plot, flops_only) -> None:
    """Output files that cannot be written (a directory) and, unless --flops-only, lengths past the
    limit ``lingen generate`` applies with its default preset: CLIError before any cell runs."""
    for opt, path in (("--json", json_out), ("--plot", plot)):
        if path is not None and Path(path).is_dir():
            raise CLIError(f"{opt} {path} is a directory; give a file name")
    if not flops_only:
        from lingen_model.presets import pick_tier

        tier = pick_tier("auto")
        for c in cells:
            if (c.frames - 1) / c.fps > tier.max_length_s + 1e-9:
                raise CLIError(f"length {c.label} ({(c.frames - 1) / c.fps:.6g} s) exceeds the {tier.name} preset's "
                               f"limit of {tier.max_length_s:g} s (--flops-only counts any length)")


def benchmark(
    compare: str = typer.Option("dit", "--compare", help="'dit' also times the DiT twin of the same size; 'none' only LinGen."),
    model: str = typer.Option("tiny", "--model", help="Model size: tiny | small | 4b (random weights)."),
    res: Optional[str] = typer.Option(None, "--res", help="Resolutions, comma-separated: 512 (square), 512x288, named sizes. Default: the size's native one."),
    length: Optional[str] = typer.Option(None, "--length", help="Lengths, comma-separated: 4s, 60s, 97f, named lengths. Default: the size's range (tiny: 4s..60s)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate used to turn seconds into frames (tiny: 8, 4b: 16)."),
    steps: int = typer.Option(50, "--steps", help="Denoising steps of the projected full run (and of --pipeline)."),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="Timed forwards per cell (median and spread); default 3 (1 with --cp)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed-for-the-median forwards first (the first one is reported as '1st call')."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: float32 on CPU, bfloat16 on CUDA)."),
    batch: int = typer.Option(1, "--batch", help="Batch per forward (2 = a classifier-free-guidance step)."),
    text_len: int = typer.Option(64, "--text-len", help="Text tokens in the context."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch.set_num_threads in each worker (default: torch's; 1 per rank with --cp)."),
    cell_timeout: Optional[float] = typer.Option(1200.0, "--cell-timeout", help="Seconds before a cell is reported 'timeout'."),
    flops_only: bool = typer.Option(False, "--flops-only", help="Only the analytic FLOPs (no model is built; any size, no GPU needed)."),
    pipeline: bool = typer.Option(False, "--pipeline", help="Time the whole generate path (text / denoise / decode / write shares)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot (cost vs length, both mixers, ratios)."),
    cp: Optional[str] = typer.Option(None, "--cp", help="Context-parallel degrees, e.g. 1,2,4: per-rank time and peak activation memory of one forward and one training step on N gloo ranks (CPU; default length: the size's longest)."),
) -> None:
    """Compare LinGen with its DiT twin: FLOPs, latency and memory per denoising step.

    Each cell runs in a fresh worker process started with MALLOC_MMAP_THRESHOLD_,
    MALLOC_TRIM_THRESHOLD_ and OMP_WAIT_POLICY=PASSIVE (unless already set). CPU timings
    on shared machines are noisy: compare wall time with CPU time, use --repeats.
    With --cp: per-rank time and peak activation memory under context parallelism instead.
    """
    if cp is not None:
        return _benchmark_cp(cp, compare, model, res, length, fps, repeats, warmup, device, dtype, batch, text_len,
                             threads, cell_timeout, flops_only, pipeline, json_out, plot)
    repeats = 3 if repeats is None else repeats
    try:
        device, dtype = _validate(model, compare, device, dtype, steps, repeats, warmup, batch, text_len, threads,
                                  cell_timeout, plot, flops_only, pipeline)
        defaults = MODEL_DEFAULTS.get(model, MODEL_DEFAULTS["tiny"])
        cells = parse_cells(res or defaults["res"], length or defaults["lengths"],
                            fps if fps is not None else defaults["fps"])
        _check_outputs_and_lengths(cells, json_out, plot, flops_only)
    except LinGenError as e:
        raise fail(str(e), e.exit_code)
    settings = BenchSettings(model=model, compare=compare, device=device, dtype=dtype, steps=steps, repeats=repeats,
                             warmup=warmup, batch=batch, text_len=text_len, threads=threads,
                             cell_timeout=cell_timeout, flops_only=flops_only)
    for note in dict.fromkeys(c.note for c in cells if c.note):
        err_console.print(f"note: {note}", highlight=False)
    started = time.perf_counter()
    if pipeline:
        report = run_pipeline_benchmark(cells, settings)
        report["machine"] = machine_facts(device, threads)
        _wide_console().print(render_pipeline_table(report))
    else:
        machine = machine_facts(device, threads)
        report = run_benchmark(cells, settings,
                               progress=lambda m: err_console.print(f"[dim]timing {m}…[/dim]", highlight=False))
        report["machine"] = machine
        _wide_console().print(render_table(report))
        for line in summary_lines(report):
            console.print(line, highlight=False, soft_wrap=True)
    _finish_report(report, started, json_out)
    try:
        if plot is not None and not pipeline:
            write_plot(report, plot)
            err_console.print(f"wrote {plot}", highlight=False)
    except OSError as e:
        raise fail(f"cannot write {e.filename or plot}: {e.strerror or e}", 1)
    failed = [r for r in report.get("cells", []) if r.get("status") == "error"]
    if failed:
        raise fail(f"{len(failed)} cell(s) failed, first: {failed[0].get('message')}", code=1)



def _benchmark_cp(cp, compare, model, res, length, fps, repeats, warmup, device, dtype, batch, text_len, threads,
                  cell_timeout, flops_only, pipeline, json_out, plot) -> None:
    """``lingen benchmark --cp``: validate, run :func:`run_cp_benchmark`, print its table, write --json."""
    repeats = 1 if repeats is None else repeats
    try:
        for flag, given in (("--flops-only", flops_only), ("--pipeline", pipeline), ("--plot", plot is not None)):
            if given:
                raise CLIError(f"--cp and {flag} exclude each other")
        if device is not None and device != "cpu":
            raise CLIError(f"--cp runs its ranks on CPU (gloo); --device {device} is not supported with it")
        device, _ = _validate(model, compare, "cpu", dtype, 50, repeats, warmup, batch, text_len, threads,
                              cell_timeout, None)
        if dtype not in (None, "float32"):
            raise CLIError(f"--cp measures float32 only, got --dtype {dtype}")
        defaults = MODEL_DEFAULTS.get(model, MODEL_DEFAULTS["tiny"])
        cells = parse_cells(res or defaults["res"], length or defaults["lengths"].split(",")[-1],
                            fps if fps is not None else defaults["fps"])
        _check_outputs_and_lengths(cells, json_out, None, False)
        degrees = parse_cp_degrees(cp, min(c.latent[0] for c in cells))
    except LinGenError as e:
        raise fail(str(e), e.exit_code)
    settings = BenchSettings(model=model, compare=compare, device="cpu", dtype="float32", repeats=repeats,
                             warmup=warmup, batch=batch, text_len=text_len, threads=threads or 1,
                             cell_timeout=cell_timeout)
    for note in dict.fromkeys(c.note for c in cells if c.note):
        err_console.print(f"note: {note}", highlight=False)
    started = time.perf_counter()
    report = run_cp_benchmark(cells, degrees, settings,
                              progress=lambda m: err_console.print(f"[dim]timing {m}…[/dim]", highlight=False))
    report["machine"] = machine_facts("cpu", settings.threads)
    _wide_console().print(render_cp_table(report))
    _finish_report(report, started, json_out)
    failed = [r for r in report["rows"] if r["status"] != "ok"]
    if failed:
        raise fail(f"{len(failed)} row(s) failed, first: {failed[0]['status']}: {failed[0].get('message')}", code=1)


def register(app: typer.Typer) -> None:
    """Add ``benchmark`` to the app."""
    app.command("benchmark")(benchmark)
