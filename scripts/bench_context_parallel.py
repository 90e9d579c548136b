#!/usr/bin/env python
"""Per-rank time and peak activation memory of one denoiser step with the clip split over N
context-parallel ranks (lingen_model/models/context_parallel.py), gloo on CPU.

    python scripts/bench_context_parallel.py --cp 1,2,4 --length 60s [--mixer mate,attention]

For each N, N processes (``torch.multiprocessing`` spawn, gloo) build the same random denoiser
(``--size``, default ``tiny``: the embedded model's architecture) and the same latents for a clip of
``--length`` at ``--fps`` and ``--height``×``--width`` (default: lingen-tiny's native 8 fps,
128×128); each rank takes its slab of latent frames.
Per mixer and rank it reports:

* ``fwd`` — wall and CPU seconds of one inference forward (``torch.inference_mode``; median of
  ``--repeats`` after one warm-up); CPU time is the process's (compute and gloo threads);
* ``train`` — the same for a forward + backward (a training step's denoiser work);
* peak activation memory of each: the peak bytes of live tensors created inside the step,
  counted through torch's dispatcher (``tests/mem_meter.LiveTensorMeter``: weights and inputs
  excluded, every op output counted by its storage until freed), in a separate untimed pass.

N = 1 runs the plain one-process path (no collectives). Wall times on a machine with fewer cores
than ranks measure contention, not the method: compare the CPU seconds and the memory.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out_dir: str) -> None:
    import torch.distributed as dist

    from mem_meter import LiveTensorMeter

    from lingen_model.geometry import parse_length
    from lingen_model.models.context_parallel import ContextParallel
    from lingen_model.models.denoiser import build_denoiser

    torch.set_num_threads(args.threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    unit, value = parse_length(args.length)
    frames = int(value) if unit == "f" else 1 + round(value * args.fps)
    height, width = args.height, args.width
    latent_t = 1 + (frames - 1) // 4
    results = {}
    for mixer in args.mixer.split(","):
        torch.manual_seed(0)
        model = build_denoiser(args.size, mixer)
        cfg = model.config
        latents = torch.randn(1, cfg.in_channels, latent_t, height // 8, width // 8)
        t = torch.full((1,), 0.5)
        ctx = torch.randn(1, 16, cfg.text_dim)
        mask = torch.ones(1, 16, dtype=torch.bool)
        cp = ContextParallel.for_clip(latent_t) if world > 1 else None
        slab = cp.slab(latents).contiguous() if cp else latents

        def fwd():
            with torch.inference_mode():
                model(slab, t, ctx, mask, cp=cp)

        def train():
            model.zero_grad(set_to_none=True)
            out = model(slab, t, ctx, mask, cp=cp)
            out.square().mean().backward()

        rec = {"tokens_total": latent_t * (height // 16) * (width // 16), "latent_frames": slab.shape[2]}
        for name, step in (("fwd", fwd), ("train", train)):
            if name not in args.steps.split(","):
                continue
            walls, cpus = [], []
            for i in range(1 + args.repeats):
                if world > 1:
                    dist.barrier()
                w0, c0 = time.perf_counter(), _cpu_s()
                step()
                if world > 1:
                    dist.barrier()  # the slowest rank sets the step time
                if i:
                    walls.append(time.perf_counter() - w0)
                    cpus.append(_cpu_s() - c0)
            model.zero_grad(set_to_none=True)
            with LiveTensorMeter() as meter:
                step()
            model.zero_grad(set_to_none=True)
            rec[name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "peak_bytes": meter.peak}
        results[mixer] = rec
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import torch.multiprocessing as mp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cp", default="1,2,4", help="context-parallel degrees, comma-separated")
    ap.add_argument("--length", default="60s", help="clip length: seconds at --fps (60s) or frames (481f)")
    ap.add_argument("--size", default="tiny", help="model size of the registry (random weights)")
    ap.add_argument("--mixer", default="mate,attention", help="mate, attention or both")
    ap.add_argument("--steps", default="fwd,train", help="fwd, train or both")
    ap.add_argument("--fps", type=float, default=8.0, help="frames per second (8: lingen-tiny's native)")
    ap.add_argument("--height", type=int, default=128, help="pixels (128: lingen-tiny's native)")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args()
    rows = []
    for n in (int(v) for v in args.cp.split(",")):
        with tempfile.TemporaryDirectory() as d:
            mp.spawn(_worker, args=(n, _free_port(), args, d), nprocs=n, join=True)
            ranks = [json.load(open(os.path.join(d, f"rank{r}.json"))) for r in range(n)]
        for mixer in ranks[0]:
            for step in ("fwd", "train"):
                if step not in ranks[0][mixer]:
                    continue
                per = [r[mixer][step] for r in ranks]
                rows.append({"mixer": mixer, "step": step, "cp": n, "tokens": ranks[0][mixer]["tokens_total"],
                             "frames_per_rank": [r[mixer]["latent_frames"] for r in ranks],
                             "wall_s": max(p["wall_s"] for p in per), "cpu_s_max": max(p["cpu_s"] for p in per),
                             "cpu_s_sum": sum(p["cpu_s"] for p in per),
                             "peak_mib_max": max(p["peak_bytes"] for p in per) / 2**20})
    print(f"{'mixer':10} {'step':5} {'cp':>2} {'tokens':>6} {'frames/rank':>14} {'wall s':>7} "
          f"{'CPU s/rank':>10} {'CPU s all':>9} {'peak act MiB/rank':>17}")
    for r in rows:
        fr = "+".join(map(str, r["frames_per_rank"]))
        print(f"{r['mixer']:10} {r['step']:5} {r['cp']:>2} {r['tokens']:>6} {fr:>14} {r['wall_s']:>7.2f} "
              f"{r['cpu_s_max']:>10.2f} {r['cpu_s_sum']:>9.2f} {r['peak_mib_max']:>17.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
