"""Object-weighted flow matching: more loss weight on the latent voxels an object touches.

The shapes world's objects cover ~3–8 % of a frame. At high noise the flow-matching loss is spread
evenly over every latent voxel, so the few voxels that carry an object's outline get few of its
gradients. :func:`weight_map` turns the world's pixel masks (``ShardedBatches(object_masks=True)``)
into per-voxel weights for ``flow.flow_matching_loss(weight_map=)``. A latent voxel covers one
spatial_factor² block of pixels and, in time, the first frame alone and then ``temporal_factor``
frames each (the causal VAE's grouping; docs/design.md §3); it counts as touched if any pixel of
its block is an object pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_mask(masks: torch.Tensor, spatial_factor: int, temporal_factor: int) -> torch.Tensor:
    """Pixel masks → latent-voxel masks.

    Args:
        masks: B×1×T×H×W, 1 where an object is (any values in [0, 1]); T = 1 + temporal_factor·k,
            H and W multiples of ``spatial_factor`` (pixels).
        spatial_factor, temporal_factor: the VAE's compression (pixels, frames per latent voxel).

    Returns:
        B×1×T'×H'×W' float32 with T' = 1 + k, H' = H / spatial_factor, W' = W / spatial_factor: the
        maximum of the mask over each voxel's frames and pixels.

    Raises:
        ValueError: a shape that does not divide as above.
    """
    if masks.ndim != 5 or masks.shape[1] != 1:
        raise ValueError(f"masks must be B×1×T×H×W, got {tuple(masks.shape)}")
    b, _, t, h, w = masks.shape
    if (t - 1) % temporal_factor or h % spatial_factor or w % spatial_factor:
        raise ValueError(f"masks of {t}×{h}×{w} do not divide into latent voxels of {temporal_factor} frames "
                         f"(after the first) × {spatial_factor}² pixels")
    m = masks.float()
    first = F.max_pool3d(m[:, :, :1], (1, spatial_factor, spatial_factor))
    if t == 1:
        return first
    rest = F.max_pool3d(m[:, :, 1:], (temporal_factor, spatial_factor, spatial_factor))
    return torch.cat([first, rest], dim=2)


def weight_map(masks: torch.Tensor, spatial_factor: int, temporal_factor: int, weight: float) -> torch.Tensor:
    """Loss weights B×1×T'×H'×W': ``1 + weight · latent_mask(masks)`` (so 1 on the background,
    1 + weight on voxels an object touches). ``weight`` ≥ 0. Raises ValueError as :func:`latent_mask`
    or for a negative ``weight``."""
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    return 1.0 + float(weight) * latent_mask(masks, spatial_factor, temporal_factor)
