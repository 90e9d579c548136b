"""Temporal co-denoising: one velocity for a long clip from overlapping windows of latent frames.

A denoiser trained on clips of ``window`` latent frames is evaluated on every window of a longer
latent clip (windows ``stride`` frames apart, the last one aligned to the clip's end), all windows
in ONE batched call, each at its true temporal position (``t_offset`` = its first latent frame);
the window velocities are blended frame by frame with tapered weights:

    v(z)[f] = Σ_k w[f − s_k] · v_k[f − s_k]  /  Σ_k w[f − s_k]      over windows k with s_k ≤ f < s_k + window

This is the least-squares fusion of MultiDiffusion (Bar-Tal et al. 2023, arXiv 2302.08113, §3.2)
applied along time, as in Gen-L-Video's temporal co-denoising (Wang et al. 2023, arXiv 2305.18264,
§4.1). Because neighbouring windows share ``window − stride`` frames at every sampling step, they
have to agree on where the object is in those frames, which ties the whole clip together at the
cost of ``len(starts) · window / T`` times the tokens of one pass (~1.5× at 60 s, window 9,
stride 6). The weights ``w[i] = min(i + 1, window − i)`` (a triangle) let each window speak most
in its middle, where it has context on both sides. Used by ``LinGenPipeline.denoise`` when a
request sets ``window`` (docs/design.md, "Long clips").
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """First latent frame of each window: ``0, stride, 2·stride, …`` and a last window ending at
    ``num_frames`` (so every frame is covered and every window has ``window`` frames).

    Args:
        num_frames: latent frames of the clip, ≥ 1.
        window: latent frames per window, ≥ 1.
        stride: latent frames between window starts, ``1 ≤ stride ≤ window``.

    Returns:
        Sorted distinct starts; ``[0]`` when ``num_frames ≤ window``.

    Raises:
        ValueError: a value out of range.
    """
    for name, value in (("num_frames", num_frames), ("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if stride > window:
        raise ValueError(f"stride ({stride}) must not exceed window ({window}): frames would be left out")
    if num_frames <= window:
        return [0]
    last = num_frames - window
    starts = list(range(0, last, stride))
    return starts + [last]


def window_weights(window: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Blending weights of one window, ``w[i] = min(i + 1, window − i)`` for i = 0 … window−1 (a
    triangle, peak in the middle, never zero). Shape ``(window,)``."""
    i = torch.arange(window, dtype=dtype, device=device)
    return torch.minimum(i + 1, window - i)


def default_stride(window: int) -> int:
    """Stride used when none is given: two thirds of the window (rounded), at least 1 — windows of 9
    latent frames overlap by 3."""
    return max(1, round(2 * window / 3))


def co_denoise(fn: Callable[..., Tensor], z: Tensor, t: Tensor, context: Tensor, mask: Tensor, window: int,
               stride: int | None = None, **extra: Any) -> Tensor:
    """Velocity of the whole clip ``z`` by temporal co-denoising (see the module docstring).

    Args:
        fn: the denoiser call, ``fn(z_w, t_w, context_w, mask_w, t_offset=offsets, **extra) -> v_w`` with
            ``z_w`` (n·B)×C×window×H×W, ``t_w`` (n·B), ``context_w`` (n·B)×L×D, ``mask_w`` (n·B)×L and
            ``offsets`` a list of n·B ints (each row's first latent frame); rows are window-major
            (window k's B rows at ``k·B … k·B + B − 1``).
        z: latents B×C×T×H×W (T latent frames).
        t: timesteps, shape (B,).
        context, mask: text tokens B×L×D and mask B×L.
        window: latent frames per window (the training clip length, e.g. 9 for 33 frames at 4×).
        stride: latent frames between windows (None: :func:`default_stride`).
        **extra: passed to ``fn`` (e.g. the step cache: all windows are one call, so a step cache
            sees one call per sampling step, as in a single pass).

    Returns:
        B×C×T×H×W velocity, dtype of ``fn``'s output. When ``T ≤ window`` this is exactly
        ``fn(z, t, context, mask, t_offset=[0]·B, **extra)``.

    Raises:
        ValueError: see :func:`window_starts`; ``z`` not 5-D.
    """
    if z.dim() != 5:
        raise ValueError(f"z must be B×C×T×H×W, got shape {tuple(z.shape)}")
    b, frames = z.shape[0], z.shape[2]
    stride = default_stride(window) if stride is None else stride
    starts = window_starts(frames, window, stride)
    if len(starts) == 1:
        return fn(z, t, context, mask, t_offset=[0] * b, **extra)
    n = len(starts)
    z_w = torch.cat([z[:, :, s:s + window] for s in starts], dim=0)
    v_w = fn(z_w, t.repeat(n), context.repeat(n, 1, 1), mask.repeat(n, 1),
             t_offset=[s for s in starts for _ in range(b)], **extra)
    w = window_weights(window, dtype=v_w.dtype, device=v_w.device)
    out = torch.zeros(z.shape, dtype=v_w.dtype, device=v_w.device)
    total = torch.zeros(frames, dtype=v_w.dtype, device=v_w.device)
    w5 = w.view(1, 1, window, 1, 1)
    for k, s in enumerate(starts):
        out[:, :, s:s + window].addcmul_(v_w[k * b:(k + 1) * b], w5)
        total[s:s + window] += w
    return out.div_(total.view(1, 1, frames, 1, 1))
