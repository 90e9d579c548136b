"""``lingen benchmark``: FLOPs, latency and memory of LinGen vs its DiT twin, per denoising step.

For each (resolution, length) and each mixer — LinGen (MATE) and, unless ``--compare none``,
its DiT twin of the same size (full self-attention) — it reports the token count, the
analytic FLOPs of one denoising step (``lingen_model.flops``), the latency of one step
(warm-up first, device synchronised, median and spread of ``--repeats``; the first call,
which holds the mamba-ssm/Triton compile on CUDA, reported separately), the peak memory
and the projected time of the whole sampling run (``steps`` × median step). Then the
DiT÷LinGen ratios, the fitted log-log slope of cost vs tokens per mixer, and the
crossover length past which LinGen is cheaper. Writes JSON (``--json``) and a PNG plot in
the manner of the efficiency figure of LinGen (arXiv 2412.09856, Fig. 1/§4) (``--plot``).

How it measures (honest on a shared machine):

* every (cell, mixer) runs in a **fresh worker process** (``python -m lingen_cli.benchmark
  --worker``) with random weights; the worker gets
  ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824`` in its environment
  (glibc must see them at process start: they stop malloc from returning and re-faulting
  the big activation buffers on every call, which otherwise dominates CPU timings) and
  ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning; on a CPU
  shared with other processes, spinning made forwards 3–5× slower and erratic), each only
  where the user has not set it, plus ``torch.set_num_threads(--threads)``;
* latency: ``time.perf_counter`` around one forward under ``torch.inference_mode``, with
  ``torch.cuda.synchronize`` on CUDA; median over repeats, spread = (max − min) / 2 / median;
* peak memory, CPU: the process's resident-set high-water mark (``VmHWM`` of
  ``/proc/self/status``) reset through ``/proc/self/clear_refs`` just before the first
  forward, minus the resident set at that moment — the extra RAM the forwards touched
  (activations, workspaces, allocator slack), weights and inputs excluded;
  CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the forwards;
* a cell whose weights alone exceed the free memory is reported "does not fit" without
  running; a worker that runs out of memory (or is killed by the OS) is reported "OOM";
  a worker past ``--cell-timeout`` is reported "timeout". Nothing crashes the table.

``--pipeline`` times the whole ``generate`` path instead (text encoding / denoising /
VAE decode / mp4 writing shares) with random weights.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import typer

from lingen_cli.common import CLIError, atomic_path, console, err_console, fail

#: Environment the workers start with unless the user set these already (see module docstring):
#: glibc malloc keeps big buffers instead of unmapping them after every call, and OpenMP
#: threads sleep instead of spinning at barriers (spinning threads fight over shared cores).
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824",
              "OMP_WAIT_POLICY": "PASSIVE"}
MIXERS = {"lingen": "mate", "dit": "attention"}
LABELS = {"mate": "LinGen", "attention": "DiT"}
#: Per size: default resolution, frame rate and lengths. ``tiny`` is the embedded model's native
#: setting (128² px, 8 fps); ``4b`` is the paper's efficiency setting (512², 17/34/68 s), with
#: 16 fps assumed (see docs/benchmarks.md).
MODEL_DEFAULTS = {
    "tiny": {"res": "128", "fps": 8.0, "lengths": "4s,8s,15s,30s,60s"},
    "small": {"res": "256", "fps": 16.0, "lengths": "4s,8s,17s"},
    "4b": {"res": "512", "fps": 16.0, "lengths": "17s,34s,68s"},
}
VAE_SPATIAL, VAE_TEMPORAL = 8, 4  # DESIGN.md §4: spatial ×8, temporal ×4 (frames = 1 + 4k)
RESULT_TAG = "LINGEN_BENCH_RESULT "


# ----------------------------------------------------------------------------- cells


@dataclass
class Cell:
    """One (resolution, length) point: pixels, frames and the latent it maps to.

    Attributes: width, height (pixels); frames; fps (frames/s); label (length as asked);
    latent (T', H', W') latent voxels; note (how the length was rounded, or None).
    """

    width: int
    height: int
    frames: int
    fps: float
    label: str
    latent: tuple[int, int, int]
    note: Optional[str] = None

    @property
    def seconds(self) -> float:
        """Clip length in seconds (frames / fps)."""
        return self.frames / self.fps

    @property
    def res_label(self) -> str:
        """``WxH`` (or ``S`` for a square)."""
        return str(self.width) if self.width == self.height else f"{self.width}x{self.height}"


def latent_shape_for(frames: int, width: int, height: int, spatial: int = VAE_SPATIAL,
                     temporal: int = VAE_TEMPORAL) -> tuple[int, int, int]:
    """Latent (T', H', W') of a clip: T' = 1 + (frames − 1)/temporal, H' = height/spatial, W' = width/spatial.

    Raises ValueError unless frames = 1 + temporal·k ≥ 1 and width/height are positive multiples of ``spatial``.
    """
    if frames < 1 or (frames - 1) % temporal:
        raise ValueError(f"frames must be 1 + {temporal}·k, got {frames}")
    if width < spatial or height < spatial or width % spatial or height % spatial:
        raise ValueError(f"width and height must be positive multiples of {spatial} pixels, got {width}x{height}")
    return (1 + (frames - 1) // temporal, height // spatial, width // spatial)


def parse_cells(res: str, lengths: str, fps: float, stride: int = VAE_SPATIAL * 2) -> list[Cell]:
    """Cells for comma-separated resolutions (``512``, ``512x288``, named sizes of presets/sizes.yaml)
    and lengths (``4s``, ``60s``, ``97f``, named lengths) at ``fps``; lengths are rounded to the
    nearest 1 + 4k frames (the VAE's grid). Reuses ``lingen_cli.options`` (same parsers as ``generate``).

    Raises:
        CLIError: an unreadable resolution or length, a size not divisible by ``stride``
            (VAE factor × patch), a non-positive fps, or an empty list.
    """
    from lingen_cli.options import frames_for_length, parse_resolution

    if not (fps > 0 and math.isfinite(fps)):
        raise CLIError(f"fps must be > 0, got {fps}")
    sizes = _named_sizes()
    res_items = [r.strip() for r in str(res).split(",") if r.strip()]
    len_items = [x.strip() for x in str(lengths).split(",") if x.strip()]
    if not res_items or not len_items:
        raise CLIError("--res and --length need at least one value each (e.g. --res 512 --length 4s,17s)")
    cells = []
    for r in res_items:
        w, h = parse_resolution(sizes["resolutions"].get(r, r), stride=stride)
        for item in len_items:
            frames, note = frames_for_length(sizes["lengths"].get(item, item), fps, VAE_TEMPORAL)
            cells.append(Cell(w, h, frames, fps, item, latent_shape_for(frames, w, h), note))
    return cells


def _named_sizes() -> dict[str, dict[str, str]]:
    try:
        from lingen_cli.presets import load_sizes

        return load_sizes()
    except Exception:  # presets are a convenience here; plain values still parse
        return {"resolutions": {}, "lengths": {}}


# ----------------------------------------------------------------------------- statistics


def fit_loglog_slope(tokens: Sequence[float], cost: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log(cost) vs log(tokens): the scaling exponent (1 = linear, 2 = quadratic).

    Returns None with fewer than two distinct token counts or a non-positive value.
    """
    pts = [(math.log(x), math.log(y)) for x, y in zip(tokens, cost) if x and y and x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def crossover_tokens(tokens: Sequence[float], lingen: Sequence[float], dit: Sequence[float]) -> tuple[Optional[float], str]:
    """Token count where the DiT's cost overtakes LinGen's (log-log interpolation of the ratio).

    Returns (tokens, how) with how ``"measured"`` (bracketed by two points), ``"extrapolated"``
    (power laws through the two nearest points), ``"lingen-always"`` / ``"dit-always"`` (one
    mixer cheaper at every point and the gap not closing), ``"none"`` (the ratio only falls
    through 1), or (None, ``"n/a"``) with fewer than two usable points.
    """
    pts = sorted((x, a, b) for x, a, b in zip(tokens, lingen, dit) if x > 0 and a and b and a > 0 and b > 0)
    if len(pts) < 2:
        return None, "n/a"
    lx = [math.log(p[0]) for p in pts]
    lr = [math.log(p[2] / p[1]) for p in pts]  # log(DiT / LinGen): crosses 0 at the crossover
    for i in range(len(pts) - 1):
        if lr[i] <= 0 < lr[i + 1]:
            f = -lr[i] / (lr[i + 1] - lr[i])
            return math.exp(lx[i] + f * (lx[i + 1] - lx[i])), "measured"
    above = [v > 0 for v in lr]
    if any(above) and not all(above):
        return None, "none"  # the ratio only falls through 1: the DiT does not overtake
    i = 0 if above[0] else len(pts) - 2  # extrapolate from the end nearest to the crossing
    slope = (lr[i + 1] - lr[i]) / (lx[i + 1] - lx[i])
    if slope <= 0:
        return None, "lingen-always" if above[0] else "dit-always"
    return math.exp(lx[i] - lr[i] / slope), "extrapolated"


def tokens_to_seconds(tokens: float, cell: Cell, patch: int) -> float:
    """Clip length (s) at ``cell``'s resolution and fps whose latent has ``tokens`` tokens (continuous)."""
    per_frame = math.ceil(cell.latent[1] / patch) * math.ceil(cell.latent[2] / patch)
    latent_frames = tokens / per_frame
    return (1 + VAE_TEMPORAL * (latent_frames - 1)) / cell.fps


def flops_crossover_seconds(model: str, cell: Cell, batch: int, text_len: int, max_latent_frames: int = 1 << 20) -> Optional[float]:
    """Shortest length (s) at ``cell``'s resolution/fps where the DiT twin needs more FLOPs per step
    than LinGen (analytic; exact on the latent-frame grid). None if not within ``max_latent_frames``."""
    from lingen_model.config import get_config
    from lingen_model.flops import denoiser_flops

    cfg_l, cfg_d = get_config(model, "mate"), get_config(model, "attention")

    def dit_costlier(t: int) -> bool:
        shape = (t, cell.latent[1], cell.latent[2])
        return denoiser_flops(cfg_d, shape, batch, text_len).total > denoiser_flops(cfg_l, shape, batch, text_len).total

    if dit_costlier(1):
        return (1.0) / cell.fps
    lo, hi = 1, 2
    while not dit_costlier(hi):
        lo, hi = hi, hi * 2
        if hi > max_latent_frames:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if dit_costlier(mid) else (mid, hi)
    return (1 + VAE_TEMPORAL * (hi - 1)) / cell.fps


# ----------------------------------------------------------------------------- worker side


def _proc_status_kb(key: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    name = type(err).__name__
    text = str(err).lower()
    return name == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def measure_cell(spec: dict) -> dict:
    """Time one denoiser forward in this process (the worker's job); returns a JSON-ready dict.

    ``spec`` keys: model, mixer, latent [T', H', W'], batch, text_len, device, dtype, threads
    (None = torch default), warmup (≥ 1), repeats (≥ 1), overrides (config fields, optional).
    Result keys: status (``ok`` | ``oom`` | ``error``), message, first_call_s, times_s (wall
    clock), median_s, spread, cpu_times_s / cpu_median_s (CPU time of the process, all threads:
    ``time.process_time``; unlike wall time it does not count waiting for a shared core),
    peak_memory_bytes, memory_method, scan_backend, threads.
    """
    import torch

    from lingen_model.denoiser import build_denoiser

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    out: dict[str, Any] = {"status": "ok", "threads": torch.get_num_threads()}
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    try:
        from lingen_model.ssd import select_backend

        out["scan_backend"] = select_backend(device) if spec["mixer"] == "mate" else None
        torch.manual_seed(0)
        with torch.device(device):
            model = build_denoiser(spec["model"], mixer=spec["mixer"], **spec.get("overrides", {}))
        model = model.to(dtype).eval()
        cfg = model.config
        b = int(spec["batch"])
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(b, cfg.in_channels, *spec["latent"], generator=gen).to(device, dtype)
        t = torch.rand(b, generator=gen).to(device)
        ctx = torch.randn(b, int(spec["text_len"]), cfg.text_dim, generator=gen).to(device, dtype)
        mask = torch.ones(b, int(spec["text_len"]), dtype=torch.bool, device=device)
        if not cuda:  # one-time library set-up (thread pools, oneDNN/MKL buffers) kept out of the peak
            with torch.inference_mode():
                model(x[:1, :, :1, :1, :1], t[:1], ctx[:1, :1], mask[:1, :1])
        sync()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            mem0 = torch.cuda.memory_allocated(device)
            out["memory_method"] = "torch.cuda.max_memory_allocated minus allocated before the forwards"
        else:
            import gc

            gc.collect()
            reset = _reset_hwm()
            mem0 = (_proc_status_kb("VmRSS") or 0) * 1024
            out["memory_method"] = ("VmHWM (reset by clear_refs) minus VmRSS before the first forward" if reset
                                    else "VmHWM since start minus VmRSS before the first forward (upper bound)")

        cpu_times: list[float] = []

        def timed() -> float:
            sync()
            s, c = time.perf_counter(), time.process_time()
            model(x, t, ctx, mask)
            sync()
            cpu_times.append(time.process_time() - c)
            return time.perf_counter() - s

        with torch.inference_mode():
            out["first_call_s"] = timed()
            for _ in range(int(spec["warmup"]) - 1):
                timed()
            del cpu_times[:]
            times = [timed() for _ in range(int(spec["repeats"]))]
        if cuda:
            peak = torch.cuda.max_memory_allocated(device) - mem0
        else:
            hwm = _proc_status_kb("VmHWM")
            peak = None if hwm is None else max(0, hwm * 1024 - mem0)
        srt = sorted(times)
        med = srt[len(srt) // 2] if len(srt) % 2 else 0.5 * (srt[len(srt) // 2 - 1] + srt[len(srt) // 2])
        cpu_sorted = sorted(cpu_times)
        out.update(times_s=times, median_s=med, spread=(srt[-1] - srt[0]) / 2 / med if med > 0 else 0.0,
                   peak_memory_bytes=peak, cpu_times_s=cpu_times, cpu_median_s=cpu_sorted[len(cpu_sorted) // 2])
    except Exception as e:  # reported in the table, never raised through the CLI
        out["status"] = "oom" if _is_oom(e) else "error"
        out["message"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
    return out


def _worker_main() -> None:
    spec = json.loads(sys.stdin.read())
    result = measure_cell(spec)
    sys.stdout.write("\n" + RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- parent side


def worker_env(extra: Optional[dict] = None) -> dict:
    """Environment of a worker: this one + ``WORKER_ENV`` (user values win) + the package on PYTHONPATH."""
    env = dict(os.environ)
    for k, v in WORKER_ENV.items():
        env.setdefault(k, v)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def run_worker(spec: dict, timeout: Optional[float] = None) -> dict:
    """Run :func:`measure_cell` in a fresh Python process; always returns a result dict
    (status ``timeout`` / ``oom`` when the OS killed it / ``error`` with the last stderr line)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "lingen_cli.benchmark", "--worker"], input=json.dumps(spec),
                              capture_output=True, text=True, env=worker_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "message": f"no result within --cell-timeout {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    if proc.returncode in (-9, 137):
        return {"status": "oom", "message": "worker killed by the OS (out of memory)"}
    tail = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    return {"status": "error", "message": (tail[-1] if tail else f"worker exited with code {proc.returncode}")[:300]}


def _param_count(model: str, mixer: str, overrides: dict) -> int:
    import torch

    from lingen_model.denoiser import build_denoiser, count_parameters

    with torch.device("meta"):
        return count_parameters(build_denoiser(model, mixer=mixer, **overrides))


def _free_memory_bytes(device: str) -> Optional[int]:
    import torch

    if device.startswith("cuda"):  # total, not free: mem_get_info would open a CUDA context in this process
        try:
            return torch.cuda.get_device_properties(torch.device(device)).total_memory
        except Exception:
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def machine_info(device: str, threads: Optional[int]) -> dict:
    """Description of the machine: CPU model, cores, RAM, torch version, GPU name/memory, load average."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["ram_bytes"] = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = list(os.getloadavg())
    return info


@dataclass
class BenchSettings:
    """Everything a run depends on (stored in the JSON). Units: seconds, tokens, frames/s."""

    model: str = "tiny"
    compare: str = "dit"
    device: str = "cpu"
    dtype: str = "float32"
    steps: int = 50
    repeats: int = 3
    warmup: int = 1
    batch: int = 1
    text_len: int = 64
    threads: Optional[int] = None
    cell_timeout: Optional[float] = 1200.0
    flops_only: bool = False
    overrides: dict = field(default_factory=dict)


def run_benchmark(cells: list[Cell], settings: BenchSettings, progress: Optional[Any] = None,
                  isolate: bool = True) -> dict:
    """Measure every (cell, mixer) and return the report dict (``cells``, ``fits``, ``crossover``, …).

    ``isolate=False`` measures in this process (tests/debugging; memory numbers then include
    earlier cells). ``progress(message)`` is called before each measurement.
    """
    from lingen_model.config import get_config
    from lingen_model.flops import denoiser_flops

    mixers = ["mate"] + (["attention"] if settings.compare == "dit" else [])
    rows: list[dict] = []
    bytes_per = {"float32": 4, "bfloat16": 2, "float16": 2}[settings.dtype]
    params = {m: _param_count(settings.model, m, settings.overrides) for m in mixers}
    for cell in cells:
        for mixer in mixers:
            cfg = get_config(settings.model, mixer, **settings.overrides)
            fl = denoiser_flops(cfg, cell.latent, settings.batch, settings.text_len)
            row = {
                "res": cell.res_label, "width": cell.width, "height": cell.height, "length": cell.label,
                "frames": cell.frames, "fps": cell.fps, "seconds": cell.seconds, "latent": list(cell.latent),
                "tokens": fl.tokens, "mixer": mixer, "label": LABELS[mixer], "params": params[mixer],
                "flops": fl.total, "flops_components": fl.components, "note": cell.note,
            }
            if settings.flops_only:
                row["status"] = "flops-only"
            else:
                weights = params[mixer] * bytes_per
                free = _free_memory_bytes(settings.device)
                if free is not None and weights > free:
                    row.update(status="does not fit",
                               message=f"weights {weights / 2**30:.1f} GiB > available memory {free / 2**30:.1f} GiB")
                else:
                    if progress:
                        progress(f"{LABELS[mixer]} {cell.res_label} {cell.label} ({fl.tokens} tokens)")
                    spec = {"model": settings.model, "mixer": mixer, "latent": list(cell.latent),
                            "batch": settings.batch, "text_len": settings.text_len, "device": settings.device,
                            "dtype": settings.dtype, "threads": settings.threads, "warmup": settings.warmup,
                            "repeats": settings.repeats, "overrides": settings.overrides}
                    res = run_worker(spec, settings.cell_timeout) if isolate else measure_cell(spec)
                    row.update(res)
                    if res.get("status") == "ok":
                        row["per_token_us"] = res["median_s"] / fl.tokens * 1e6
                        row["projected_run_s"] = res["median_s"] * settings.steps
                        row["first_call_overhead_s"] = max(0.0, res["first_call_s"] - res["median_s"])
            rows.append(row)
    report = {"settings": asdict(settings), "cells": rows,
              "worker_env": {k: worker_env()[k] for k in WORKER_ENV} if isolate else None}
    report["ratios"] = _ratios(rows)
    report["fits"] = _fits(rows, mixers)
    report["crossover"] = _crossovers(cells, rows, settings) if "attention" in mixers else []
    return report


def _pair(rows: list[dict]) -> list[tuple[dict, Optional[dict]]]:
    out, dit = [], {}
    for r in rows:
        if r["mixer"] == "attention":
            dit[(r["res"], r["length"])] = r
    for r in rows:
        if r["mixer"] == "mate":
            out.append((r, dit.get((r["res"], r["length"]))))
    return out


def _ratios(rows: list[dict]) -> list[dict]:
    out = []
    for lin, dit in _pair(rows):
        if dit is None:
            continue
        item = {"res": lin["res"], "length": lin["length"], "tokens": lin["tokens"], "flops": dit["flops"] / lin["flops"]}
        if lin.get("status") == "ok" and dit.get("status") == "ok":
            item["latency"] = dit["median_s"] / lin["median_s"]
            item["cpu_time"] = dit["cpu_median_s"] / lin["cpu_median_s"]
        out.append(item)
    return out


def _fits(rows: list[dict], mixers: list[str]) -> dict:
    fits: dict[str, dict] = {}
    for mixer in mixers:
        rs = sorted((r for r in rows if r["mixer"] == mixer), key=lambda r: r["tokens"])
        ok = [r for r in rs if r.get("status") == "ok"]
        long_ok = ok[-3:] if len(ok) >= 4 else ok
        long_fl = rs[-3:] if len(rs) >= 4 else rs
        fits[LABELS[mixer]] = {
            "latency_slope": fit_loglog_slope([r["tokens"] for r in ok], [r["median_s"] for r in ok]),
            "latency_slope_long_end": fit_loglog_slope([r["tokens"] for r in long_ok], [r["median_s"] for r in long_ok]),
            "cpu_time_slope": fit_loglog_slope([r["tokens"] for r in ok], [r["cpu_median_s"] for r in ok]),
            "cpu_time_slope_long_end": fit_loglog_slope([r["tokens"] for r in long_ok],
                                                        [r["cpu_median_s"] for r in long_ok]),
            "flops_slope": fit_loglog_slope([r["tokens"] for r in rs], [r["flops"] for r in rs]),
            "flops_slope_long_end": fit_loglog_slope([r["tokens"] for r in long_fl], [r["flops"] for r in long_fl]),
            "tokens_range": [rs[0]["tokens"], rs[-1]["tokens"]] if rs else None,
        }
    return fits


def _crossovers(cells: list[Cell], rows: list[dict], settings: BenchSettings) -> list[dict]:
    from lingen_model.config import get_config

    patch = get_config(settings.model, "mate", **settings.overrides).patch_size
    out = []
    for res in dict.fromkeys(c.res_label for c in cells):
        cell = next(c for c in cells if c.res_label == res)
        pairs = [(lin, dit) for lin, dit in _pair(rows) if lin["res"] == res and dit is not None]
        item: dict[str, Any] = {"res": res}
        ok = [(lin, dit) for lin, dit in pairs if lin.get("status") == "ok" and dit.get("status") == "ok"]
        for key, name in (("median_s", "latency"), ("cpu_median_s", "cpu_time")):
            tok, how = crossover_tokens([l["tokens"] for l, _ in ok], [l[key] for l, _ in ok], [d[key] for _, d in ok])
            item[f"{name}_tokens"], item[f"{name}_how"] = tok, how
            item[f"{name}_seconds"] = tokens_to_seconds(tok, cell, patch) if tok else None
        if not settings.overrides:
            item["flops_seconds"] = flops_crossover_seconds(settings.model, cell, settings.batch, settings.text_len)
        out.append(item)
    return out


# ----------------------------------------------------------------------------- output


def _fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "–"
    for unit, scale in (("G", 2**30), ("M", 2**20), ("k", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"


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
                        _fmt_bytes(r.get("peak_memory_bytes")), _fmt_s(r["first_call_s"]), _fmt_s(r["projected_run_s"])]
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


def _fmt_slope(s: Optional[float]) -> str:
    return "–" if s is None else f"{s:.2f}"


def write_plot(report: dict, path: Path) -> None:
    """PNG in the manner of the paper's efficiency figure: FLOPs and latency per step vs clip
    length for both mixers (log scale), each DiT point annotated with its DiT÷LinGen ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    flops_only = report["settings"]["flops_only"]
    panels = [("flops", "FLOPs per denoising step")] + ([] if flops_only else [("median_s", "latency per step (s)")])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    ratios = {(r["res"], r["length"]): r for r in report["ratios"]}
    styles = {"mate": dict(color="tab:blue", marker="o", ls="-"), "attention": dict(color="tab:red", marker="s", ls="--")}
    res_list = list(dict.fromkeys(r["res"] for r in report["cells"]))
    for ax, (key, ylabel) in zip(axes[0], panels):
        for res in res_list:
            for mixer in ("mate", "attention"):
                rs = [r for r in report["cells"] if r["res"] == res and r["mixer"] == mixer and r.get(key)]
                if not rs:
                    continue
                xs, ys = [r["seconds"] for r in rs], [r[key] for r in rs]
                label = f"{LABELS[mixer]}" + (f" {res}" if len(res_list) > 1 else "")
                ax.plot(xs, ys, label=label, alpha=1.0 if res == res_list[0] else 0.6, **styles[mixer])
                if mixer == "attention":
                    lin = {(q["res"], q["length"]): q.get(key) for q in report["cells"] if q["mixer"] == "mate"}
                    for r, x, y in zip(rs, xs, ys):
                        rat = ratios.get((r["res"], r["length"]), {}).get("flops" if key == "flops" else "latency")
                        if rat:  # above the higher of the two points
                            top = max(y, lin.get((r["res"], r["length"])) or y)
                            ax.annotate(f"{rat:.1f}×", (x, top), textcoords="offset points", xytext=(0, 8),
                                        ha="center", fontsize=8, color="black")
        ax.set_xscale("log")
        ax.set_yscale("log")
        first = [r for r in report["cells"] if r["res"] == res_list[0] and r["mixer"] == "mate"]
        ax.set_xticks([r["seconds"] for r in first], [r["length"] for r in first])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    st = report["settings"]
    fig.suptitle(f"LinGen vs DiT twin — {st['model']}, {report['machine'].get('gpu') or st['device']}, "
                 f"{st['dtype']} (annotated: DiT ÷ LinGen)", fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- pipeline mode


class _RandomTextEncoder:
    """Stand-in text encoder (random tokens of width ``dim``) for sizes whose encoder is not installed."""

    def __init__(self, dim: int, length: int):
        self.dim, self.length = dim, length

    def to(self, *_a, **_k):
        return self

    def offload(self):
        return self

    def encode(self, prompts):
        import torch

        g = torch.Generator().manual_seed(0)
        return torch.randn(len(prompts), self.length, self.dim, generator=g), torch.ones(len(prompts), self.length, dtype=torch.bool)


def run_pipeline_benchmark(cells: list[Cell], settings: BenchSettings, cfg_scale: float = 5.0) -> dict:
    """Time ``generate``'s whole path per (cell, mixer) with random weights: text encoding,
    denoising (``settings.steps`` steps, CFG batch when ``cfg_scale != 1``), VAE decode, mp4 write.

    Returns {"settings", "pipeline": [ {res, length, mixer, encode_s, denoise_s, decode_s, write_s,
    total_s, shares{phase: fraction}} ]}. Runs in this process.
    """
    import tempfile

    import torch

    from lingen_cli.video import write_mp4
    from lingen_model.denoiser import build_denoiser
    from lingen_model.pipeline import LinGenPipeline
    from lingen_model.vae import CausalVideoVAE, VAEConfig

    if settings.threads:
        torch.set_num_threads(settings.threads)
    mixers = ["mate"] + (["attention"] if settings.compare == "dit" else [])
    device, dtype = torch.device(settings.device), getattr(torch, settings.dtype)
    out = []
    encoder_cache: dict[int, Any] = {}
    for mixer in mixers:
        torch.manual_seed(0)
        with torch.device(device):
            den = build_denoiser(settings.model, mixer=mixer, **settings.overrides)
        den = den.to(dtype).eval()
        c = den.config
        vae = CausalVideoVAE(VAEConfig(latent_channels=c.in_channels)).to(device).eval()
        if c.text_dim not in encoder_cache:
            if c.text_dim == 384:
                from lingen_model.text_encoder import build_text_encoder

                encoder_cache[c.text_dim] = build_text_encoder({"backend": "minilm"}, device=device)
            else:
                encoder_cache[c.text_dim] = _RandomTextEncoder(c.text_dim, settings.text_len)
        enc = encoder_cache[c.text_dim]
        for cell in cells:
            config = {"native": {"fps": cell.fps, "height": cell.height, "width": cell.width},
                      "sampling": {"steps": settings.steps, "cfg_scale": cfg_scale}}
            pipe = LinGenPipeline(den, vae, enc, config, device=device, dtype=dtype)
            frames = pipe("a red circle moving to the left on a gray background", num_frames=cell.frames,
                          height=cell.height, width=cell.width, steps=settings.steps, cfg_scale=cfg_scale, seed=0)
            tm = dict(pipe.timings)
            with tempfile.TemporaryDirectory() as d:
                s = time.perf_counter()
                write_mp4(frames, Path(d) / "clip.mp4", cell.fps)
                tm["write_s"] = time.perf_counter() - s
            total = sum(tm.values())
            out.append({"res": cell.res_label, "length": cell.label, "frames": cell.frames, "seconds": cell.seconds,
                        "mixer": mixer, "label": LABELS[mixer], **tm, "total_s": total,
                        "shares": {k[:-2]: v / total for k, v in tm.items()},
                        "text_encoder": "minilm" if c.text_dim == 384 else "random stand-in"})
    return {"settings": asdict(settings), "pipeline": out, "cfg_scale": cfg_scale}


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


# ----------------------------------------------------------------------------- command


def _wide_console(min_width: int = 132):
    """The stdout console, or one at least ``min_width`` columns wide (rich would hide columns on a narrow one)."""
    from rich.console import Console

    return console if console.width >= min_width else Console(width=min_width, highlight=False)


def _write_json(report: dict, path: Path) -> None:
    with atomic_path(Path(path), suffix=".json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


def _validate(model, compare, device, dtype, steps, repeats, warmup, batch, text_len, threads, cell_timeout, plot,
              flops_only=False, pipeline=False):
    import torch

    from lingen_cli.options import DTYPES
    from lingen_model.config import DENOISER_CONFIGS

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
    if cell_timeout is not None and cell_timeout <= 0:
        raise CLIError(f"--cell-timeout must be > 0 seconds, got {cell_timeout}")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise CLIError(f"--plot must name a .png file, got {plot}")
    return device, DTYPES[dtype]


def benchmark(
    compare: str = typer.Option("dit", "--compare", help="'dit' also times the DiT twin of the same size; 'none' only LinGen."),
    model: str = typer.Option("tiny", "--model", help="Model size: tiny | small | 4b (random weights)."),
    res: Optional[str] = typer.Option(None, "--res", help="Resolutions, comma-separated: 512 (square), 512x288, named sizes. Default: the size's native one."),
    length: Optional[str] = typer.Option(None, "--length", help="Lengths, comma-separated: 4s, 60s, 97f, named lengths. Default: the size's range (tiny: 4s..60s)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate used to turn seconds into frames (tiny: 8, 4b: 16)."),
    steps: int = typer.Option(50, "--steps", help="Denoising steps of the projected full run (and of --pipeline)."),
    repeats: int = typer.Option(3, "--repeats", help="Timed forwards per cell (median and spread)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed-for-the-median forwards first (the first one is reported as '1st call')."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: float32 on CPU, bfloat16 on CUDA)."),
    batch: int = typer.Option(1, "--batch", help="Batch per forward (2 = a classifier-free-guidance step)."),
    text_len: int = typer.Option(64, "--text-len", help="Text tokens in the context."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch.set_num_threads in each worker (default: torch's)."),
    cell_timeout: Optional[float] = typer.Option(1200.0, "--cell-timeout", help="Seconds before a cell is reported 'timeout'."),
    flops_only: bool = typer.Option(False, "--flops-only", help="Only the analytic FLOPs (no model is built; any size, no GPU needed)."),
    pipeline: bool = typer.Option(False, "--pipeline", help="Time the whole generate path (text / denoise / decode / write shares)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot (cost vs length, both mixers, ratios)."),
) -> None:
    """Compare LinGen with its DiT twin: FLOPs, latency and memory per denoising step.

    Each cell runs in a fresh worker process started with MALLOC_MMAP_THRESHOLD_,
    MALLOC_TRIM_THRESHOLD_ and OMP_WAIT_POLICY=PASSIVE (unless already set). CPU timings
    on shared machines are noisy: compare wall time with CPU time, use --repeats.
    """
    try:
        device, dtype = _validate(model, compare, device, dtype, steps, repeats, warmup, batch, text_len, threads,
                                  cell_timeout, plot, flops_only, pipeline)
        defaults = MODEL_DEFAULTS.get(model, MODEL_DEFAULTS["tiny"])
        cells = parse_cells(res or defaults["res"], length or defaults["lengths"], fps or defaults["fps"])
    except CLIError as e:
        raise fail(str(e), e.code)
    settings = BenchSettings(model=model, compare=compare, device=device, dtype=dtype, steps=steps, repeats=repeats,
                             warmup=warmup, batch=batch, text_len=text_len, threads=threads,
                             cell_timeout=cell_timeout, flops_only=flops_only)
    for note in dict.fromkeys(c.note for c in cells if c.note):
        err_console.print(f"note: {note}", highlight=False)
    started = time.perf_counter()
    if pipeline:
        report = run_pipeline_benchmark(cells, settings)
        report["machine"] = machine_info(device, threads)
        _wide_console().print(render_pipeline_table(report))
    else:
        machine = machine_info(device, threads)
        report = run_benchmark(cells, settings,
                               progress=lambda m: err_console.print(f"[dim]timing {m}…[/dim]", highlight=False))
        report["machine"] = machine
        _wide_console().print(render_table(report))
        for line in summary_lines(report):
            console.print(line, highlight=False, soft_wrap=True)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_end"] = list(os.getloadavg())
    report["wall_s"] = time.perf_counter() - started
    if json_out is not None:
        _write_json(report, json_out)
        err_console.print(f"wrote {json_out}", highlight=False)
    if plot is not None and not pipeline:
        write_plot(report, plot)
        err_console.print(f"wrote {plot}", highlight=False)
    failed = [r for r in report.get("cells", []) if r.get("status") == "error"]
    if failed:
        raise fail(f"{len(failed)} cell(s) failed, first: {failed[0].get('message')}", code=1)


def register(app: typer.Typer) -> None:
    """Add ``benchmark`` to the app."""
    app.command("benchmark")(benchmark)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker_main()
    else:
        print("usage: python -m lingen_cli.benchmark --worker  (reads a JSON spec on stdin)", file=sys.stderr)
        sys.exit(2)
