#!/usr/bin/env python
"""Scaling check of the core issue: is LinGen linear and its DiT twin quadratic, on this CPU?

For the ``tiny`` config at the embedded model's latent size (16×16 latent, patch 2 →
64 tokens per latent frame) it times one forward at N, 4N and 16N tokens (N = 1,024 by
default: 16, 64 and 256 latent frames) for both mixers and prints:

* forward time per token (median of ``--repeats``, after a warm-up) and peak memory
  (RSS high-water mark of a fresh worker process; see ``lingen_model/bench/measure.py``);
* the analytic FLOPs per forward (``lingen_model.bench.flops``, formulas in its docstring),
  cross-checked against ``torch.utils.flop_counter.FlopCounterMode`` on the torch scan
  path (MATH attention backend, whose matmuls the counter sees) within 10%, at N and 4N
  (also 16N with ``--check-all``; the DiT's counted run then materialises 16N² scores).

Pass criteria (exit code 0 / 1): LinGen's time per token stays within 1.3× across the
three sizes; the DiT's grows by more than 1.3× from N to 16N; every FLOP cross-check is
within 10%. The time criteria are judged on the process's CPU time per forward
(``time.process_time``: work done by our threads), and also printed for wall-clock time.
On a machine shared with other jobs the wall clock also counts the time our threads
waited for a core, which grows with the length of the forward and the load of the
neighbours; on a quiet machine the two agree (with one thread) and both must pass.

Each timing runs in a fresh worker process started with ``MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=1073741824 OMP_WAIT_POLICY=PASSIVE`` (set by the benchmark module),
so nothing needs exporting by hand. Usage::

    python scripts/bench_scaling.py [--base-tokens 1024] [--repeats 3] [--threads 2] [--json out.json]

The same measurement with more lengths, plots and JSON is ``lingen benchmark``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LIMIT_FLAT = 1.3
FLOP_TOL = 0.10


def counted_flops(model_size: str, mixer: str, latent: tuple[int, int, int], text_len: int) -> int:
    """FLOPs of one forward as FlopCounterMode counts them (torch scan backend, MATH SDPA)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from lingen_model.models.denoiser import build_denoiser

    os.environ["LINGEN_SCAN_BACKEND"] = "torch"
    torch.manual_seed(0)
    model = build_denoiser(model_size, mixer=mixer).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, model.config.in_channels, *latent, generator=g)
    ctx = torch.randn(1, text_len, model.config.text_dim, generator=g)
    mask = torch.ones(1, text_len, dtype=torch.bool)
    with sdpa_kernel(SDPBackend.MATH), torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x, torch.rand(1, generator=g), ctx, mask)
    return fc.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-tokens", type=int, default=1024, help="N (rounded to whole latent frames of 64 tokens)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in the workers")
    ap.add_argument("--text-len", type=int, default=64)
    ap.add_argument("--check-all", action="store_true", help="FlopCounterMode cross-check at 16N too (slow, memory-hungry)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.base_tokens < 64 or args.repeats < 1:
        ap.error("--base-tokens must be >= 64 and --repeats >= 1")

    from lingen_model.bench.measure import run_worker
    from lingen_model.environment import machine_facts as machine_info
    from lingen_model.models.config import get_config
    from lingen_model.bench.flops import denoiser_flops

    per_frame = 8 * 8  # 16×16 latent, patch 2
    frames = [max(1, round(args.base_tokens / per_frame)) * k for k in (1, 4, 16)]
    rows = []
    started = time.perf_counter()
    for t in frames:
        latent = (t, 16, 16)
        for mixer in ("mate", "attention"):
            spec = {"model": "tiny", "mixer": mixer, "latent": list(latent), "batch": 1, "text_len": args.text_len,
                    "device": "cpu", "dtype": "float32", "threads": args.threads, "warmup": 1,
                    "repeats": args.repeats, "overrides": {}}
            print(f"timing {mixer:9s} at {t * per_frame:6d} tokens …", file=sys.stderr, flush=True)
            res = run_worker(spec)
            est = denoiser_flops(get_config("tiny", mixer), latent, 1, args.text_len).total
            row = {"mixer": mixer, "tokens": t * per_frame, "latent_frames": t, "analytic_flops": est, **res}
            if t != frames[-1] or args.check_all:
                row["counted_flops"] = counted_flops("tiny", mixer, latent, args.text_len)
                row["flop_rel_err"] = abs(est - row["counted_flops"]) / row["counted_flops"]
            if res.get("status") == "ok":
                row["us_per_token"] = res["median_s"] / row["tokens"] * 1e6
                row["cpu_us_per_token"] = res["cpu_median_s"] / row["tokens"] * 1e6
            rows.append(row)

    print(f"\ntiny on CPU, one forward (batch 1, {args.text_len} text tokens), median of {args.repeats}:")
    print(f"{'mixer':8s} {'tokens':>7s} {'s/forward':>10s} {'µs/token':>9s} {'spread':>7s} {'CPU µs/tok':>10s} {'peak MiB':>9s} "
          f"{'GFLOP (analytic)':>17s} {'GFLOP (counted)':>16s} {'err':>6s}")
    for r in rows:
        counted = f"{r['counted_flops'] / 1e9:16.2f}" if "counted_flops" in r else f"{'–':>16s}"
        err = f"{100 * r['flop_rel_err']:5.2f}%" if "flop_rel_err" in r else f"{'–':>6s}"
        if r.get("status") == "ok":
            print(f"{'LinGen' if r['mixer'] == 'mate' else 'DiT':8s} {r['tokens']:7d} {r['median_s']:10.3f} "
                  f"{r['us_per_token']:9.1f} {100 * r['spread']:6.1f}% {r['cpu_us_per_token']:10.1f} "
                  f"{r['peak_memory_bytes'] / 2**20:9.1f} "
                  f"{r['analytic_flops'] / 1e9:17.2f} {counted} {err}")
        else:
            print(f"{r['mixer']:8s} {r['tokens']:7d} {r.get('status')}: {r.get('message')}")

    ok = True
    verdicts = []
    for key, clock in (("cpu_us_per_token", "CPU time"), ("us_per_token", "wall clock")):
        lin = [r[key] for r in rows if r["mixer"] == "mate" and key in r]
        dit = [r[key] for r in rows if r["mixer"] == "attention" and key in r]
        if len(lin) != 3 or len(dit) != 3:
            verdicts.append(f"[{clock}] not all sizes measured: FAIL")
            ok = False
            continue
        flat, growth = max(lin) / min(lin), dit[-1] / dit[0]
        good = flat <= LIMIT_FLAT and growth > LIMIT_FLAT
        verdicts.append(f"[{clock}] LinGen µs/token max/min over N..16N = {flat:.2f} (≤ {LIMIT_FLAT}); "
                        f"DiT µs/token 16N/N = {growth:.2f} (> {LIMIT_FLAT}): {'PASS' if good else 'FAIL'}"
                        + ("" if clock == "CPU time" else "  (informational: includes waiting for shared cores)"))
        if clock == "CPU time":
            ok &= good
    errs = [r["flop_rel_err"] for r in rows if "flop_rel_err" in r]
    good = bool(errs) and max(errs) <= FLOP_TOL
    verdicts.append(f"analytic vs FlopCounterMode: max error {100 * max(errs):.2f}% (≤ 10%): {'PASS' if good else 'FAIL'}")
    ok &= good
    print("\n" + "\n".join(verdicts))
    wall = time.perf_counter() - started
    print(f"wall time {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info("cpu", args.threads), "rows": rows,
                                         "verdicts": verdicts, "wall_s": wall}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
