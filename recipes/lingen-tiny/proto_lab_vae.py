"""Prototype (session 39, issue 14): a VAE whose first latent channels are tied to CIELAB colour.

``probe_latent_contrast.py`` (session 38) found the stage-1b VAE drawing green and cyan objects on gray ~15× more
faintly in its latents than white ones (object contrast 0.44–0.52 against 5.9–7.3, units of the sampling noise's
std), and no linear mix of its 8 channels lifts them past ~0.65 at equal signal power (session 39). CIELAB
(CIE 1976 L*a*b*, D65 white) spaces colours by how far apart they look: green (40, 190, 64) lies ΔE 83 from gray
(118, 118, 118), white 45. This prototype adds to the VAE loss

    lab_weight · mean((μ[:, :3] − lab_target)²) + free_weight · mean(μ[:, 3:]²)

with ``μ`` the posterior mean (raw latent scale) and ``lab_target`` the clip's L*, a*, b* averaged over each latent
voxel's pixels (``fs×fs`` pixels; frame 0 alone for latent frame 0 and ``ft`` frames for each later one, as the
causal encoder groups them), centred (L* − 50) and divided by ``LAB_SCALE``. Ties the first three channels to a
space where every object colour stands apart from every background. The other channels stay free for what colour
does not say (edges, texture) but are kept small (the second term): the latents are normalised by their overall std,
so free channels as large as the stage-1b VAE's (raw std 1–1.8 after a first try with targets of std ~0.3) would
again leave green on gray ~10× fainter than white.

    python recipes/lingen-tiny/proto_lab_vae.py train recipes/lingen-tiny/vae-lab.yaml

``LAB_WEIGHT`` / ``LAB_SCALE`` / ``FREE_WEIGHT`` (environment) override the anchor's weight (default 0.2), its scale
(default 12.5 L*a*b* units per raw latent unit: targets of std ~1.5) and the free channels' weight (default 0.01).
Raises ValueError for a non-positive weight or scale or a negative free weight.
"""
import functools
import os
import sys

import torch
import torch.nn.functional as F

import lingen_model.models.vae as vae_module
from lingen_model.shapes.judge import srgb_to_lab as judge_srgb_to_lab

LAB_WEIGHT = float(os.environ.get("LAB_WEIGHT", "0.2"))
LAB_SCALE = float(os.environ.get("LAB_SCALE", "12.5"))
FREE_WEIGHT = float(os.environ.get("FREE_WEIGHT", "0.01"))


def srgb_to_lab(video: torch.Tensor) -> torch.Tensor:
    """CIELAB of sRGB video: ``video`` B×3×… in [-1, 1] → float64 B×3×… holding L* (0–100), a*, b* (about ±128),
    D65 white: the judge's ``srgb_to_lab`` (IEC 61966-2-1, CIE 15) with the channels first. Raises ValueError when
    dim 1 is not 3."""
    if video.dim() < 2 or video.shape[1] != 3:
        raise ValueError(f"expected B×3×… video, got shape {tuple(video.shape)}")
    rgb = ((video.detach().double().cpu() + 1) * 127.5).clamp(0, 255).movedim(1, -1).numpy()
    return torch.from_numpy(judge_srgb_to_lab(rgb)).movedim(-1, 1).to(video.device)


def lab_targets(video: torch.Tensor, spatial_factor: int, temporal_factor: int, scale: float = LAB_SCALE) -> torch.Tensor:
    """Latent-grid colour targets B×3×(1 + (T−1)/ft)×(H/fs)×(W/fs) for ``video`` B×3×T×H×W in [-1, 1]: per latent
    voxel the mean over its pixels of (L* − 50, a*, b*) / ``scale`` (latent frame 0 = frame 0, latent frame k ≥ 1 =
    frames ft·(k−1)+1 … ft·k). Raises ValueError when T ≠ 1 + ft·k or H, W are not multiples of fs."""
    b, _, t, h, w = video.shape
    if (t - 1) % temporal_factor or h % spatial_factor or w % spatial_factor:
        raise ValueError(f"video {tuple(video.shape)} does not fit the latent grid (fs {spatial_factor}, ft {temporal_factor})")
    lab = srgb_to_lab(video)
    lab[:, 0] -= 50
    pooled = F.avg_pool3d(lab, (1, spatial_factor, spatial_factor))
    first = pooled[:, :, :1]
    rest = pooled[:, :, 1:].reshape(b, 3, (t - 1) // temporal_factor, temporal_factor, *pooled.shape[-2:]).mean(3)
    return (torch.cat([first, rest], dim=2) / scale).float()


def lab_anchor(mean: torch.Tensor, video: torch.Tensor, spatial_factor: int, temporal_factor: int,
               scale: float = LAB_SCALE) -> torch.Tensor:
    """Scalar mean squared distance between the first three channels of ``mean`` (B×C×T'×h×w, raw latent scale) and
    :func:`lab_targets` of ``video``. Raises ValueError for C < 3 or a grid that does not match."""
    target = lab_targets(video, spatial_factor, temporal_factor, scale).to(mean.dtype)
    if mean.shape[1] < 3 or mean.shape[2:] != target.shape[2:]:
        raise ValueError(f"latents {tuple(mean.shape)} do not match the colour targets {tuple(target.shape)}")
    return (mean[:, :3] - target).square().mean()


def install(weight: float = LAB_WEIGHT, scale: float = LAB_SCALE, free_weight: float = FREE_WEIGHT) -> None:
    """Patch ``vae_loss`` (the trainer imports it at each step) to add ``weight ·`` :func:`lab_anchor` ``+
    free_weight · mean(μ[:, 3:]²)`` and report them as ``lab`` and ``free`` in the step stats. Raises ValueError for
    ``weight`` or ``scale`` ≤ 0 or ``free_weight`` < 0; the patched loss raises what :func:`lab_anchor` raises."""
    if not (weight > 0 and scale > 0 and free_weight >= 0):
        raise ValueError(f"LAB_WEIGHT and LAB_SCALE must be > 0 and FREE_WEIGHT >= 0, got {weight}, {scale}, {free_weight}")
    original = vae_module.vae_loss

    @functools.wraps(original)
    def vae_loss(vae, video, *args, **kwargs):
        seen = []
        encode = vae.encode_distribution
        own = vae.__dict__.get("encode_distribution")  # an instance-level override to put back afterwards

        def capture(*a, **k):  # keeps the posterior mean of the loss's own encode (no second pass)
            out = encode(*a, **k)
            seen.append(out[0])
            return out

        vae.encode_distribution = capture
        try:
            loss, stats = original(vae, video, *args, **kwargs)
        finally:
            if own is None:
                del vae.encode_distribution
            else:
                vae.encode_distribution = own
        anchor = lab_anchor(seen[-1], video, vae.spatial_factor, vae.temporal_factor, scale)
        free = seen[-1][:, 3:].square().mean()
        extra = weight * anchor + free_weight * free
        stats = dict(stats, lab=float(anchor.detach()), free=float(free.detach()), loss=stats["loss"] + float(extra.detach()))
        return loss + extra, stats

    vae_module.vae_loss = vae_loss


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
