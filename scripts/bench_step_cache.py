"""Denoise time of one clip with step caching off / Δ-DiT / TaylorSeer, alternating in one process.

    python scripts/bench_step_cache.py --length 4s --rounds 3

Loads ``lingen-tiny`` once, encodes one prompt (with the CFG empty prompt), then per round runs
``LinGenPipeline.denoise`` once per cache mode (the order rotates every round, so every mode sees
the same machine state), and prints the median denoise time per mode, its ratio to ``none``, and
the number of full denoiser calls. ``OMP_WAIT_POLICY=PASSIVE`` is advised on a shared CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lingen_model.generation.flow import make_step_cache
from lingen_model.generation.pipeline import LinGenPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", default="4s", help="clip length in seconds at the native fps (e.g. 4s, 15s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="a red circle moving right on a black background")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = LinGenPipeline.from_pretrained(None, device="cpu")
    fps = pipe.native["fps"]
    frames = 1 + 4 * round(float(args.length.rstrip("s")) * fps / 4)
    steps = pipe.config["sampling"]["steps"]
    cfg = pipe.config["sampling"]["cfg_scale"]
    ctx, mask = pipe.encode_prompt([args.prompt, ""])
    noise = pipe.prepare_latents(frames, pipe.native["height"], pipe.native["width"], seed=0)
    modes = ["none", "delta", "taylor"]
    times = {m: [] for m in modes}
    full = {}
    outs = {}
    for r in range(args.rounds):
        for m in modes[r % 3:] + modes[:r % 3]:
            t0 = time.perf_counter()
            step_cache = make_step_cache(m, steps)
            outs[m] = pipe.denoise(noise, ctx[:1], mask[:1], ctx[1:], mask[1:], steps=steps, cfg_scale=cfg,
                                   cache=step_cache if step_cache is not None else "none")
            times[m].append(time.perf_counter() - t0)
            full[m] = step_cache.full_calls if step_cache is not None else steps
    base = statistics.median(times["none"])
    print(f"{args.length} ({frames} frames), {steps} Euler steps, CFG {cfg:g}, {args.threads} threads, "
          f"{args.rounds} alternating rounds")
    for m in modes:
        med = statistics.median(times[m])
        rel = ((outs[m] - outs["none"]).norm() / outs["none"].norm()).item()
        print(f"  cache={m:7s} full calls {full[m]:2d}/{steps}  denoise {med:6.1f} s  "
              f"none÷this {base / med:.2f}×  ‖latent − uncached‖/‖uncached‖ {rel:.3f}  (all: "
              + ", ".join(f"{t:.1f}" for t in times[m]) + ")")


if __name__ == "__main__":
    main()
