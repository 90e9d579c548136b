"""The LinGen denoiser (MATE mixer) and its DiT twin (full self-attention mixer).

Sections: mixers · block · denoiser · builder. Architecture: LinGen (Wang et al.,
arXiv 2412.09856) §3 with the decisions of docs/design.md §4 — a DiT block (adaLN-single
timestep conditioning from PixArt-α §2.3, masked cross-attention to text, SwiGLU FFN,
RMSNorm, QK-norm) whose self-attention is replaced by MATE = MA-branch + TE-branch.

    latents B×C×T×H×W ─► patchify 1×p×p ─► tokens B×N×d, N = T·⌈H/p⌉·⌈W/p⌉
      h = x + pos;  for each block l:  h = Block_l(h, t, text);  x = h − pos   (blocks are residual)
    ─► final adaLN + linear ─► unpatchify ─► velocity B×C×T×H×W
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lingen_model.models.branches import branches_enabled, run_branches
from lingen_model.models.config import DenoiserConfig, get_config
from lingen_model.models.context_parallel import ContextParallel, SlabGrid
from lingen_model.models.layers import (
    CrossAttention,
    RMSNorm,
    SelfAttention,
    SwiGLU,
    gated_residual,
    modulate,
    sincos_3d,
    timestep_embedding,
)
from lingen_model.models.mamba2 import BiMamba2
from lingen_model.models.scan_order import review_tokens, rms_permutation, scan_order
from lingen_model.models.tesa import TESA

Grid = tuple[int, int, int]

# ----------------------------------------------------------------------------- mixers


class MABranch(nn.Module):
    """MA-branch: RMS permutation → review tokens prepended → bidirectional Mamba2 →
    review outputs dropped → Rev-RMS. ``forward(x B×N×d, grid, layer_idx) → B×N×d``."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.review_size = cfg.review_size
        self.mamba = BiMamba2(cfg.width, cfg.d_state, cfg.expand, cfg.headdim, cfg.d_conv, cfg.ngroups, cfg.chunk_size)

    def forward(self, x: torch.Tensor, grid: Grid, layer_idx: int) -> torch.Tensor:
        order = scan_order(layer_idx)
        perm, inverse = rms_permutation(grid, order, x.device)
        review = review_tokens(x, grid, self.review_size, order)
        r = review.shape[1]
        if torch.is_grad_enabled():
            seq = torch.cat([review, x[:, perm]], dim=1)
        else:  # the permuted tokens gathered straight into their place after the review tokens
            seq = x.new_empty(x.shape[0], r + x.shape[1], x.shape[2])
            seq[:, :r] = review
            torch.index_select(x, 1, perm, out=seq[:, r:])
        return self.mamba(seq, num_prefix=r)[:, r:].index_select(1, inverse)  # review outputs dropped, Rev-RMS


class MATE(nn.Module):
    """MATE token mixer: ``MA(x) + TE(x)``; TESA windows shift on odd layers."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.ma = MABranch(cfg)
        self.te = TESA(cfg.width, cfg.num_heads, cfg.window, cfg.qk_norm)

    def forward(self, x: torch.Tensor, grid: Grid, layer_idx: int) -> torch.Tensor:
        return self.ma(x, grid, layer_idx) + self.te(x, grid, shifted=layer_idx % 2 == 1)


class FullAttentionMixer(SelfAttention):
    """The DiT twin's mixer: full 3D self-attention over all N tokens (O(N²))."""

    def forward(self, x: torch.Tensor, grid: Grid, layer_idx: int) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


def build_mixer(cfg: DenoiserConfig) -> nn.Module:
    """The token mixer named by ``cfg.mixer``: ``mate`` or ``attention``."""
    return MATE(cfg) if cfg.mixer == "mate" else FullAttentionMixer(cfg.width, cfg.num_heads, cfg.qk_norm)


# ----------------------------------------------------------------------------- block


class Block(nn.Module):
    """One denoiser block (adaLN-single modulation; gates zero at init)::

        x = x + gate_msa · Mixer(modulate(norm(x), shift_msa, scale_msa))
        x = x + CrossAttn(norm(x), context, mask)
        x = x + gate_mlp · FFN(modulate(norm(x), shift_mlp, scale_mlp))
    """

    def __init__(self, cfg: DenoiserConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.norm1 = RMSNorm(cfg.width, affine=False)
        self.mixer = build_mixer(cfg)
        self.norm2 = RMSNorm(cfg.width)
        self.cross = CrossAttention(cfg.width, cfg.num_heads, cfg.qk_norm)
        self.norm3 = RMSNorm(cfg.width, affine=False)
        self.ffn = SwiGLU(cfg.width, cfg.ffn_dim)
        # Per-block learned offsets added to the shared adaLN-single output (PixArt-α).
        self.ada_table = nn.Parameter(torch.zeros(6, cfg.width))

    def forward(self, x, t_mod, context, context_mask, grid: Grid):
        """x B×N×d tokens; t_mod B×6×d (one timestep per sample) or B×T×1×6×d (per-frame timesteps:
        one row per latent frame, broadcast over its N/T tokens)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (t_mod + self.ada_table).unbind(-2)
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        # a context-parallel slab runs the mixer's sequence op over the whole clip (context_parallel.py)
        mixed = grid.mix(self.mixer, h, self.layer_idx) if isinstance(grid, SlabGrid) else self.mixer(h, grid, self.layer_idx)
        x = gated_residual(x, gate_msa, mixed)
        x = x + self.cross(self.norm2(x), context, context_mask)
        return gated_residual(x, gate_mlp, self.ffn(modulate(self.norm3(x), shift_mlp, scale_mlp)))


# ----------------------------------------------------------------------------- denoiser


class Denoiser(nn.Module):
    """Velocity-prediction video denoiser (LinGen when ``cfg.mixer == "mate"``, DiT twin for ``"attention"``).

    ``forward(latents, t, context, context_mask) → velocity``:

    * latents: B×C×T×H×W float (C = ``config.in_channels``; any T ≥ 1, H, W ≥ 1 —
      H/W not divisible by the patch are zero-padded, and the output cropped back);
    * t: B float in [0, 1] (flow-matching time; 1 = pure noise), or B×T, one time per latent
      frame (per-frame noise levels, as in Diffusion Forcing, Chen et al. 2024, and Rolling
      Diffusion, Ruhe et al. 2024: every token of frame k is modulated by the embedding of
      ``t[:, k]``; equal times give exactly the one-per-sample result; not with ``cache``/``cp``);
    * context: B×L×D text tokens (D = ``config.text_dim``); context_mask: B×L bool;
    * t_offset: optional int ≥ 0, the temporal position (in latent frames) of the first
      latent frame. 0 at sampling time; training draws random offsets so that the
      temporal embedding of every position of a long clip is seen on short clips;
    * returns B×C×T×H×W, same dtype as ``latents``.

    Raises:
        ValueError: wrong ranks or sizes, non-finite or out-of-range timesteps, a
            negative or non-integer ``t_offset``.
    """

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.config = cfg
        d, p, c = cfg.width, cfg.patch_size, cfg.in_channels
        self.patch_embed = nn.Linear(c * p * p, d)
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # adaLN-single
        self.context_proj = nn.Linear(cfg.text_dim, d)
        self.context_norm = RMSNorm(d)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.final_norm = RMSNorm(d, affine=False)
        self.final_table = nn.Parameter(torch.zeros(2, d))
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.final_linear = nn.Linear(d, p * p * c)
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self.reset_parameters()

    # -- init ---------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Xavier-uniform linears with zero bias (DiT); then zero the adaLN gates/shifts/scales
        and the final layer (adaLN-Zero), so every block starts as the identity. Nothing to do on
        the meta device (parameter counts before allocating), where ``normal_`` alone would cost
        ~1 s of imports on first use."""
        if self.patch_embed.weight.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        for lin in (self.t_block[1], self.final_mod[1], self.final_linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        # Note: branch output projections are NOT zero-initialised. With zero gates too,
        # gate·proj would be a saddle with exactly zero gradient for both factors forever.

    # -- shapes ---------------------------------------------------------------
    def _check_inputs(self, latents, t, context, context_mask) -> None:
        cfg = self.config
        if not torch.is_tensor(latents) or latents.dim() != 5:
            raise ValueError(f"latents must be B×C×T×H×W (5-D), got shape {tuple(getattr(latents, 'shape', ()))}")
        b, c = latents.shape[:2]
        if c != cfg.in_channels:
            raise ValueError(f"latents must have C={cfg.in_channels} channels (B×{cfg.in_channels}×T×H×W), got {c}")
        if min(latents.shape[2:]) < 1:
            raise ValueError(f"latents T, H, W must be >= 1, got {tuple(latents.shape)}")
        if not torch.is_tensor(t) or t.shape not in ((b,), (b, latents.shape[2])):
            raise ValueError(f"t must be a float tensor of shape ({b},) or ({b}, {latents.shape[2]}) (one per latent "
                             f"frame), got {tuple(getattr(t, 'shape', ()))}")
        if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be finite and in [0, 1]")
        if not torch.is_tensor(context) or context.dim() != 3 or context.shape[0] != b or context.shape[2] != cfg.text_dim:
            raise ValueError(f"context must be {b}×L×{cfg.text_dim}, got {tuple(getattr(context, 'shape', ()))}")
        if (not torch.is_tensor(context_mask) or context_mask.shape != context.shape[:2]
                or context_mask.dtype != torch.bool):
            raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])}, "
                             f"got {tuple(getattr(context_mask, 'shape', ()))} {getattr(context_mask, 'dtype', '')}")

    def token_grid(self, latent_shape) -> Grid:
        """(T, ⌈H/p⌉, ⌈W/p⌉) token grid for latents of shape (…, T, H, W)."""
        p = self.config.patch_size
        t, h, w = latent_shape[-3:]
        return (t, -(-h // p), -(-w // p))

    def _pos(self, grid: Grid, device, dtype, t_offset: int = 0) -> torch.Tensor:
        key = (grid, device, dtype, t_offset)
        if key not in self._pos_cache:
            cfg = self.config
            if len(self._pos_cache) > 64:
                self._pos_cache.clear()
            self._pos_cache[key] = sincos_3d(*grid, cfg.width, cfg.pos_max_period_t, cfg.pos_max_period_hw,
                                             t0=t_offset).to(device, dtype)
        return self._pos_cache[key]

    def patchify(self, latents: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """B×C×T×H×W → (B×N×(C·p·p) patches in canonical t,h,w order, token grid). Pads H/W with zeros."""
        p = self.config.patch_size
        b, c, t, h, w = latents.shape
        grid = self.token_grid(latents.shape)
        x = F.pad(latents, (0, grid[2] * p - w, 0, grid[1] * p - h))
        x = x.view(b, c, t, grid[1], p, grid[2], p).permute(0, 2, 3, 5, 1, 4, 6)
        return x.reshape(b, t * grid[1] * grid[2], c * p * p), grid

    def unpatchify(self, x: torch.Tensor, grid: Grid, hw: tuple[int, int]) -> torch.Tensor:
        """B×N×(C·p·p) → B×C×T×H×W, cropping the padding added by :meth:`patchify`."""
        p, c = self.config.patch_size, self.config.in_channels
        b = x.shape[0]
        t, gh, gw = grid
        x = x.view(b, t, gh, gw, c, p, p).permute(0, 4, 1, 2, 5, 3, 6).reshape(b, c, t, gh * p, gw * p)
        return x[..., : hw[0], : hw[1]]

    # -- forward --------------------------------------------------------------
    def _run_blocks(self, h, t_mod, ctx, context_mask, grid: Grid, lo: int = 0, hi: int | None = None):
        """Blocks ``lo .. hi-1`` on tokens h = x + positions, B×N×d.

        Every block is residual, ``block(h) = h + Δ(h)``, so the positions are added once before
        the first block and removed once after the last (``forward``) rather than around each
        block; step caching (``cache``) stores and forecasts in this same h-space.

        At inference on a CPU where :func:`branches.branches_enabled` (models/branches.py), a batch
        of two or more samples (the conditional and unconditional halves of a CFG step) is split in
        two halves, each run through the blocks on its own single-threaded worker thread: no sample
        depends on another in any block. Whatever the OpenMP wait policy: it is as fast as the
        batched pass when idle threads spin and faster when they sleep, and the rendered bytes must
        not depend on which policy the machine's load picked (models/branches.py)."""
        b = h.shape[0]
        if b > 1 and not isinstance(grid, SlabGrid) and branches_enabled(h.device):
            rows = (slice(0, b // 2), slice(b // 2, b))
            return torch.cat(run_branches(
                [lambda r=r: self._run_blocks(h[r], t_mod[r], ctx[r], context_mask[r], grid, lo, hi) for r in rows],
                h.device))
        for block in self.blocks[lo:hi]:
            if self.config.grad_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, t_mod, ctx, context_mask, grid, use_reentrant=False)
            else:
                h = block(h, t_mod, ctx, context_mask, grid)
        return h

    def forward(self, latents, t, context, context_mask, t_offset: int = 0, cache=None,
                cp: ContextParallel | None = None):
        """``cache``: optional ``step_cache.StepCache`` of the sampling run (Δ-DiT / TaylorSeer step
        caching); None runs every block (the default). ``cp``: context parallelism — ``latents`` is
        then this rank's slab of ``cp.frames[cp.rank]`` latent frames of a clip split over
        ``cp.group``, and the result is the slab's rows of the whole clip's velocity (every rank of
        the group must call together; models/context_parallel.py)."""
        self._check_inputs(latents, t, context, context_mask)
        if isinstance(t_offset, bool) or not isinstance(t_offset, int) or t_offset < 0:
            raise ValueError(f"t_offset must be a non-negative int (latent frames), got {t_offset!r}")
        per_frame = t.dim() == 2
        if per_frame and (cache is not None or cp is not None):
            raise ValueError("per-frame timesteps (t of shape B×T) do not combine with step caching or context parallelism")
        dtype = self.patch_embed.weight.dtype
        patches, grid = self.patchify(latents.to(dtype))
        if cp is not None:
            if latents.shape[2] != cp.frames[cp.rank]:
                raise ValueError(f"context-parallel rank {cp.rank} holds {cp.frames[cp.rank]} latent frames, "
                                 f"got latents with {latents.shape[2]}")
            grid, t_offset = SlabGrid(grid, cp), t_offset + cp.start
        x = self.patch_embed(patches)
        pos = self._pos(tuple(grid), x.device, x.dtype, t_offset)[None]
        d = self.config.width
        t_emb = self.t_embed(timestep_embedding(t.reshape(-1)).to(dtype))  # B·T'×d, T' = 1 or T
        t_mod = self.t_block(t_emb).view(-1, 6, d)
        final = self.final_mod(t_emb).view(-1, 2, d)
        if per_frame:  # frame k's modulation, broadcast over its H'·W' tokens (canonical t, h, w order)
            t_mod = t_mod.view(t.shape[0], -1, 1, 6, d)
            final = final.view(t.shape[0], -1, 1, 2, d)
        ctx = self.context_norm(self.context_proj(context.to(dtype)))
        h = x + pos
        if cache is None:
            h = self._run_blocks(h, t_mod, ctx, context_mask, grid)
        else:
            h = cache.apply(h, float(t[0]), lambda u, lo, hi: self._run_blocks(u, t_mod, ctx, context_mask,
                                                                              grid, lo, hi), len(self.blocks))
        x = h - pos
        shift, scale = (final + self.final_table).unbind(-2)
        x = self.final_linear(modulate(self.final_norm(x), shift, scale))
        return self.unpatchify(x, grid, latents.shape[-2:]).to(latents.dtype)


# ----------------------------------------------------------------------------- builder


def build_denoiser(name: str = "tiny", mixer: str = "mate", **overrides) -> Denoiser:
    """Build a randomly initialised denoiser of a registered size (see ``config.DENOISER_CONFIGS``).

    Args:
        name: size name (``tiny``, ``small``, ``4b``).
        mixer: ``"mate"`` (LinGen) or ``"attention"`` (its DiT twin).
        **overrides: any :class:`DenoiserConfig` field.
    Raises:
        ValueError: unknown name, mixer or override.
    """
    return Denoiser(get_config(name, mixer, **overrides))


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
