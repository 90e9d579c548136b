"""How close can LinGen's CPU step get to its DiT twin's? The matrix products alone, against the twin's step.

For each clip length, both tiny denoisers (random weights, as ``lingen benchmark`` builds them;
batch 1, 128², 8 fps, 64 text tokens, float32) run in this process on ``--threads`` torch
threads: the median wall time of a forward (no profiler), and, from ``torch.profiler``, the
self CPU time of the matrix products and attentions inside it (``PRODUCT_OPS``: mm, bmm, addmm,
the CPU flash-attention kernel, the depthwise conv). LinGen's products alone are a floor for any
rewrite that keeps them as they are and runs everything else for free; the lengths where that
floor and the full step meet the twin's step are printed (linear interpolation between lengths).
The profiler's times are its own (its overhead on ~1,500 small operations per step is why the
floor is read from the products, whose per-call overhead is small against their work).

    python scripts/product_floor.py --lengths 4,8,12,15,20 --threads 1

Set ``LINGEN_CPU_BRANCHES=off`` to keep every operation on the calling thread (the profiler
sees only that thread); the script does it unless the variable is already set.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("LINGEN_CPU_BRANCHES", "off")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from lingen_model.bench.cells import parse_cells  # noqa: E402
from lingen_model.models.config import DENOISER_CONFIGS  # noqa: E402
from lingen_model.models.denoiser import build_denoiser  # noqa: E402

PATCH = DENOISER_CONFIGS["tiny"].patch_size  # tokens per latent frame: (H'/p)·(W'/p)
PRODUCT_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm",
               "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::mkldnn_convolution")


def measure(mixer: str, latent: tuple[int, int, int], repeats: int, profiled: int) -> dict:
    """Median forward wall time and the profiler's per-forward product time (seconds) of one tiny model
    on a latent of (T', H', W') voxels (a :class:`lingen_model.bench.cells.Cell`'s ``latent``)."""
    torch.manual_seed(0)
    model = build_denoiser("tiny", mixer=mixer).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, model.config.in_channels, *latent, generator=gen)
    t = torch.rand(1, generator=gen)
    ctx = torch.randn(1, 64, model.config.text_dim, generator=gen)
    mask = torch.ones(1, 64, dtype=torch.bool)
    with torch.inference_mode():
        for _ in range(2):
            model(x, t, ctx, mask)
        times = []
        for _ in range(repeats):
            s = time.perf_counter()
            model(x, t, ctx, mask)
            times.append(time.perf_counter() - s)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(profiled):
                model(x, t, ctx, mask)
    ops = {e.key: e.self_cpu_time_total / 1e6 / profiled for e in prof.key_averages()}
    products = sum(ops.get(k, 0.0) for k in PRODUCT_OPS)
    total = sum(ops.values())
    return {"wall_s": statistics.median(times), "products_s": products, "profiled_s": total,
            "products": {k: ops[k] for k in PRODUCT_OPS if k in ops}}


def meet(lengths, a, b):
    """First length (linear interpolation) where series a falls to or below series b, else None."""
    for i in range(1, len(lengths)):
        d0, d1 = a[i - 1] - b[i - 1], a[i] - b[i]
        if d0 <= 0:
            return lengths[i - 1]
        if d1 <= 0:
            return lengths[i - 1] + (lengths[i] - lengths[i - 1]) * d0 / (d0 - d1)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="4,8,12,15,20", help="clip lengths in seconds, comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--profiled", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cells = parse_cells("128", ",".join(f"{float(s):g}s" for s in args.lengths.split(",")), 8.0)  # as lingen benchmark
    rows = []
    print(f"threads {args.threads}, batch 1, 128², 8 fps, float32; ms per forward")
    print(f"{'clip':>6} {'tokens':>7} {'LinGen':>8} {'products':>9} {'DiT':>8} {'products':>9}")
    for cell in cells:
        sec, latent_t = float(cell.label[:-1]), cell.latent[0]
        lin, dit = measure("mate", cell.latent, args.repeats, args.profiled), measure("attention", cell.latent, args.repeats, args.profiled)
        rows.append({"seconds": sec, "latent_frames": latent_t, "lingen": lin, "dit": dit})
        print(f"{sec:>5g}s {latent_t * (cell.latent[1] // PATCH) * (cell.latent[2] // PATCH):>7} {1e3 * lin['wall_s']:>8.1f} {1e3 * lin['products_s']:>9.1f} "
              f"{1e3 * dit['wall_s']:>8.1f} {1e3 * dit['products_s']:>9.1f}")
    secs = [r["seconds"] for r in rows]
    full = meet(secs, [r["lingen"]["wall_s"] for r in rows], [r["dit"]["wall_s"] for r in rows])
    floor = meet(secs, [r["lingen"]["products_s"] for r in rows], [r["dit"]["wall_s"] for r in rows])
    fmt = lambda v: "beyond the lengths run" if v is None else f"{v:.1f} s"  # noqa: E731
    print(f"latency crossover (full steps): {fmt(full)}; LinGen's products alone against the DiT step: {fmt(floor)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows, "crossover_s": full, "floor_crossover_s": floor}, f, indent=1)


if __name__ == "__main__":
    main()
