"""LinGen with Wan 2.1's block: a Wan-compatible denoiser variant (``arch="wan"``).

Wan 2.1 (Wan Team, arXiv 2503.20314; diffusers ``WanTransformer3DModel``) is a DiT whose
block is close to ours. This module rebuilds it around our mixers so that a Wan
checkpoint converts to a LinGen (``lingen convert``; :mod:`lingen_model.wan.convert`):

* self-attention → MATE: the TE-branch is our :class:`~lingen_model.models.tesa.TESA` carrying
  Wan's q/k/v/o weights; the MA-branch (:class:`~lingen_model.models.denoiser.MABranch`) is
  added with its ``out_proj`` at zero. With a window covering the whole latent grid and
  the MA-branch at zero the model *is* Wan (tested against diffusers, float32, ≤ 1e-5).
* the rest is Wan's: LayerNorm without affine (eps 1e-6, in float32) for norm1/norm3
  and an affine one before cross-attention; 3D RoPE on self-attention q/k
  (:mod:`lingen_model.models.rope`, applied per token before TESA pads and windows, so windows
  see relative positions only); QK RMSNorm across all heads; biased q/k/v/o; GELU-tanh
  FFN; a Linear–GELU–Linear text projection; cross-attention over all ``text_len`` (512)
  zero-padded text slots without a mask; the final modulation adds the timestep
  embedding itself (no SiLU/Linear); Conv3d patch embedding; output rows ordered
  (ph, pw, c).

float32 islands as in diffusers' ``_keep_in_fp32_modules``: the timestep MLP, the
modulation tables and the three norms keep float32 weights when the model is cast
(``.to(torch.bfloat16)``), and modulation, norms, gated residual adds and RoPE run in
float32; the residual stream between blocks is in the model dtype.

    latents B×C×T×H×W ─► Conv3d 1×p×p ─► tokens B×N×d   (N = T·H/p·W/p)
    t ∈ [0,1] ─► sin-cos(1000 t) ─► MLP ─► temb B×d ─► SiLU+Linear ─► B×6×d modulation
    text B×L×D ─► zero pad/mask to 512 slots ─► Linear–GELU–Linear ─► B×512×d
    for each block: x += g₁·(TESA(RoPE) + MA)(mod(LN x)); x += Cross(LN x, text); x += g₂·FFN(mod(LN x))
    ─► mod(LN x) with table + temb ─► Linear ─► velocity B×C×T×H×W
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lingen_model.models.config import DenoiserConfig
from lingen_model.models.denoiser import MABranch
from lingen_model.models.layers import heads, merge_heads, timestep_embedding
from lingen_model.models.rope import apply_rope, rope_3d, rope_axis_dims
from lingen_model.models.tesa import TESA

Grid = tuple[int, int, int]
FULL = 1 << 30  # a window side that always covers its axis (TESA clamps windows to the grid)
WAN_MIXERS = ("mate", "attention")


@dataclass
class WanDenoiserConfig:
    """Hyper-parameters of the Wan-compatible LinGen denoiser.

    Attributes (units: tokens unless stated):
        arch: always ``"wan"`` (how a checkpoint's config.json names this variant).
        in_channels / out_channels: latent channels (16 for Wan's VAE).
        patch_size: spatial patch p; the temporal patch is 1 (Wan 2.1: 1×2×2).
        width, depth, num_heads, ffn_dim: Wan's ``num_attention_heads·attention_head_dim``,
            ``num_layers``, heads, FFN hidden width.
        text_dim: width of the text-encoder tokens (4096 for UMT5-XXL).
        text_len: text slots the cross-attention reads (Wan: 512, zero padded, no mask).
        freq_dim: width of the sinusoidal timestep features.
        eps: epsilon of every LayerNorm/RMSNorm (Wan: 1e-6).
        rope_theta: RoPE base.
        mixer: ``"mate"`` (TESA + MA-branch) or ``"attention"`` (TESA only: with a full
            window this is Wan itself).
        window: TESA window (Tw, Hw, Ww); 0 on an axis means the whole axis.
        shift_windows: odd layers shift their windows by half a window (Swin).
        review_size, d_state, expand, headdim, d_conv, ngroups, chunk_size: MA-branch
            settings (see :class:`~lingen_model.models.config.DenoiserConfig`).
        grad_checkpointing: recompute blocks in backward (training only).
    """

    arch: str = "wan"
    in_channels: int = 16
    out_channels: int = 16
    patch_size: int = 2
    width: int = 1536
    depth: int = 30
    num_heads: int = 12
    ffn_dim: int = 8960
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    eps: float = 1e-6
    rope_theta: float = 10000.0
    mixer: str = "mate"
    window: tuple[int, int, int] = (4, 8, 8)
    shift_windows: bool = True
    review_size: int = 2
    d_state: int = 64
    expand: int = 2
    headdim: int = 64
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 128
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.window = tuple(int(w) for w in self.window)
        if self.arch != "wan":
            raise ValueError(f"arch must be 'wan', got {self.arch!r}")
        if self.mixer not in WAN_MIXERS:
            raise ValueError(f"mixer must be one of {WAN_MIXERS}, got {self.mixer!r}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        rope_axis_dims(self.width // self.num_heads)
        if len(self.window) != 3 or min(self.window) < 0:
            raise ValueError(f"window must be three ints >= 0 (0 = whole axis), got {self.window}")
        for name in ("in_channels", "out_channels", "patch_size", "depth", "ffn_dim", "text_dim", "text_len", "freq_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mixer == "mate":
            self.ma_config()  # validates the MA settings

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.width // self.num_heads

    @property
    def tesa_window(self) -> tuple[int, int, int]:
        """The window TESA uses (0 → a side covering the whole axis)."""
        return tuple(w if w > 0 else FULL for w in self.window)

    def ma_config(self) -> DenoiserConfig:
        """A :class:`DenoiserConfig` carrying the MA-branch settings (for ``MABranch``)."""
        return DenoiserConfig(width=self.width, num_heads=self.num_heads, d_state=self.d_state, expand=self.expand,
                              headdim=self.headdim, d_conv=self.d_conv, ngroups=self.ngroups,
                              chunk_size=self.chunk_size, review_size=self.review_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WanDenoiserConfig":
        """Build from a dict; raises ValueError naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown wan denoiser config keys: {', '.join(unknown)}")
        return cls(**d)


#: Wan 2.1 sizes (diffusers configs of Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers) with
#: LinGen's default TESA window and MA settings.
WAN_CONFIGS: dict[str, WanDenoiserConfig] = {
    "wan2.1-1.3b": WanDenoiserConfig(width=1536, depth=30, num_heads=12, ffn_dim=8960),
    "wan2.1-14b": WanDenoiserConfig(width=5120, depth=40, num_heads=40, ffn_dim=13824),
}


# ----------------------------------------------------------------------------- layers


def layer_norm_fp32(x: torch.Tensor, norm: nn.LayerNorm | None = None, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm over the last dim computed in float32 → float32 (diffusers ``FP32LayerNorm``)."""
    if norm is None:
        return F.layer_norm(x.float(), x.shape[-1:], None, None, eps)
    return F.layer_norm(x.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)


class WanTESA(TESA):
    """TESA with Wan's self-attention projections: biased q/k/v (one fused Linear), RMSNorm
    of q and k across all heads, then 3D RoPE — all per token, before the windows.

    ``forward(x B×N×d, grid, shifted, rope=(cos, sin) N×Dh) → B×N×d``.
    """

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int, int], eps: float = 1e-6):
        super().__init__(dim, num_heads, window, qk_norm=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def project(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        """Wan's per-token q|k|v, B×N×3D: projection, RMS-norm of q and k across all heads, then 3D RoPE
        (``rope``: the cos/sin tables of the token grid, or None) before TESA pads and windows."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:
            q, k = apply_rope(q, *rope, self.num_heads), apply_rope(k, *rope, self.num_heads)
        return torch.cat([q, k, v], dim=-1)


class WanCrossAttention(nn.Module):
    """Wan's cross-attention: biased q (video) and k/v (text), RMSNorm across heads, no mask.

    ``forward(x B×N×d, context B×L×d) → B×N×d``.
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(context).chunk(2, dim=-1)
        q = heads(self.norm_q(self.q(x)), self.num_heads)
        k, v = heads(self.norm_k(k), self.num_heads), heads(v, self.num_heads)
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)).type_as(x))


class WanFFN(nn.Module):
    """``fc2(GELU_tanh(fc1 x))`` with biases. B×N×d → B×N×d."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class WanBlock(nn.Module):
    """One Wan block with MATE in place of self-attention (see the module docstring)::

        x = x + g_msa · (TESA + MA)(LN(x)·(1 + s_msa) + b_msa)
        x = x + Cross(LN_affine(x), text)
        x = x + g_mlp · FFN(LN(x)·(1 + s_mlp) + b_mlp)
    """

    def __init__(self, cfg: WanDenoiserConfig, layer_idx: int):
        super().__init__()
        self.layer_idx, self.eps = layer_idx, cfg.eps
        self.shifted = cfg.shift_windows and layer_idx % 2 == 1
        self.te = WanTESA(cfg.width, cfg.num_heads, cfg.tesa_window, cfg.eps)
        self.ma = MABranch(cfg.ma_config()) if cfg.mixer == "mate" else None
        self.ma_enabled = True
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.cross = WanCrossAttention(cfg.width, cfg.num_heads, cfg.eps)
        self.ffn = WanFFN(cfg.width, cfg.ffn_dim)
        self.ada_table = nn.Parameter(torch.randn(6, cfg.width) / cfg.width ** 0.5)

    def forward(self, x, t_mod, context, grid: Grid, rope):
        mod = self.ada_table[None] + t_mod.float()
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (m[:, None] for m in mod.unbind(1))
        h = (layer_norm_fp32(x, eps=self.eps) * (1 + scale_msa) + shift_msa).type_as(x)
        mixed = self.te(h, grid, shifted=self.shifted, rope=rope)
        if self.ma is not None and self.ma_enabled:
            mixed = mixed + self.ma(h, grid, self.layer_idx)
        x = (x.float() + mixed * gate_msa).type_as(x)
        x = x + self.cross(layer_norm_fp32(x, self.norm2).type_as(x), context)
        h = (layer_norm_fp32(x, eps=self.eps) * (1 + scale_mlp) + shift_mlp).type_as(x)
        return (x.float() + self.ffn(h).float() * gate_mlp).type_as(x)


# ----------------------------------------------------------------------------- denoiser


class WanDenoiser(nn.Module):
    """Velocity-prediction denoiser with Wan 2.1's block and LinGen's MATE mixer.

    Same interface as :class:`~lingen_model.models.denoiser.Denoiser`:
    ``forward(latents B×C×T×H×W, t B ∈ [0,1], context B×L×text_dim, context_mask B×L bool,
    t_offset=0) → velocity B×C×T×H×W`` (dtype of ``latents``). ``t`` is flow-matching
    time (1 = noise); Wan's timestep is ``1000·t``. Text slots where the mask is False are
    zeroed and the context is zero-padded to ``text_len`` slots (Wan's layout), then read
    without a mask. ``t_offset`` shifts the temporal RoPE positions (relative: no effect up
    to rounding for full windows). H/W not divisible by the patch are zero-padded and the
    output cropped.

    Raises:
        ValueError: wrong ranks/sizes, ``t`` outside [0, 1], more than ``text_len`` slots.
    """

    FP32_PARAMS = ("t_embed.", "final_table", "ada_table", "norm2.")

    def __init__(self, cfg: WanDenoiserConfig):
        super().__init__()
        self.config = cfg
        d, p = cfg.width, cfg.patch_size
        self.patch_embed = nn.Conv3d(cfg.in_channels, d, kernel_size=(1, p, p), stride=(1, p, p))
        self.t_embed = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.blocks = nn.ModuleList(WanBlock(cfg, i) for i in range(cfg.depth))
        self.final_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.final_linear = nn.Linear(d, p * p * cfg.out_channels)
        self.zero_ma_out()

    def zero_ma_out(self) -> None:
        """Set every MA-branch ``out_proj`` to zero (the converted model then equals Wan)."""
        with torch.no_grad():
            for block in self.blocks:
                if block.ma is not None:
                    block.ma.mamba.out_proj.weight.zero_()

    def _apply(self, fn, recurse=True):  # keep the float32 islands float32 through .to(dtype)
        super()._apply(fn, recurse)
        for name, param in self.named_parameters():
            if param.is_floating_point() and param.dtype != torch.float32 and any(
                    s in name for s in self.FP32_PARAMS):
                param.data = param.data.float()
        return self

    @contextmanager
    def as_teacher(self):
        """Within the context the model is Wan itself: full-grid windows, MA-branch off
        (the distillation teacher shares the student's weights)."""
        saved = [(b.te.window, b.ma_enabled) for b in self.blocks]
        try:
            for b in self.blocks:
                b.te.window, b.ma_enabled = (FULL, FULL, FULL), False
            yield self
        finally:
            for b, (w, m) in zip(self.blocks, saved):
                b.te.window, b.ma_enabled = w, m

    # -- shapes ---------------------------------------------------------------
    def token_grid(self, latent_shape) -> Grid:
        """(T, ⌈H/p⌉, ⌈W/p⌉) token grid for latents of shape (…, T, H, W)."""
        p = self.config.patch_size
        t, h, w = latent_shape[-3:]
        return (t, -(-h // p), -(-w // p))

    def _check_inputs(self, latents, t, context, context_mask) -> None:
        cfg = self.config
        if not torch.is_tensor(latents) or latents.dim() != 5 or latents.shape[1] != cfg.in_channels:
            raise ValueError(f"latents must be B×{cfg.in_channels}×T×H×W, got {tuple(getattr(latents, 'shape', ()))}")
        b = latents.shape[0]
        if min(latents.shape[2:]) < 1:
            raise ValueError(f"latents T, H, W must be >= 1, got {tuple(latents.shape)}")
        if not torch.is_tensor(t) or t.shape != (b,) or not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
            raise ValueError(f"t must be a finite float tensor of shape ({b},) in [0, 1]")
        if not torch.is_tensor(context) or context.dim() != 3 or context.shape[0] != b or context.shape[2] != cfg.text_dim:
            raise ValueError(f"context must be {b}×L×{cfg.text_dim}, got {tuple(getattr(context, 'shape', ()))}")
        if context.shape[1] > cfg.text_len:
            raise ValueError(f"context has {context.shape[1]} slots, the model reads at most {cfg.text_len}")
        if (not torch.is_tensor(context_mask) or context_mask.shape != context.shape[:2]
                or context_mask.dtype != torch.bool):
            raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}")

    # -- forward --------------------------------------------------------------
    def embed_text(self, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """B×L×text_dim (+ mask) → B×text_len×d: masked slots zeroed, zero-padded, projected."""
        ctx = context.masked_fill(~context_mask[..., None], 0.0)
        ctx = F.pad(ctx, (0, 0, 0, self.config.text_len - ctx.shape[1]))
        return self.text_proj(ctx.to(self.text_proj[0].weight.dtype))

    def forward(self, latents, t, context, context_mask, t_offset: int = 0):
        self._check_inputs(latents, t, context, context_mask)
        if isinstance(t_offset, bool) or not isinstance(t_offset, int) or t_offset < 0:
            raise ValueError(f"t_offset must be a non-negative int (latent frames), got {t_offset!r}")
        cfg = self.config
        p, dtype = cfg.patch_size, self.patch_embed.weight.dtype
        grid = self.token_grid(latents.shape)
        hw = latents.shape[-2:]
        z = F.pad(latents.to(dtype), (0, grid[2] * p - hw[1], 0, grid[1] * p - hw[0]))
        x = self.patch_embed(z).flatten(2).transpose(1, 2).contiguous()
        rope = rope_3d(grid, cfg.head_dim, cfg.rope_theta, t0=t_offset, device=x.device)
        freq = timestep_embedding(t, cfg.freq_dim)  # cos|sin of 1000·t (diffusers Timesteps, flip_sin_to_cos)
        temb = self.t_embed(freq.to(self.t_embed[0].weight.dtype)).to(dtype)
        t_mod = self.t_block(temb).view(-1, 6, cfg.width)
        ctx = self.embed_text(context, context_mask)
        for block in self.blocks:
            if cfg.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, t_mod, ctx, grid, rope, use_reentrant=False)
            else:
                x = block(x, t_mod, ctx, grid, rope)
        shift, scale = (self.final_table[None] + temb[:, None]).unbind(1)
        x = (layer_norm_fp32(x, eps=cfg.eps) * (1 + scale[:, None]) + shift[:, None]).type_as(x)
        x = self.final_linear(x)
        b, (tt, gh, gw), c = x.shape[0], grid, cfg.out_channels
        x = x.view(b, tt, gh, gw, p, p, c).permute(0, 6, 1, 2, 4, 3, 5).reshape(b, c, tt, gh * p, gw * p)
        return x[..., : hw[0], : hw[1]].to(latents.dtype)


def build_wan_denoiser(name: str = "wan2.1-1.3b", **overrides) -> WanDenoiser:
    """A randomly initialised Wan-compatible denoiser of a registered size (``WAN_CONFIGS``).

    Raises:
        ValueError: unknown name or override.
    """
    if name not in WAN_CONFIGS:
        raise ValueError(f"unknown wan size {name!r}; known: {', '.join(WAN_CONFIGS)}")
    d = WAN_CONFIGS[name].to_dict()
    d.update(overrides)
    return WanDenoiser(WanDenoiserConfig.from_dict(d))
