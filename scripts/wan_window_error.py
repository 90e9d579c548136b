#!/usr/bin/env python
"""Training-free error of TESA windows vs full attention in a Wan-style denoiser.

A converted Wan starts as "Wan with windowed attention" (MA-branch at zero). This script
measures how far the velocity of that model moves from the full-attention model (the same
weights with a window covering the grid, ``WanDenoiser.as_teacher``) for several windows,
before any distillation:

    rel. error = ‖v_window − v_full‖ / ‖v_full‖   (over the whole batch; mean of the seeds)

Model: our ``arch="wan"`` denoiser (no diffusers needed) with random weights drawn as in
tests/test_wan_denoiser.py (every parameter N(0, 1/fan_in), norm weights around 1),
``--width`` / ``--depth`` small enough for a CPU; latents N(0, I) on a ``--grid`` of
latent frames × height × width (tokens: height and width / 2); text N(0, I). Random
weights give diffuse attention — a trained Wan's attention is more local (which is what
windowed/sliding-tile attention work on Wan and HunyuanVideo exploits), so treat these
numbers as a pessimistic reference, not as the error of the real 1.3B model.

Usage::

    python scripts/wan_window_error.py [--grid 6,16,16] [--width 96] [--depth 3] [--seeds 2] [--threads 1]

Prints a Markdown table (docs/wan.md holds one run).
"""
from __future__ import annotations

import argparse
import math

import torch

from lingen_model.wan.denoiser import WanDenoiser, WanDenoiserConfig


def randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ma." in name:
                continue  # MA-branch stays as built (its out_proj is zero)
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(p.shape[-1], 1)) + (0.5 if p.dim() == 1 else 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="6,16,16", help="latent T,H,W (tokens: T, H/2, W/2)")
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--windows", default="full;3,8,8;2,4,4;2,2,2;1,8,8;6,2,2")
    args = ap.parse_args()
    t, h, w = (int(x) for x in args.grid.split(","))
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.windows.split(";"):
        window = (0, 0, 0) if spec == "full" else tuple(int(x) for x in spec.split(","))
        errs = {0.9: [], 0.5: [], 0.1: []}
        for seed in range(args.seeds):
            cfg = WanDenoiserConfig(in_channels=16, out_channels=16, width=args.width, depth=args.depth,
                                    num_heads=args.heads, ffn_dim=4 * args.width, text_dim=64, text_len=32,
                                    mixer="attention", window=window)
            torch.manual_seed(seed)
            model = WanDenoiser(cfg).eval()
            randomize(model, 1000 + seed)
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(1, 16, t, h, w, generator=g)
            ctx = torch.randn(1, 32, 64, generator=g)
            mask = torch.ones(1, 32, dtype=torch.bool)
            for tt in errs:
                time = torch.tensor([tt])
                with torch.no_grad():
                    v = model(x, time, ctx, mask)
                    with model.as_teacher():
                        ref = model(x, time, ctx, mask)
                errs[tt].append(((v - ref).norm() / ref.norm()).item())
        tokens = t * (h // 2) * (w // 2)
        win = "full grid" if window == (0, 0, 0) else "×".join(map(str, window))
        cover = 1.0 if window == (0, 0, 0) else min(window[0], t) * min(window[1], h // 2) * min(window[2], w // 2) / tokens
        rows.append((win, cover, *(sum(e) / len(e) for e in errs.values())))
    print(f"grid {t}×{h // 2}×{w // 2} tokens ({t * (h // 2) * (w // 2)}), width {args.width}, depth {args.depth}, "
          f"{args.seeds} seeds, shifted windows on odd layers\n")
    print("| TESA window (T×H×W tokens) | tokens per window / grid | rel. error t=0.9 | t=0.5 | t=0.1 |")
    print("|---|---|---|---|---|")
    for win, cover, *e in rows:
        print(f"| {win} | {cover:.3f} | " + " | ".join(f"{x:.3f}" for x in e) + " |")


if __name__ == "__main__":
    main()
