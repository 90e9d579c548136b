"""``lingen benchmark --cp``: per-rank time and peak activation memory of one denoiser step with the
clip split over N context-parallel ranks (:mod:`lingen_model.models.context_parallel`), gloo on CPU.

How it measures (docs/distributed.md, "Context parallelism"):

* for each (cell, N), N fresh processes (``torch.multiprocessing`` spawn, gloo; N = 1 runs the plain
  one-process path, no collectives) build the same random denoiser of ``settings.model`` for each
  mixer (seed 0) and the same latents of the cell; each rank takes its slab of latent frames
  (:func:`lingen_model.models.context_parallel.split_frames`);
* ``fwd``: one inference forward (``torch.inference_mode``); ``train``: forward + backward of
  ``mean(v²)`` (a training step's denoiser work). Each is run ``warmup`` times, then ``repeats``
  times between barriers (the slowest rank sets the step time); wall seconds
  (``time.perf_counter``) and CPU seconds of the process (``os.times``: compute and gloo
  threads) per rank, median over the repeats;
* peak activation memory per rank: the peak bytes of live tensors created inside one more,
  untimed step, counted through torch's dispatcher (:class:`lingen_model.bench.mem_meter.LiveTensorMeter`):
  weights and inputs excluded; every op output (activations, and in ``train`` the parameter
  gradients) counted by its storage until freed.

Wall times on a machine with fewer cores than ranks measure contention, not the method: compare
the CPU seconds and the memory. A launch that fails, is killed (out of memory) or passes
``settings.cell_timeout`` gives rows with status ``error`` / ``oom`` / ``timeout``; nothing raises.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable, Optional

from lingen_model.bench.cells import BenchSettings, Cell
from lingen_model.bench.constants import LABELS
from lingen_model.errors import InputError
from lingen_model.training.distributed import free_port

#: At most this many ranks per logical core: every rank is a process holding the model and its slab.
MAX_RANKS_PER_CORE = 4
STEPS = ("fwd", "train")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_cp_degrees(text: str, latent_frames: int, cores: Optional[int] = None) -> list[int]:
    """Context-parallel degrees from ``"1,2,4"``, in the order given.

    ``latent_frames``: the fewest latent frames of the clips to split (each rank needs one);
    ``cores``: logical cores (default: those this process may run on); at most
    ``MAX_RANKS_PER_CORE`` × cores ranks.

    Raises:
        InputError: an empty list, a value that is not a whole number ≥ 1, a repeated value,
            a degree above ``latent_frames`` or above the machine's limit.
    """
    items = [x.strip() for x in str(text).split(",")]
    if not any(items):
        raise InputError("--cp needs at least one degree, e.g. --cp 1,2,4")
    limit = MAX_RANKS_PER_CORE * (cores or _cores())
    degrees: list[int] = []
    for item in items:
        try:
            n = int(item)
        except ValueError:
            raise InputError(f"--cp takes whole numbers >= 1 separated by commas, got {item!r}") from None
        if n < 1:
            raise InputError(f"--cp degrees must be >= 1, got {n}")
        if n in degrees:
            raise InputError(f"--cp lists {n} twice")
        if n > latent_frames:
            raise InputError(f"--cp {n}: the clip has {latent_frames} latent frame(s) and each rank needs at least "
                             f"one; use a longer --length or fewer ranks")
        if n > limit:
            raise InputError(f"--cp {n} is more ranks than this machine sensibly runs (at most {limit}: "
                             f"{MAX_RANKS_PER_CORE} per logical core, each rank a process)")
        degrees.append(n)
    return degrees


# ----------------------------------------------------------------------------- rank side


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _rank_main(rank: int, world: int, port: int, spec: dict, out_dir: str) -> None:
    """One rank: measure every (mixer, step) of ``spec`` and write ``rank{rank}.json`` into ``out_dir``."""
    import math

    import torch
    import torch.distributed as dist

    from lingen_model.bench.mem_meter import LiveTensorMeter
    from lingen_model.models.context_parallel import ContextParallel
    from lingen_model.models.denoiser import build_denoiser

    torch.set_num_threads(int(spec["threads"]))
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    b, text_len = int(spec["batch"]), int(spec["text_len"])
    results = {}
    for mixer in spec["mixers"]:
        torch.manual_seed(0)
        model = build_denoiser(spec["model"], mixer)
        cfg = model.config
        latents = torch.randn(b, cfg.in_channels, *spec["latent"])
        t = torch.full((b,), 0.5)
        ctx = torch.randn(b, text_len, cfg.text_dim)
        mask = torch.ones(b, text_len, dtype=torch.bool)
        cp = ContextParallel.for_clip(latents.shape[2]) if world > 1 else None
        slab = cp.slab(latents).contiguous() if cp else latents

        def fwd():
            with torch.inference_mode():
                model(slab, t, ctx, mask, cp=cp)

        def train():
            model.zero_grad(set_to_none=True)
            out = model(slab, t, ctx, mask, cp=cp)
            out.square().mean().backward()

        rec: dict[str, Any] = {"tokens": math.prod(model.token_grid(latents.shape)), "latent_frames": slab.shape[2]}
        for name, step in (("fwd", fwd), ("train", train)):
            walls, cpus = [], []
            for i in range(int(spec["warmup"]) + int(spec["repeats"])):
                if world > 1:
                    dist.barrier()
                w0, c0 = time.perf_counter(), _cpu_s()
                step()
                if world > 1:
                    dist.barrier()  # the slowest rank sets the step time
                if i >= int(spec["warmup"]):
                    walls.append(time.perf_counter() - w0)
                    cpus.append(_cpu_s() - c0)
            model.zero_grad(set_to_none=True)
            with LiveTensorMeter() as meter:
                step()
            model.zero_grad(set_to_none=True)
            rec[name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
                         "times_s": walls, "peak_bytes": meter.peak}
        results[mixer] = rec
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- parent side



def _launch(world: int, spec: dict, timeout: Optional[float]) -> tuple[Optional[list[dict]], dict]:
    """Run :func:`_rank_main` on ``world`` spawned ranks. Returns (per-rank results, {}) or (None, status)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        pc = mp.start_processes(_rank_main, args=(world, free_port(), spec, d), nprocs=world, join=False,
                                start_method="spawn")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not pc.join(timeout=0.5):
                if deadline is not None and time.monotonic() > deadline:
                    for p in pc.processes:
                        if p.is_alive():
                            p.terminate()
                    for p in pc.processes:
                        p.join()
                    return None, {"status": "timeout", "message": f"no result within --cell-timeout {timeout:g} s"}
        except mp.ProcessExitedException as e:
            if e.exit_code in (-9, 137):
                return None, {"status": "oom", "message": f"rank {e.error_index} killed by the OS (out of memory)"}
            return None, {"status": "error", "message": f"rank {e.error_index} exited with code {e.exit_code}"}
        except mp.ProcessRaisedException as e:
            lines = [l for l in str(e).strip().splitlines() if l.strip()]
            last = lines[-1].strip() if lines else type(e).__name__
            status = "oom" if "out of memory" in last.lower() or last.startswith("MemoryError") else "error"
            return None, {"status": status, "message": f"rank {e.error_index}: {last}"[:300]}
        ranks = []
        for r in range(world):
            with open(os.path.join(d, f"rank{r}.json")) as f:
                ranks.append(json.load(f))
    return ranks, {}


def run_cp_benchmark(cells: list[Cell], degrees: list[int], settings: BenchSettings,
                     progress: Optional[Callable[[str], Any]] = None) -> dict:
    """Measure one forward and one training step per (cell, degree, mixer) on spawned gloo ranks.

    ``settings``: model, compare (``dit`` adds the full-attention twin to MATE), batch, text_len,
    threads per rank (None = 1), warmup, repeats, cell_timeout (seconds per launch of N ranks);
    device must be ``cpu`` and dtype ``float32``. ``progress(message)`` is called before each launch.

    Returns {"settings", "degrees", "rows": [...]}: one row per (cell, degree, mixer, step) with
    res, width, height, length, frames, fps, latent [T', H', W'], tokens (whole clip), mixer, label,
    step (``fwd`` | ``train``), cp, status, frames_per_rank, wall_s (slowest rank; seconds),
    wall_s_per_rank, cpu_s_per_rank, cpu_s_max, cpu_s_sum, peak_bytes_per_rank, peak_bytes_max
    (bytes of live tensors created in the step); failed launches give rows with status and message.

    Raises:
        InputError: a device other than cpu or a dtype other than float32; a degree that
            :func:`parse_cp_degrees` would refuse for these cells.
    """
    if settings.device != "cpu":
        raise InputError(f"--cp runs its ranks on CPU (gloo); --device {settings.device} is not supported with it")
    if settings.dtype != "float32":
        raise InputError(f"--cp measures float32 only, got --dtype {settings.dtype}")
    parse_cp_degrees(",".join(map(str, degrees)), min(c.latent[0] for c in cells))
    mixers = ["mate"] + (["attention"] if settings.compare == "dit" else [])
    rows: list[dict] = []
    for cell in cells:
        for n in degrees:
            spec = {"model": settings.model, "mixers": mixers, "latent": list(cell.latent), "batch": settings.batch,
                    "text_len": settings.text_len, "threads": settings.threads or 1, "warmup": settings.warmup,
                    "repeats": settings.repeats}
            if progress:
                progress(f"{cell.res_label} {cell.label} on {n} rank{'s' if n > 1 else ''}")
            ranks, failure = _launch(n, spec, settings.cell_timeout)
            for mixer in mixers:
                for step in STEPS:
                    row = {"res": cell.res_label, "width": cell.width, "height": cell.height, "length": cell.label,
                           "frames": cell.frames, "fps": cell.fps, "latent": list(cell.latent), "mixer": mixer,
                           "label": LABELS[mixer], "step": step, "cp": n, "note": cell.note}
                    if ranks is None:
                        row.update(failure)
                    else:
                        per = [r[mixer][step] for r in ranks]
                        cpus, peaks = [p["cpu_s"] for p in per], [p["peak_bytes"] for p in per]
                        row.update(status="ok", tokens=ranks[0][mixer]["tokens"],
                                   frames_per_rank=[r[mixer]["latent_frames"] for r in ranks],
                                   wall_s=max(p["wall_s"] for p in per), wall_s_per_rank=[p["wall_s"] for p in per],
                                   cpu_s_per_rank=cpus, cpu_s_max=max(cpus), cpu_s_sum=sum(cpus),
                                   peak_bytes_per_rank=peaks, peak_bytes_max=max(peaks))
                    rows.append(row)
    st = asdict(settings)
    st["threads"] = settings.threads or 1
    return {"settings": st, "degrees": list(degrees), "rows": rows}
