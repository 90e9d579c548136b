"""TESA: temporal Swin attention — self-attention inside fixed 3D windows (LinGen §3.2).

Tokens of a T×H×W grid are split into non-overlapping windows of Tw×Hw×Ww tokens
(each clamped to the grid size along its axis). Shifted layers move the window grid by
half a window along every axis that has more than one window (Swin, Liu et al. 2021).
The windows are those of the grid zero-padded with ``shift`` tokens in front and enough
behind to fill the last window, so a token never attends across a wrap-around seam.
Window size never grows with the clip: cost O(N).

Computed as Swin computes it (§3.2, "efficient batch computation for shifted
configuration"): the shifted grid is rolled cyclically into ⌈n/w⌉ windows per axis, so a
shifted layer runs as many window slots as an unshifted one (not the padded grid's
⌈(n+shift)/w⌉), and a mask keeps each token to the tokens of its own (padded-grid) window.

Window id of a token at coordinate c along an axis: ``(c + shift) // window``;
:func:`window_ids` gives the flat id, used by the masked-full-attention reference in tests.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from lingen_model.models.index_cache import index_cache
from lingen_model.models.layers import SelfAttention, merge_heads


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
        return self.proj(self.attend(*self.project_heads(x, rope), grid, shifted))

    def project_heads(self, x: torch.Tensor, rope=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token q, k, v, each B×N×heads×Dh (q and k QK-normalised): everything before windows."""
        b, n, d = x.shape
        nh = self.num_heads
        q, k, v = self.project(x, rope).view(b, n, 3, nh, d // nh).unbind(2)
        q, k = self.norm(q, k)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int, int],
               shifted: bool) -> torch.Tensor:
        """Window attention of q, k, v (each B×N×h×Dh over the whole grid, any number of heads h)
        → B×N×(h·Dh) in canonical order, before the output projection (the mixer's sequence op)."""
        b, n, nh, dh = v.shape
        d = nh * dh
        slots, key_ok, allowed = window_layout(grid, self.window, shifted, v.device)
        nwin, lw = key_ok.shape
        # padding needs no projection or QK-norm (its q, k, v are zeros): scatter the real
        # tokens' q, k, v into their window slots in one buffer, zeroed only if padded
        padded = nwin * lw != n
        buf = (v.new_zeros if padded else v.new_empty)(3, b, nwin * lw, d)  # autocast: the projection's dtype
        for i, u in enumerate((q, k, v)):
            buf[i].index_copy_(1, slots, u.reshape(b, n, d).to(buf.dtype))
        q, k, v = (u.view(b * nwin, lw, nh, dh).transpose(1, 2) for u in buf)  # (B·nWin)×heads×Lw×Dh
        mask = None if allowed is None else allowed[None, :, None].expand(b, -1, 1, -1, -1).reshape(b * nwin, 1, lw, lw)
        out = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))  # (B·nWin)×Lw×D
        return out.view(b, nwin * lw, d).index_select(1, slots)


@index_cache(maxsize=64)
def _window_layout_cpu(grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool):
    geo = window_geometry(grid, window, shifted)
    pos, orig, counts = [], [], []
    for n, (w, s, _, back) in zip(grid, geo):
        m = -(-n // w)  # windows along the axis after the cyclic roll
        c = torch.arange(n) + s  # coordinate in the padded grid (``s`` tokens of front padding)
        pos.append(c % (m * w))  # rolled: the tail past m·w wraps to the front slots
        orig.append(c // w)  # window along the axis in the padded grid
        counts.append(m)
    (pt, ph, pw), (ot, oh, ow) = (torch.meshgrid(*a, indexing="ij") for a in (pos, orig))
    (wt, *_), (wh, *_), (ww, *_) = geo
    lw = wt * wh * ww
    win = ((pt // wt) * counts[1] + ph // wh) * counts[2] + pw // ww
    slots = (win * lw + ((pt % wt) * wh + ph % wh) * ww + pw % ww).reshape(-1)
    nslots = counts[0] * counts[1] * counts[2] * lw
    key_ok = torch.zeros(nslots, dtype=torch.bool)
    key_ok[slots] = True
    window_of = torch.full((nslots,), -1, dtype=torch.long)  # padded-grid window of each slot's token
    window_of[slots] = ((ot * (grid[1] + 1) + oh) * (grid[2] + 1) + ow).reshape(-1)
    window_of, key_ok = window_of.view(-1, lw), key_ok.view(-1, lw)
    # a real query sees the real keys of its own window; an empty slot's query sees every real key
    # of its slot window (its output is dropped; a row with no key would be NaN, also in backward)
    allowed = ((window_of[:, :, None] == window_of[:, None, :]) | ~key_ok[:, :, None]) & key_ok[:, None, :]
    return slots, key_ok, (None if bool(allowed.all()) else allowed)


def window_layout(grid: tuple[int, int, int], window: tuple[int, int, int], shifted: bool,
                  device: torch.device | str = "cpu"):
    """Where each token sits in the window slots: ``(slots (T·H·W,), key_ok nWin×Lw, allowed nWin×Lw×Lw or None)``.

    Token i (canonical t,h,w order) goes to flat slot ``window · Lw + position in window``
    (Lw = Tw·Hw·Ww; windows and positions in t,h,w order) of the cyclically rolled grid
    (⌈n/w⌉ windows per axis; module docstring). ``key_ok`` is False at empty slots;
    ``allowed[w, i, j]`` says whether slot i of window w may attend to slot j (same padded-grid
    window, real key), None when every slot may attend to every slot. Cached per
    (grid, window, shifted).
    """
    slots, key_ok, allowed = _window_layout_cpu(tuple(grid), tuple(window), bool(shifted))
    return slots.to(device), key_ok.to(device), None if allowed is None else allowed.to(device)

