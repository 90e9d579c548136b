"""Does a denoiser read the direction word? A training probe (TRAINING_LOG.md, session 4).

For shapes-world clips of objects moving left / right / up / down, compare the flow-matching
loss (float32, same noise) when the caption names the true direction, the opposite one,
"standing still", or nothing (""). A model that binds the direction word to the frames has
a lower loss with the true caption than with the opposite one at high noise; a model that
only knows "moving vs still" scores both the same.

    python recipes/lingen-tiny/probe_direction.py lingen_model/weights/lingen-tiny [--clips 8]

Prints mean losses per noise level t and the gap (opposite − true), higher = better bound.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from lingen_model.geometry import frames_for_length
from lingen_model.training.data import _to_tensor
from lingen_model.generation.flow import flow_matching_loss
from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.shapes.world import sample_scene
from lingen_model.shapes.render import render

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="checkpoint directory or model name")
    ap.add_argument("--clips", type=int, default=8, help="clips (directions cycle through left/right/up/down)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--entry-prob", type=float, default=0.0,
                    help="world entry_prob of the probe clips (0: start anywhere; 1: near the edge they come from)")
    ap.add_argument("--t", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95], help="noise levels to probe")
    args = ap.parse_args()
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    fps, h, w = pipe.native["fps"], pipe.native["height"], pipe.native["width"]
    num_frames, _ = frames_for_length("4s", fps, pipe.vae.temporal_factor)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    times = tuple(args.t)
    losses: dict[str, list[list[float]]] = {k: [] for k in ("true", "opposite", "still", "empty")}
    with torch.no_grad():
        for i in range(args.clips):
            d = list(OPPOSITE)[i % 4]
            scene = sample_scene(rng, max_objects=1, motions=(d,), texture_prob=0.0, entry_prob=args.entry_prob)
            o = scene.objects[0]
            obj, bg = f"{o.color} {o.shape}", scene.background
            caps = {"true": f"a {obj} moving {d} on a {bg} background",
                    "opposite": f"a {obj} moving {OPPOSITE[d]} on a {bg} background",
                    "still": f"a {obj} standing still on a {bg} background", "empty": ""}
            frames = render(scene, num_frames, h, w, fps)
            z = pipe.vae.encode(_to_tensor(frames)[None])
            ctx, mask = pipe.encode_prompt(list(caps.values()))
            row = {k: [] for k in caps}
            for t in times:
                eps = torch.randn(z.shape, generator=gen)  # the same noise under every caption
                for j, k in enumerate(caps):
                    row[k].append(float(flow_matching_loss(pipe.denoiser, z, ctx[j:j + 1], mask[j:j + 1],
                                                           t=torch.tensor([t]), noise=eps)))
            for k in caps:
                losses[k].append(row[k])
    mean = {k: np.mean(v, axis=0) for k, v in losses.items()}
    print(f"{args.model}: {args.clips} clips (entry_prob {args.entry_prob:g}), loss per t " + " ".join(f"{t:g}" for t in times))
    for k, m in mean.items():
        print(f"  caption {k:9s}" + " ".join(f"{x:8.4f}" for x in m))
    gap = mean["opposite"] - mean["true"]
    print("  gap opposite-true" + " ".join(f"{x:8.4f}" for x in gap)
          + f"   (still-true {np.mean(mean['still'] - mean['true']):.4f})")


if __name__ == "__main__":
    main()
