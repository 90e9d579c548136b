"""Context parallelism: the tokens of one clip split over the ranks of a process group.

Design (docs/distributed.md, "Context parallelism"): DeepSpeed-Ulysses style sequence
parallelism (Jacobs et al. 2023, "DeepSpeed Ulysses", arXiv 2309.14509), applied to both
mixers of the denoiser (docs/design.md §4):

* each rank holds a contiguous **slab of latent frames** (:func:`split_frames`); everything
  per token — patch embedding, positions, adaLN, cross-attention, FFN, norms, the mixers'
  input projections and QK-norms, the final layer — runs on the slab;
* before a mixer's sequence op one **all-to-all** swaps "my tokens, all heads" for "all
  tokens, my heads" (:func:`head_ranges`; uneven splits are allowed, so 3 heads run on 2
  or 4 ranks). The op then runs exactly as in one process, on the whole clip: the Rotary
  Major Scan orders, review tokens, both Mamba2 directions (causal conv + SSD scan), TESA's
  windows, shifted or not, and full attention;
* a second all-to-all swaps back before anything that mixes heads (Mamba2's gated RMSNorm
  over d_inner and out_proj; attention's output projection).

Mamba2's B and C are shared by all heads of a group (``ngroups`` is 1 by default), so every
rank receives all of them (each rank's chunk of the all-to-all carries its heads' x and dt
plus the whole B and C: an all-gather of B, C riding on the same collective) and runs their
causal conv itself. Review tokens pool one latent frame each, so a slab pools its own frames.

The collectives are differentiable (:class:`_AllToAll`: the backward of an all-to-all is the
all-to-all with send and receive swapped), so training runs through the same code; a
parameter's gradient on one rank is its share over that rank's tokens and the shares of
the ranks sum to the one-process gradient (:func:`all_reduce_grads`). Every rank must run
the same forward (same layers, same step-cache decisions) so the collectives pair up.

Entry points: ``Denoiser.forward(slab, …, cp=ContextParallel)`` for one rank's slab, and
:class:`ContextParallelDenoiser`, a drop-in denoiser that takes the whole clip, runs its
slab and gathers the velocity (sampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lingen_model.errors import InputError
from lingen_model.models.layers import SelfAttention, merge_heads
from lingen_model.models.scan_order import review_tokens, rms_permutation, scan_order


def split_frames(frames: int, world: int) -> tuple[int, ...]:
    """Latent frames per rank: contiguous slabs as even as possible, the first ranks one larger.

    Raises InputError when there are fewer frames than ranks (a rank would hold nothing).
    """
    if world < 1:
        raise InputError(f"context parallel degree must be >= 1, got {world}")
    if frames < world:
        raise InputError(f"{frames} latent frames cannot be split over {world} context-parallel ranks "
                         f"(each needs at least one); use a longer clip or fewer ranks")
    return tuple(frames // world + (i < frames % world) for i in range(world))


def head_ranges(num_heads: int, world: int) -> tuple[tuple[int, int], ...]:
    """Heads ``(h0, h1)`` each rank computes after the all-to-all: contiguous, as even as possible
    (a rank may hold none when there are fewer heads than ranks)."""
    bounds = [num_heads * i // world for i in range(world + 1)]
    return tuple((bounds[i], bounds[i + 1]) for i in range(world))


@dataclass(frozen=True, eq=False)
class ContextParallel:
    """One clip split over a process group: ``frames[i]`` latent frames on rank ``i`` (in order).

    ``group``: the torch.distributed group of the context-parallel ranks (None = the default
    group); ``rank``, ``world``: this process's rank in it and its size.
    """

    group: object
    rank: int
    world: int
    frames: tuple[int, ...]

    @classmethod
    def for_clip(cls, latent_frames: int, group=None) -> "ContextParallel":
        """The split of a clip of ``latent_frames`` over ``group`` (see :func:`split_frames`)."""
        import torch.distributed as dist

        world, rank = dist.get_world_size(group), dist.get_rank(group)
        return cls(group, rank, world, split_frames(latent_frames, world))

    @property
    def total_frames(self) -> int:
        """Latent frames of the whole clip."""
        return sum(self.frames)

    @property
    def start(self) -> int:
        """First latent frame of this rank's slab."""
        return sum(self.frames[: self.rank])

    def slab(self, latents: torch.Tensor) -> torch.Tensor:
        """This rank's frames of a whole clip B×C×T×H×W → B×C×T_r×H×W (a view)."""
        return latents[:, :, self.start: self.start + self.frames[self.rank]]


class SlabGrid(tuple):
    """The token grid (T_r, H, W) of one rank's slab, carrying the split (``cp``) so that the
    denoiser's blocks run their mixer through :meth:`mix` instead of the one-process path."""

    cp: ContextParallel

    def __new__(cls, grid, cp: ContextParallel):
        self = super().__new__(cls, tuple(grid))
        self.cp = cp
        return self

    @property
    def full(self) -> tuple[int, int, int]:
        """The token grid of the whole clip."""
        return (self.cp.total_frames, self[1], self[2])

    def mix(self, mixer: nn.Module, x: torch.Tensor, layer_idx: int) -> torch.Tensor:
        """A block's mixer on this slab's tokens x B×N_r×d → B×N_r×d, equal to the rows of the
        one-process mixer over the whole clip. Mixers: MATE (``.ma`` + ``.te``) and full attention."""
        if hasattr(mixer, "ma") and hasattr(mixer, "te"):  # MATE
            return _ma_branch(mixer.ma, x, self, layer_idx) + _tesa(mixer.te, x, self, layer_idx % 2 == 1)
        if isinstance(mixer, SelfAttention):
            return _full_attention(mixer, x, self)
        raise TypeError(f"context parallelism does not support the mixer {type(mixer).__name__}")


# ----------------------------------------------------------------------------- collectives


class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` of a flat tensor with element splits; backward: the same with the
    splits swapped (the adjoint of a permutation of data across ranks)."""

    @staticmethod
    def forward(ctx, flat, send: list[int], recv: list[int], group):
        import torch.distributed as dist

        ctx.send, ctx.recv, ctx.group = send, recv, group
        out = flat.new_empty(sum(recv))
        dist.all_to_all_single(out, flat, recv, send, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        out = grad.new_empty(sum(ctx.send))
        dist.all_to_all_single(out, grad.contiguous(), ctx.send, ctx.recv, group=ctx.group)
        return out, None, None, None


def exchange(chunks: list[torch.Tensor], recv_shapes: list[tuple[int, ...]], group=None) -> list[torch.Tensor]:
    """Send ``chunks[j]`` to rank j and receive one tensor of shape ``recv_shapes[i]`` from each
    rank i (one differentiable all-to-all; all chunks of one dtype). Returns the received list."""
    send = [c.numel() for c in chunks]
    recv = [int(torch.Size(s).numel()) for s in recv_shapes]
    flat = torch.cat([c.reshape(-1) for c in chunks])
    out = _AllToAll.apply(flat, send, recv, group)
    return [u.view(s) for u, s in zip(out.split(recv), recv_shapes)]


def gather_frames(x: torch.Tensor, cp: ContextParallel) -> torch.Tensor:
    """All ranks' slabs B×C×T_r×… → the whole clip B×C×T×… on every rank (differentiable)."""
    shape = list(x.shape)
    shapes = [tuple(shape[:2] + [f] + shape[3:]) for f in cp.frames]
    return torch.cat(exchange([x] * cp.world, shapes, cp.group), dim=2)


def all_reduce_grads(model: nn.Module, group=None) -> None:
    """Sum every parameter's gradient over the context-parallel group: each rank's gradient is
    its tokens' share, and the shares sum to the one-process gradient."""
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)


# ----------------------------------------------------------------------------- mixers


def _to_heads(chunks: list[torch.Tensor], g: SlabGrid, per_token: tuple[int, ...], counts: list[int],
              seq_dim: int) -> torch.Tensor:
    """All-to-all "my tokens, heads of rank j" (``chunks[j]``) → "all tokens, my heads": rank i's
    part has ``counts[i]`` tokens along ``seq_dim``; concatenated in rank order (= clip order)."""
    shapes = []
    for n in counts:
        s = list(per_token)
        s.insert(seq_dim, n)
        shapes.append(tuple(s))
    return torch.cat(exchange(chunks, shapes, g.cp.group), dim=seq_dim)


def _to_tokens(y: torch.Tensor, g: SlabGrid, counts: list[int], widths: list[int]) -> torch.Tensor:
    """All-to-all back: y B×N×(my heads' channels) over the whole clip → B×N_r×(all channels)
    of my slab; ``widths[i]`` is rank i's channel count (its heads)."""
    chunks = list(y.split(counts, dim=1))
    n_me = counts[g.cp.rank]
    return torch.cat(exchange(chunks, [(y.shape[0], n_me, w) for w in widths], g.cp.group), dim=-1)


def _ma_branch(ma: nn.Module, x: torch.Tensor, g: SlabGrid, layer_idx: int) -> torch.Tensor:
    """MA-branch (``layers``/``denoiser.MABranch``) on a slab: in_proj per token (review tokens of
    the slab's own frames included), all-to-all to heads, RMS order + review prefix + both scans
    over the whole clip, all-to-all back, gated norm and out_proj per token."""
    m = ma.mamba
    cp, (t_all, h, w) = g.cp, g.full
    b = x.shape[0]
    order = scan_order(layer_idx)
    rr = ma.review_size ** 2
    review = review_tokens(x, tuple(g), ma.review_size, ("t", "h", "w"))  # canonical (t, r, r) order
    n_rev = review.shape[1]
    z, xBC, dt_raw = m.split(m.in_proj(torch.cat([review, x], dim=1)))
    z = z[:, n_rev:]
    xs, bc = xBC[..., : m.d_inner], xBC[..., m.d_inner:]
    p, n_bc = m.headdim, bc.shape[-1]
    ranges = head_ranges(m.nheads, cp.world)
    h0, h1 = ranges[cp.rank]
    chunks = [torch.cat([xs[..., a * p: e * p], dt_raw[..., a:e], bc], dim=-1) for a, e in ranges]
    parts = exchange(chunks, [(b, f * (rr + h * w), (h1 - h0) * (p + 1) + n_bc) for f in cp.frames], cp.group)
    rev_all = torch.cat([u[:, : f * rr] for u, f in zip(parts, cp.frames)], dim=1)
    vid_all = torch.cat([u[:, f * rr:] for u, f in zip(parts, cp.frames)], dim=1)
    perm, inverse = rms_permutation((t_all, h, w), order, x.device)
    if rr:
        rev_all = rev_all[:, rms_permutation((t_all, ma.review_size, ma.review_size), order, x.device)[0]]
    seq = torch.cat([rev_all, vid_all[:, perm]], dim=1)
    xh, dth, bch = torch.split(seq, [(h1 - h0) * p, h1 - h0, n_bc], dim=-1)
    y = m.scan(torch.cat([xh, bch], dim=-1), dth, num_prefix=t_all * rr, heads=(h0, h1))
    y = y[:, t_all * rr:][:, inverse]
    y = _to_tokens(y, g, [f * h * w for f in cp.frames], [(e - a) * p for a, e in ranges])
    return m.out_proj(m.norm(y, z))


def _tesa(te: nn.Module, x: torch.Tensor, g: SlabGrid, shifted: bool) -> torch.Tensor:
    """TESA (``tesa.TESA``) on a slab: q, k, v per token, all-to-all to heads, windows over the
    whole clip (:meth:`TESA.attend`), all-to-all back, output projection."""
    cp, (t_all, h, w) = g.cp, g.full
    b = x.shape[0]
    q, k, v = te.project_heads(x)
    qkv = torch.stack([q.to(v.dtype), k.to(v.dtype), v], dim=2)  # B×N_r×3×heads×Dh
    ranges = head_ranges(te.num_heads, cp.world)
    h0, h1 = ranges[cp.rank]
    dh = v.shape[-1]
    counts = [f * h * w for f in cp.frames]
    qkv = _to_heads([qkv[:, :, :, a:e] for a, e in ranges], g, (b, 3, h1 - h0, dh), counts, 1)
    y = te.attend(*qkv.unbind(2), (t_all, h, w), shifted)
    return te.proj(_to_tokens(y, g, counts, [(e - a) * dh for a, e in ranges]))


def _full_attention(attn: SelfAttention, x: torch.Tensor, g: SlabGrid) -> torch.Tensor:
    """Full self-attention (the DiT twin's mixer) on a slab: all-to-all to heads, attention over
    every token of the clip, all-to-all back, output projection."""
    cp, (_, h, w) = g.cp, g.full
    b = x.shape[0]
    q, k, v = attn.qkv_heads(x)  # B×H×N_r×Dh
    qkv = torch.stack([q.to(v.dtype), k.to(v.dtype), v], dim=0)  # 3×B×H×N_r×Dh
    ranges = head_ranges(attn.num_heads, cp.world)
    h0, h1 = ranges[cp.rank]
    dh = v.shape[-1]
    counts = [f * h * w for f in cp.frames]
    q, k, v = _to_heads([qkv[:, :, a:e] for a, e in ranges], g, (3, b, h1 - h0, dh), counts, 3).unbind(0)
    y = merge_heads(F.scaled_dot_product_attention(q, k, v))  # B×N×(my heads·Dh)
    return attn.proj(_to_tokens(y, g, counts, [(e - a) * dh for a, e in ranges]))


# ----------------------------------------------------------------------------- sampling wrapper


class ContextParallelDenoiser(nn.Module):
    """A denoiser that renders one clip over a context-parallel group: ``forward`` takes the whole
    clip (same arguments as ``Denoiser.forward``), runs this rank's slab and returns the whole
    velocity B×C×T×H×W on every rank (the slabs gathered). Every rank must call it with the same
    inputs. ``config`` and ``token_grid`` are the wrapped denoiser's.

    Raises InputError (from :func:`split_frames`) when the clip has fewer latent frames than ranks.
    """

    def __init__(self, denoiser: nn.Module, group=None):
        super().__init__()
        self.inner = denoiser
        self.group = group

    @property
    def config(self):
        """The wrapped denoiser's ``DenoiserConfig``."""
        return self.inner.config

    def token_grid(self, latent_shape):
        """As ``Denoiser.token_grid``."""
        return self.inner.token_grid(latent_shape)

    def forward(self, latents, t, context, context_mask, t_offset: int = 0, cache=None):
        cp = ContextParallel.for_clip(latents.shape[2], self.group)
        v = self.inner(cp.slab(latents), t, context, context_mask, t_offset=t_offset, cache=cache, cp=cp)
        return gather_frames(v.contiguous(), cp)


def context_parallel_group(cp: int):
    """The process group of this rank's context-parallel replica under torchrun: ranks
    ``[r·cp, (r+1)·cp)`` render one clip together (every rank must call this, in the same order).
    ``cp`` equal to the world size gives the default group (None).

    Raises InputError unless ``cp`` is a positive divisor of the world size.
    """
    import torch.distributed as dist

    world, rank = dist.get_world_size(), dist.get_rank()
    if cp < 1 or world % cp:
        raise InputError(f"context parallel degree {cp} must be a positive divisor of the world size {world}")
    if cp == world:
        return None
    groups = [dist.new_group(list(range(r * cp, (r + 1) * cp))) for r in range(world // cp)]
    return groups[rank // cp]
