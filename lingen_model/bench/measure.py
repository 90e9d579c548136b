"""Measure one benchmark cell in a fresh worker process (``python -m lingen_model.bench.measure``), and run a
whole benchmark: how latency and peak memory are taken is below.

How it measures (honest on a shared machine):

* every (cell, mixer) runs in a **fresh worker process** (``python -m
  lingen_model.bench.measure``) with random weights; the worker gets
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
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from lingen_model.bench.cells import BenchSettings, Cell
from lingen_model.bench.constants import LABELS, RESULT_TAG, WORKER_ENV
from lingen_model.bench.report import _crossovers, _fits, _ratios

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

    from lingen_model.models.denoiser import build_denoiser

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
        from lingen_model.models.ssd import select_backend

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
        proc = subprocess.run([sys.executable, "-m", "lingen_model.bench.measure"], input=json.dumps(spec),
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

    from lingen_model.models.denoiser import build_denoiser, count_parameters

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


def run_benchmark(cells: list[Cell], settings: BenchSettings, progress: Optional[Any] = None,
                  isolate: bool = True) -> dict:
    """Measure every (cell, mixer) and return the report dict (``cells``, ``fits``, ``crossover``, …).

    ``isolate=False`` measures in this process (tests/debugging; memory numbers then include
    earlier cells). ``progress(message)`` is called before each measurement.
    """
    from lingen_model.bench.flops import denoiser_flops
    from lingen_model.models.config import get_config

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


if __name__ == "__main__":  # the worker: a JSON spec on stdin, one tagged JSON result line on stdout
    _worker_main()
