"""Carry a trained denoiser over to a new VAE (session 39, issue 14): fit the linear map between the two VAEs'
latents and fold it into the denoiser's first and last layers.

For fresh world clips (seeds 9,500,000 + i, 9 or 33 frames, 128×128 pixels), both VAEs encode the same video; the
least-squares map ``A`` (C×C, no bias; both latents are already centred by their VAE's shift) takes the old
normalised latents to the new ones voxel by voxel. The denoiser read ``x`` and predicted ``v`` in the old latents;
given new latents ``x' ≈ A x`` it now reads ``A⁻¹ x'`` and predicts ``A v``: ``patch_embed.weight ← W (A⁻¹ ⊗ I)``
and ``final_linear ← (A ⊗ I) · final_linear`` (``I`` over the ``p×p`` positions of a patch; patches are laid out
channel-major, ``Denoiser.patchify``). Exact for the clean-latent part of the input; the sampling noise, isotropic in
the new latents, reaches the carried-over model as ``A⁻¹ ε``, so a training stage follows.

    python recipes/lingen-tiny/init_new_vae.py OLD_STATE_DIR NEW_VAE_DIR OUT_RUN_DIR [--clips 64]

Writes ``denoiser.safetensors``, ``denoiser_ema.safetensors`` (both the EMA weights of ``OLD_STATE_DIR``) and
``train_state.json`` (step and schedule of the old state) to ``OUT_RUN_DIR``; prints the fit's R² and ``A``'s
condition number. Raises ValueError when the two VAEs' latent grids or channel counts differ.
"""
import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lingen_model.io.files import atomic_path, atomic_write_json
from lingen_model.shapes.clips import make_clip
from lingen_model.training.data import _to_tensor as frames_to_tensor  # uint8 T×H×W×3 → 3×T×H×W in [-1, 1]
from lingen_model.training.trainer import load_vae


def fit_latent_map(old_vae, new_vae, clips: int = 64, seed: int = 9_500_000, batch: int = 8) -> tuple[torch.Tensor, float]:
    """Least-squares ``A`` (C×C, float64) with ``new ≈ A · old`` over the latent voxels of ``clips`` world clips
    (seeds ``seed`` + i; 9 frames for even i, 33 for odd i; up to 2 objects), and the fit's R² (unitless). Raises
    ValueError when the two VAEs' latents differ in shape."""
    xtx, xty, yty, ysum, n = 0, 0, 0, 0, 0
    for lo in range(0, clips, batch):
        for frames in (9, 33):
            drawn = [make_clip(seed + i, frames, 128, 128, 8.0, max_objects=2)
                     for i in range(lo, min(clips, lo + batch)) if (i % 2 == 1) == (frames == 33)]
            if not drawn:
                continue
            video = torch.stack([frames_to_tensor(f) for f, _, _ in drawn])
            with torch.no_grad():
                old, new = old_vae.encode(video), new_vae.encode(video)
            if old.shape != new.shape:
                raise ValueError(f"the two VAEs' latents differ: {tuple(old.shape)} vs {tuple(new.shape)}")
            x = old.double().transpose(0, 1).reshape(old.shape[1], -1)
            y = new.double().transpose(0, 1).reshape(new.shape[1], -1)
            xtx, xty, yty = xtx + x @ x.T, xty + x @ y.T, yty + y @ y.T
            ysum, n = ysum + y.sum(1), n + x.shape[1]
    a = torch.linalg.solve(xtx, xty).T  # rows: new channels
    resid = torch.trace(yty - a @ xty - xty.T @ a.T + a @ xtx @ a.T)
    total = torch.trace(yty) - ysum.square().sum() / n
    return a, float(1 - resid / total)


def fold_latent_map(weights: dict[str, torch.Tensor], a: torch.Tensor, patch: int) -> dict[str, torch.Tensor]:
    """Denoiser weights (state dict) with the latent map ``a`` (C×C, ``new ≈ a · old``) folded into
    ``patch_embed`` (input ``A⁻¹``) and ``final_linear`` (output ``A``); every other tensor unchanged. Raises
    KeyError for weights without those layers, RuntimeError (torch's) for a size mismatch."""
    eye = torch.eye(patch * patch, dtype=torch.float64)
    into = torch.kron(torch.linalg.inv(a).contiguous(), eye)  # (C·p·p)², channel-major like Denoiser.patchify
    out = torch.kron(a.contiguous(), eye)
    w = dict(weights)
    w["patch_embed.weight"] = (weights["patch_embed.weight"].double() @ into).to(weights["patch_embed.weight"].dtype)
    w["final_linear.weight"] = (out @ weights["final_linear.weight"].double()).to(weights["final_linear.weight"].dtype)
    w["final_linear.bias"] = (out @ weights["final_linear.bias"].double()).to(weights["final_linear.bias"].dtype)
    return w


def write_start(out: Path, weights: dict[str, torch.Tensor], old_state: Path) -> None:
    """Make ``out`` a run dir that resumes from ``weights`` (as both ``denoiser.safetensors`` and
    ``denoiser_ema.safetensors``) at ``old_state``'s step and schedule (its ``train_state.json``). Each file goes to a
    temp file first, then is renamed: nothing half-written. Raises OSError for an unwritable ``out`` or a missing
    ``old_state/train_state.json``, json.JSONDecodeError for a malformed one."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("denoiser.safetensors", "denoiser_ema.safetensors"):
        with atomic_path(out / name) as tmp:
            save_file(weights, str(tmp))
    atomic_write_json(out / "train_state.json", json.loads((old_state / "train_state.json").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_state", type=Path)
    ap.add_argument("new_vae", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--clips", type=int, default=64)
    args = ap.parse_args()
    cfg = json.loads((args.old_state / "config.json").read_text())
    a, r2 = fit_latent_map(load_vae(args.old_state), load_vae(args.new_vae), args.clips)
    sv = torch.linalg.svdvals(a)
    print(f"latent map fit over {args.clips} clips: R² {r2:.4f}, singular values {sv.numpy().round(3)}, "
          f"condition {float(sv.max() / sv.min()):.1f}")
    weights = fold_latent_map(load_file(str(args.old_state / "denoiser.safetensors")), a, int(cfg["denoiser"]["patch_size"]))
    write_start(args.out, weights, args.old_state)


if __name__ == "__main__":
    main()
