"""Rotary Major Scan (RMS) and review tokens — LinGen (arXiv 2412.09856) §3.2.

Video tokens live in canonical (t, h, w) row-major order: index = (t·H + h)·W + w.
Layer ``l`` scans them in order ``SCAN_ORDERS[l % 4]`` (the last axis varies fastest):
spatial row-major (t,h,w), spatial column-major (t,w,h), temporal row-major (h,w,t),
temporal column-major (w,h,t). ``x[:, perm]`` puts tokens in scan order and
``y[:, inverse]`` (Rev-RMS) restores the canonical order.

Review tokens: each latent frame average-pooled to r×r tokens, put in the same scan order
and prepended to the sequence, so every position of both scan directions has first seen
a summary of the whole clip.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from lingen_model.models.index_cache import index_cache

SCAN_ORDERS: tuple[tuple[str, str, str], ...] = (("t", "h", "w"), ("t", "w", "h"), ("h", "w", "t"), ("w", "h", "t"))


def scan_order(layer_idx: int) -> tuple[str, str, str]:
    """The RMS axis order of layer ``layer_idx`` (rotates with period 4)."""
    return SCAN_ORDERS[layer_idx % 4]


@index_cache(maxsize=256)
def _perm(t: int, h: int, w: int, order: tuple[str, str, str], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached per device, so the denoiser's layers do not rebuild or re-copy them every step."""
    idx = torch.arange(t * h * w).view(t, h, w)
    axes = {"t": 0, "h": 1, "w": 2}
    perm = idx.permute(*(axes[a] for a in order)).reshape(-1)
    return perm.to(device), torch.argsort(perm).to(device)


def rms_permutation(grid: tuple[int, int, int], order: tuple[str, str, str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm, inverse) LongTensors of length T·H·W for a token grid (T, H, W) and an RMS order.

    Raises ValueError for a non-positive grid or an order that is not a permutation of t,h,w.
    """
    t, h, w = (int(v) for v in grid)
    if min(t, h, w) < 1:
        raise ValueError(f"token grid must be positive (T, H, W), got {grid}")
    if sorted(order) != ["h", "t", "w"]:
        raise ValueError(f"order must be a permutation of ('t','h','w'), got {order}")
    return _perm(t, h, w, tuple(order), str(torch.device(device)) if device is not None else "cpu")


def review_tokens(x: torch.Tensor, grid: tuple[int, int, int], r: int, order: tuple[str, str, str]) -> torch.Tensor:
    """Per-frame r×r average-pooled review tokens in RMS order.

    x: B×N×D tokens in canonical order with N = T·H·W. Returns B×(T·r·r)×D (empty if r = 0).
    Frames smaller than r×r are pooled adaptively (torch ``adaptive_avg_pool2d``).
    """
    b, n, d = x.shape
    t, h, w = grid
    if n != t * h * w:
        raise ValueError(f"x has {n} tokens but grid {grid} has {t * h * w}")
    if r == 0:
        return x.new_zeros(b, 0, d)
    # each frame as a channels-last image (a view of x, no copy); the pooled frames stay channels-last
    frames = x.view(b * t, h, w, d).permute(0, 3, 1, 2)
    pooled = F.adaptive_avg_pool2d(frames, (r, r)).permute(0, 2, 3, 1).reshape(b, t * r * r, d)
    perm, _ = rms_permutation((t, r, r), order, x.device)
    return pooled[:, perm]
