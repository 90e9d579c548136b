"""Where does a denoiser put the object from pure noise? A training probe (TRAINING_LOG.md, session 5).

At t = 1 the flow-matching prediction is ``x̂₀ = z − v(z, 1)``: the caption alone must place the
object. For "a white circle / red square moving {left, right, up, down}" (4 noise seeds each),
decode x̂₀ and print the brightness-weighted centroid of what differs from the background in
the first 4 frames ("start") and its shift to the last 4 frames. A model that binds the
direction word starts a "moving right" object on the left and shifts it right. A rough
measure: the centroid of a blurred mean image.

    python recipes/lingen-tiny/probe_t1.py lingen_model/weights/lingen-tiny [--t 1.0]
"""
from __future__ import annotations

import argparse

import torch

from lingen_model.geometry import frames_for_length
from lingen_model.generation.pipeline import LinGenPipeline


def centroids(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """frames B×3×T×H×W in [-1, 1] → per-frame centroids (x, y) in pixels, each B×T, weighted
    by the squared distance of each pixel from the clip's median background colour."""
    background = frames.flatten(2).median(dim=-1).values[:, :, None, None, None]
    weight = (frames - background).abs().sum(1) ** 2  # B×T×H×W
    h, w = weight.shape[-2:]
    total = weight.sum((-1, -2)).clamp_min(1e-12)
    cx = (weight.sum(-2) * torch.arange(w, dtype=weight.dtype)).sum(-1) / total
    cy = (weight.sum(-1) * torch.arange(h, dtype=weight.dtype)).sum(-1) / total
    return cx, cy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="checkpoint directory or model name")
    ap.add_argument("--t", type=float, default=1.0, help="noise level of the prediction (1 = pure noise)")
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    fps, h, w = pipe.native["fps"], pipe.native["height"], pipe.native["width"]
    num_frames, _ = frames_for_length("4s", fps, pipe.vae.temporal_factor)
    for d in ("left", "right", "up", "down"):
        caps = [f"a white circle moving {d} on a black background", f"a red square moving {d} on a gray background"]
        ctx, mask = pipe.encode_prompt(caps)
        clips = []
        with torch.no_grad():
            for seed in range(args.seeds):
                z = pipe.prepare_latents(num_frames, h, w, seed=seed, batch=len(caps))
                t = torch.full((len(caps),), args.t)
                x0 = z - t.view(-1, 1, 1, 1, 1) * pipe.denoiser(z, t, ctx, mask)
                clips.append(pipe.vae.decode(x0))
        cx, cy = centroids(torch.cat(clips).float())
        print(f"{d:6s} start x {cx[:, :4].mean():5.1f} px  y {cy[:, :4].mean():5.1f} px   shift to the end: "
              f"x {(cx[:, -4:].mean(1) - cx[:, :4].mean(1)).mean():+6.1f} px  y {(cy[:, -4:].mean(1) - cy[:, :4].mean(1)).mean():+6.1f} px")


if __name__ == "__main__":
    main()
