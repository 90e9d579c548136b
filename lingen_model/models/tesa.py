"""TESA: temporal Swin attention — self-attention inside fixed 3D windows (LinGen §3.2).

Tokens of a T×H×W grid are split into non-overlapping windows of Tw×Hw×Ww tokens
(each clamped to the grid size along its axis). Shifted layers move the window grid by
half a window along every axis that has more than one window (Swin, Liu et al. 2021).
Instead of Swin's cyclic shift the grid is zero-padded — ``shift`` tokens in front and
enough behind to fill the last window — and padded keys are masked, so a token never
attends across a wrap-around seam. Window size never grows with the clip: cost O(N).

Window id of a token at coordinate c along an axis: ``(c + shift) // window``;
:func:`window_ids` gives the flat id, used by the masked-full-attention reference in tests.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lingen_model.models.layers import SelfAttention, heads, merge_heads


def window_geometry(grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool):
    """Per-axis (window, shift, front_pad, back_pad) for a token grid (T, H, W)."""
    geo = []
    for n, w in zip(grid, window):
        w = min(w, n)
        s = w // 2 if (shifted and w < n) else 0
        back = (-(n + s)) % w
        geo.append((w, s, s, back))
    return geo


def window_ids(grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool) -> torch.Tensor:
    """Flat window id of every token (canonical t,h,w order) → LongTensor (T·H·W,)."""
    geo = window_geometry(grid, window, shifted)
    ids = []
    counts = []
    for n, (w, s, _, back) in zip(grid, geo):
        ids.append((torch.arange(n) + s) // w)
        counts.append((n + s + back) // w)
    it, ih, iw = torch.meshgrid(*ids, indexing="ij")
    return ((it * counts[1] + ih) * counts[2] + iw).reshape(-1)


class TESA(SelfAttention):
    """Windowed (optionally shifted) multi-head self-attention with QK-norm.

    ``forward(x B×N×D, grid (T,H,W), shifted) → B×N×D`` with N = T·H·W in canonical order.
    """

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int, int], qk_norm: bool = True):
        super().__init__(dim, num_heads, qk_norm)
        self.window = tuple(window)

    def project(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        """Per-token q|k|v B×N×3D, computed before padding and windowing (subclasses add
        per-token steps here, e.g. Wan's QK-norm and RoPE; ``rope`` is passed through)."""
        return self.qkv(x)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], shifted: bool = False, rope=None) -> torch.Tensor:  # type: ignore[override]
        b, n, d = x.shape
        t, h, w = grid
        if n != t * h * w:
            raise ValueError(f"TESA got {n} tokens for grid {grid} ({t * h * w} expected)")
        geo = window_geometry(grid, self.window, shifted)
        (wt, _, ft, bt), (wh, _, fh, bh), (ww, _, fw, bw) = geo
        pads = (0, 0, fw, bw, fh, bh, ft, bt)
        # project before padding (padding tokens need no projection), then pad q, k, v together
        qkv = F.pad(self.project(x, rope).view(b, t, h, w, 3 * d), pads)
        valid = F.pad(x.new_ones(1, t, h, w, 1, dtype=torch.bool), pads)
        T, H, W = t + ft + bt, h + fh + bh, w + fw + bw
        nt, nh, nw = T // wt, H // wh, W // ww

        def to_windows(g: torch.Tensor) -> torch.Tensor:
            bb, c = g.shape[0], g.shape[-1]
            g = g.view(bb, nt, wt, nh, wh, nw, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
            return g.reshape(bb * nt * nh * nw, wt * wh * ww, c)

        q, k, v = (heads(u, self.num_heads) for u in to_windows(qkv).chunk(3, dim=-1))  # (B·nWin)×heads×Lw×Dh
        q, k = self.norm(q, k)
        key_ok = to_windows(valid)[:, :, 0]  # nWin×Lw (same for every batch item)
        mask = key_ok.repeat(b, 1)[:, None, None, :] if any(pads) else None
        out = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        out = out.view(b, nt, nh, nw, wt, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, T, H, W, d)
        out = out[:, ft:ft + t, fh:fh + h, fw:fw + w]
        return self.proj(out.reshape(b, n, d))
