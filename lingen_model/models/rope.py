"""3D rotary position embedding (RoPE) over a T×H×W token grid, as in Wan 2.1.

RoPE (Su et al., "RoFormer", arXiv 2104.09864) rotates consecutive channel pairs
``(x[2i], x[2i+1])`` of every query and key head by angle ``pos · θ^(-2i/d)``, so that
``q·k`` depends on positions only through their difference. Wan 2.1 (arXiv 2503.20314;
diffusers ``WanRotaryPosEmbed``) splits the head dim ``Dh`` into three parts — width
``2·⌊Dh/6⌋`` for height and for width, the rest for time (44/42/42 at Dh = 128) — and
rotates each part by its own coordinate. The tables are computed in float64 and
stored in float32; the rotation runs in float32 whatever the activations' dtype.
"""
from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """(time, height, width) channel split of one head: h = w = 2·⌊Dh/6⌋, t = Dh − 2h.

    Raises:
        ValueError: ``head_dim`` odd or smaller than 6 (each part must hold a channel pair).
    """
    hw = 2 * (head_dim // 6)
    t = head_dim - 2 * hw
    if head_dim % 2 or hw < 2 or t < 2 or t % 2:
        raise ValueError(f"RoPE 3D needs an even head dim >= 6, got {head_dim}")
    return t, hw, hw


def rope_1d(pos: torch.Tensor, dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of integer positions ``pos`` (N,) → two N×dim float32 tensors.

    Frequencies ``θ^(-2i/dim)``, i < dim/2, each repeated twice (channel pairs), computed in
    float64 (diffusers ``get_1d_rotary_pos_embed(use_real=True, repeat_interleave_real=True)``).
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.outer(pos.to(torch.float64), freqs)
    return (ang.cos().repeat_interleave(2, dim=1).float(), ang.sin().repeat_interleave(2, dim=1).float())


def rope_3d(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0, t0: int = 0,
            device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for every token of a T×H×W grid (canonical t,h,w order).

    Returns two (T·H·W)×Dh float32 tensors. ``t0`` shifts the temporal positions to
    t0 … t0+T−1 (attention scores depend on differences only, so the output of a full
    attention is the same for any ``t0`` up to rounding).
    """
    t, h, w = grid
    dt, dh, dw = rope_axis_dims(head_dim)
    cos_t, sin_t = rope_1d(torch.arange(t0, t0 + t), dt, theta)
    cos_h, sin_h = rope_1d(torch.arange(h), dh, theta)
    cos_w, sin_w = rope_1d(torch.arange(w), dw, theta)

    def grid_table(a, b, c):
        return torch.cat([a[:, None, None].expand(t, h, w, dt), b[None, :, None].expand(t, h, w, dh),
                          c[None, None, :].expand(t, h, w, dw)], dim=-1).reshape(t * h * w, head_dim)

    return grid_table(cos_t, cos_h, cos_w).to(device), grid_table(sin_t, sin_h, sin_w).to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate every head of per-token vectors ``x`` B×N×(H·Dh) by the tables N×Dh → B×N×(H·Dh).

    Pairs ``(x[2i], x[2i+1])`` → ``(x₁cos − x₂sin, x₁sin + x₂cos)``, computed in float32
    (float32 tables promote bf16 inputs) and returned in ``x.dtype``.
    """
    b, n, d = x.shape
    xh = x.view(b, n, num_heads, d // num_heads)
    x1, x2 = xh.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[None, :, None, 0::2], sin[None, :, None, 1::2]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)
    return out.to(x.dtype).reshape(b, n, d)
