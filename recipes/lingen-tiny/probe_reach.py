"""How far in time does a denoiser look? A training probe (TRAINING_LOG.md, session 10).

For noisy latents z at noise level t the denoiser's clean-latent prediction is
``x̂₀ = z − t·v(z, t)`` (rectified flow). Its temporal reach is the share of the sensitivity of
output latent frame k that comes from input latent frame j:

    S[k, j] = ‖∂x̂₀[k]/∂z[j]‖²_F / Σ_j' ‖∂x̂₀[k]/∂z[j']‖²_F

estimated with random projections (E‖Jᵀr‖² = ‖J‖²_F for r ~ N(0, I), Hutchinson 1989): one
backward pass per output frame and probe. Printed as the mean share at each distance |k − j|
(latent frames; one latent frame = 4 video frames = 0.5 s at 8 fps) and the share that comes
from |k − j| ≥ 4 (2 s and more away). In the shapes world an object's whole trajectory is
fixed by its first position, its direction and speed, so a denoiser that places it coherently
has to pool evidence from every frame; one whose frames listen only to their neighbours can
place the object differently in distant frames and join the two by a cross-fade (a jump).

    python recipes/lingen-tiny/probe_reach.py [MODEL] [--frames 9 17] [--t 0.95 0.9 0.7]
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch

PROMPTS = ("a purple circle moving down on a gray background", "a red square moving left on a black background",
           "a yellow triangle moving right on a dark blue background", "a green circle moving up on a gray background")


def reach_matrix(predict: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, probes: int = 2,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """T×T matrix S[k, j]: share of output frame k's sensitivity from input frame j (rows sum to 1).

    Args:
        predict: z B×C×T×H×W → prediction of the same shape (differentiable).
        z: the input point, B×C×T×H×W (gradients are taken at it; B is summed over).
        probes: random projections per output frame.
        generator: for the projections.

    Raises:
        ValueError: ``z`` not 5-D or ``probes < 1``.
    """
    if z.dim() != 5 or probes < 1:
        raise ValueError(f"need z B×C×T×H×W and probes ≥ 1, got shape {tuple(z.shape)} and {probes}")
    z = z.detach().requires_grad_(True)
    out = predict(z)
    frames = z.shape[2]
    s = torch.zeros(frames, frames, dtype=torch.float64)
    for k in range(frames):
        for _ in range(probes):
            r = torch.randn(out[:, :, k].shape, generator=generator, dtype=out.dtype)
            (g,) = torch.autograd.grad((out[:, :, k] * r).sum(), z, retain_graph=True)
            s[k] += g.double().pow(2).sum(dim=(0, 1, 3, 4))
    return s / s.sum(dim=1, keepdim=True)


def by_distance(s: torch.Tensor) -> list[float]:
    """Mean share at each distance |k − j| = 0 … T−1 of a reach matrix."""
    idx = torch.arange(s.shape[0])
    dist = (idx[:, None] - idx[None]).abs()
    return [float(s[dist == d].mean()) for d in range(s.shape[0])]


def far_share(s: torch.Tensor, near: int = 3) -> float:
    """Mean over output frames of the share from input frames more than ``near`` latent frames away."""
    idx = torch.arange(s.shape[0])
    return float((s * ((idx[:, None] - idx[None]).abs() > near)).sum() / s.shape[0])


def main() -> None:
    from lingen_model.generation.pipeline import LinGenPipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None, help="checkpoint directory or model name (default: embedded)")
    ap.add_argument("--frames", type=int, nargs="+", default=[9, 17], help="latent frames (9 = 4 s, 17 = 8 s)")
    ap.add_argument("--t", type=float, nargs="+", default=[0.95, 0.9, 0.7], help="noise levels")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    model = pipe.denoiser.float().eval()
    gen = torch.Generator().manual_seed(0)
    for frames in args.frames:
        for t in args.t:
            total = torch.zeros(frames, frames, dtype=torch.float64)
            for prompt in PROMPTS:
                ctx, mask = pipe.encode_prompt([prompt])
                for seed in range(args.seeds):
                    shape = pipe.latent_shape(1 + pipe.vae.temporal_factor * (frames - 1), pipe.native["height"],
                                              pipe.native["width"])
                    z = torch.randn(1, *shape, generator=gen)
                    tt = torch.full((1,), t)
                    total += reach_matrix(lambda u: u - t * model(u, tt, ctx, mask), z, generator=gen)
            s = total / (len(PROMPTS) * args.seeds)
            prof = " ".join(f"{x:.3f}" for x in by_distance(s))
            print(f"T={frames:3d} t={t:.2f}  share by |k−j| = 0,1,…: {prof}   from |k−j| ≥ 4: {far_share(s):.3f}")


if __name__ == "__main__":
    main()
