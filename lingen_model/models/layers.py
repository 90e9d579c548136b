"""Building blocks shared by the LinGen denoiser and its DiT twin.

RMSNorm (Zhang & Sennrich 2019), the gated RMSNorm of Mamba2, SwiGLU FFN (Shazeer 2020),
multi-head attention with QK-norm (self and masked cross), factorised 3D sin-cos
positional embeddings and the sinusoidal timestep embedding (DDPM / DiT).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim: ``x / rms(x) · weight``. Input ...×D → ...×D."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x) * self.weight if self.weight is not None else self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x / rms(x)`` over the last dim, without the weight: ...×D → ...×D. The mean square
        comes from one ``vector_norm`` reduction (one pass over x; the per-row arithmetic is on
        the ...×1 result)."""
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in ≥ fp32
        ms = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).square().div_(x.shape[-1])
        return x * ms.add_(self.eps).rsqrt_().to(x.dtype)


class GatedRMSNorm(RMSNorm):
    """Mamba2's output norm: ``RMSNorm(y · SiLU(z))`` (mamba_ssm ``RMSNormGated``, norm_before_gate=False).

    ``y``, ``z``: ...×D → ...×D.
    """

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(y * F.silu(z))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward: ``W2 (SiLU(W1 x) ⊙ W3 x)``. Input B×N×D → B×N×D."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(a) * b)


def per_token(v: torch.Tensor) -> torch.Tensor:
    """A modulation vector broadcast over the tokens: B×D → B×1×D; B×T×1×D (one per latent frame,
    broadcast over that frame's tokens: per-frame timesteps) as it is."""
    return v[:, None] if v.dim() == 2 else v


def _by_frame(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x B×N×D as B×T×(N/T)×D when ``v`` is per frame (B×T×1×D; tokens in canonical t, h, w order),
    else as it is."""
    return x.reshape(x.shape[0], v.shape[1], -1, x.shape[-1]) if v.dim() == 4 else x


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x·(1 + scale) + shift``; x B×N×D, shift/scale B×D (one per sample) or
    B×T×1×D (one per latent frame, for per-frame timesteps: broadcast over the frame's N/T tokens,
    never copied per token); one fused multiply-add. Returns B×N×D. Source: adaLN of DiT (Peebles &
    Xie 2023, §3.2). Raises RuntimeError (torch's reshape) when N is not a multiple of T."""
    return torch.addcmul(per_token(shift), _by_frame(x, shift), 1 + per_token(scale)).reshape(x.shape)


def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x + gate·y`` (adaLN's gated residual) by one fused multiply-add; x, y B×N×D, gate B×D or
    B×T×1×D as in :func:`modulate`. Returns B×N×D. Source: adaLN-Zero's gates (Peebles & Xie 2023,
    §3.2). Raises RuntimeError (torch's reshape) when N is not a multiple of T."""
    return torch.addcmul(_by_frame(x, gate), per_token(gate), _by_frame(y, gate)).reshape(x.shape)


def heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """B×N×(H·Dh) → B×H×N×Dh."""
    b, n, _ = x.shape
    return x.view(b, n, num_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """B×H×N×Dh → B×N×(H·Dh)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class QKNorm(nn.Module):
    """Per-head RMSNorm of queries and keys (QK-norm, Dehghani et al. 2023). q, k: B×H×N×Dh."""

    def __init__(self, head_dim: int, enabled: bool = True):
        super().__init__()
        self.q_norm = RMSNorm(head_dim) if enabled else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if enabled else nn.Identity()

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)


class SelfAttention(nn.Module):
    """Full multi-head self-attention with QK-norm (the DiT twin's mixer). B×N×D → B×N×D.

    ``attn_mask`` (optional, bool, True = may attend) broadcasts to B×H×N×N.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.norm = QKNorm(dim // num_heads, qk_norm)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project x B×N×D to normalised q, k and v, each B×H×N×Dh."""
        q, k, v = (heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = self.norm(q, k)
        return q, k, v

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from video tokens to text tokens, masked by ``context_mask``.

    x: B×N×D, context: B×L×D, context_mask: B×L bool (True = real token) → B×N×D.
    A sample whose mask is all False gets a zero update (no NaNs).
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = QKNorm(dim // num_heads, qk_norm)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        q = heads(self.q(x), self.num_heads)
        k, v = (heads(t, self.num_heads) for t in self.kv(context).chunk(2, dim=-1))
        q, k = self.norm(q, k)
        any_valid = context_mask.any(dim=1)
        mask = context_mask | ~any_valid[:, None]  # all-masked rows: attend anywhere, zeroed below
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        out = self.proj(merge_heads(out))
        if context_mask.device.type == "cpu" and bool(any_valid.all()):  # nothing to zero (a free check on CPU)
            return out
        return out * any_valid[:, None, None].to(out.dtype)


def sincos_1d(pos: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Sin-cos embedding of integer positions ``pos`` (N,) → N×dim (dim even).

    Periods (in positions) are spaced geometrically from 2 to ``max_period``; with a
    ``max_period`` no longer than the training clips every phase is seen in training.
    """
    half = dim // 2
    if half == 0:
        return torch.zeros(len(pos), 0)
    periods = torch.exp(torch.linspace(math.log(2.0), math.log(max(max_period, 2.0)), half, dtype=torch.float64))
    ang = pos.to(torch.float64)[:, None] * (2 * math.pi / periods)[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).float()


def sincos_3d(t: int, h: int, w: int, dim: int, max_period_t: float, max_period_hw: float,
              t0: int = 0) -> torch.Tensor:
    """Factorised t/h/w sin-cos positional embedding for a T×H×W token grid → (T·H·W)×dim.

    The width is split into three even parts (time gets the remainder); each part embeds
    one coordinate. Fixed functions, so any length or size works without tables. ``t0``
    shifts the temporal positions to t0 … t0+T−1 (latent frames).
    """
    d_hw = (dim // 3) // 2 * 2
    d_t = dim - 2 * d_hw
    d_t -= d_t % 2
    et = sincos_1d(torch.arange(t0, t0 + t), d_t, max_period_t)
    eh = sincos_1d(torch.arange(h), d_hw, max_period_hw)
    ew = sincos_1d(torch.arange(w), d_hw, max_period_hw)
    emb = torch.cat(
        [
            et[:, None, None].expand(t, h, w, d_t),
            eh[None, :, None].expand(t, h, w, d_hw),
            ew[None, None, :].expand(t, h, w, d_hw),
        ],
        dim=-1,
    ).reshape(t * h * w, -1)
    if emb.shape[1] < dim:
        emb = F.pad(emb, (0, dim - emb.shape[1]))
    return emb


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t∈[0,1] (scaled ×1000 as in DDPM/DiT): B → B×dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)
