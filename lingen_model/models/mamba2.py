"""Bidirectional Mamba2 token mixer (the MA-branch core of LinGen's MATE block).

Follows mamba_ssm's ``Mamba2`` layer (Dao & Gu 2024) — in_proj → causal depthwise conv →
SiLU → SSD scan (+D skip) → gated RMSNorm → out_proj — made bidirectional as in LinGen
(arXiv 2412.09856, §3.2) with the decisions of docs/design.md §4:

* in_proj and out_proj are shared by the two directions;
* each direction has its own causal conv, ``dt_bias``, ``A_log`` and ``D``;
* a sequence may start with ``num_prefix`` review tokens: the forward scan reads
  ``[prefix, video]``, the backward scan reads ``[prefix, reversed(video)]`` (the prefix
  stays first, so every position in both directions has seen the clip summary);
* the two outputs (backward one restored to forward order) are summed, then gated-RMS-
  normalised with the shared gate ``z`` and projected by out_proj.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lingen_model.models.index_cache import index_cache
from lingen_model.models.layers import GatedRMSNorm
from lingen_model.models.branches import branches_enabled, run_branches
from lingen_model.models.ssd import select_backend, ssd_scan_multi


def reorder_for_backward(seq: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """B×L×… → the backward scan's order: the first ``num_prefix`` tokens stay first, the rest reversed.

    The map is an involution: applying it twice restores the input. One gather (no cat + flip copies).
    """
    return seq.index_select(1, _backward_index(seq.shape[1], num_prefix, seq.device))


@index_cache(maxsize=32)
def _backward_index_cpu(length: int, num_prefix: int) -> torch.Tensor:
    return torch.cat([torch.arange(min(num_prefix, length)), torch.arange(length - 1, num_prefix - 1, -1)])


def _backward_index(length: int, num_prefix: int, device) -> torch.Tensor:
    return _backward_index_cpu(length, num_prefix).to(device)


@index_cache(maxsize=32)
def _conv_channels_cpu(d_inner: int, conv_dim: int, lo: int, hi: int) -> torch.Tensor:
    return torch.cat([torch.arange(lo, hi), torch.arange(d_inner, conv_dim)])


def _conv_channels(d_inner: int, conv_dim: int, lo: int, hi: int, device) -> torch.Tensor:
    """The conv channels of x channels lo … hi−1 followed by all B and C channels."""
    return _conv_channels_cpu(d_inner, conv_dim, lo, hi).to(device)


def causal_depthwise_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU of a causal depthwise conv along L, in the B×L×C layout (no transposes).

    ``y[t, c] = silu(bias[c] + Σ_k weight[c, 0, k] · x[t − (K−1) + k, c])`` with zeros before the
    start: what ``nn.Conv1d(C, C, K, groups=C, padding=K−1)`` on ``x.transpose(1, 2)``, cropped
    to the first L outputs, computes (mamba_ssm's ``causal_conv1d``). x: B×L×C; weight: C×1×K;
    bias: C or None. Returns B×L×C (rows of a B×(L+K−1)×C buffer: a view with batch stride
    (L+K−1)·C).

    B×L×C is the memory layout of a channels-last B×C×1×L image, so the conv runs as one
    depthwise ``conv2d`` over that view (oneDNN's channels-last kernel on CPU): one pass over
    the data, where K shifted multiply-adds made K passes (and one OpenMP wake-up each).
    """
    b, l, ch = x.shape
    k = weight.shape[-1]
    image = x.transpose(1, 2).unsqueeze(2)  # B×C×1×L, channels-last strides: no copy
    out = F.conv2d(image, weight.unsqueeze(2), bias, padding=(0, k - 1), groups=ch)  # B×C×1×(L+K−1)
    out = out.squeeze(2).transpose(1, 2)[:, :l]  # B×L×C
    return F.silu(out, inplace=not torch.is_grad_enabled())  # autograd needs the pre-activation


class BiMamba2(nn.Module):
    """Bidirectional Mamba2 mixer. ``forward(u B×L×D, num_prefix) → B×L×D``.

    Args:
        d_model: width D. d_state: SSM state size N. expand: d_inner = expand·D.
        headdim: P; heads H = d_inner / P. d_conv: causal conv width. ngroups: G groups
        sharing B/C. chunk_size: SSD chunk length Q (tokens).
    """

    def __init__(self, d_model: int, d_state: int = 64, expand: int = 2, headdim: int = 64,
                 d_conv: int = 4, ngroups: int = 1, chunk_size: int = 64):
        super().__init__()
        self.d_model, self.d_state, self.ngroups, self.headdim = d_model, d_state, ngroups, headdim
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(f"expand*d_model = {self.d_inner} must be divisible by headdim {headdim}")
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups:
            raise ValueError(f"heads {self.nheads} must be divisible by ngroups {ngroups}")
        self.chunk_size = chunk_size
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=False)
        self.conv = nn.ModuleList(
            nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1) for _ in range(2)
        )
        # Per-direction SSM parameters, initialised as in mamba_ssm's Mamba2:
        # dt ~ logUniform[1e-3, 1e-1] stored through inverse softplus; A ~ U[1, 16]; D = 1.
        # The arithmetic runs on the CPU whatever the default device: on the meta device (parameter
        # counts before allocating) elementwise ops go through Python decompositions whose first
        # use costs ~1.5 s of imports, paid by every `lingen generate`.
        device = torch.get_default_device()
        dt = torch.exp(torch.rand(2, self.nheads, device="cpu") * (math.log(0.1) - math.log(1e-3))
                       + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter((dt + torch.log(-torch.expm1(-dt))).to(device))
        self.A_log = nn.Parameter(torch.log(torch.empty(2, self.nheads, device="cpu").uniform_(1, 16)).to(device))
        self.D = nn.Parameter(torch.ones(2, self.nheads))
        self.norm = GatedRMSNorm(self.d_inner, eps=1e-5)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """in_proj output B×L×(2·d_inner + 2·G·N + H) → (z B×L×d_inner, xBC B×L×conv_dim, dt_raw B×L×H)."""
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def scan_inputs(self, xBC: torch.Tensor, dt_raw: torch.Tensor, direction: int,
                    heads: tuple[int, int] | None = None):
        """One direction's conv and projections, before its SSD scan: ``(x, dt, A, B, C, D)`` as
        :func:`ssd.ssd_reference` takes them (x B×L×heads×P, B and C B×L×G×N).

        xBC: B×L×conv_dim, dt_raw: B×L×H, in the direction's scan order; direction 0 (forward)
        or 1 (backward). ``heads = (h0, h1)`` keeps only heads h0 … h1−1 (context parallelism,
        where each rank holds some heads of the whole sequence): xBC is then
        B×L×((h1−h0)·P + 2·G·N) (those heads' x channels, then all of B and C) and dt_raw B×L×(h1−h0).
        """
        b, l, _ = xBC.shape
        conv = self.conv[direction]
        weight, bias, nh = conv.weight, conv.bias, self.nheads
        dt_bias, A_log, D = self.dt_bias[direction], self.A_log[direction], self.D[direction]
        if heads is not None:
            h0, h1 = heads
            nh = h1 - h0
            channels = _conv_channels(self.d_inner, self.conv_dim, h0 * self.headdim, h1 * self.headdim, xBC.device)
            weight, bias = weight.index_select(0, channels), bias.index_select(0, channels)
            dt_bias, A_log, D = dt_bias[h0:h1], A_log[h0:h1], D[h0:h1]
        xBC = causal_depthwise_conv_silu(xBC, weight, bias)
        x, B, C = torch.split(xBC, [nh * self.headdim, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        B, C = B.reshape(b, l, self.ngroups, self.d_state), C.reshape(b, l, self.ngroups, self.d_state)
        if heads is not None and self.ngroups > 1:  # the groups of the heads h0 … h1−1, one per head
            B, C = (M.repeat_interleave(self.nheads // self.ngroups, dim=2)[:, :, h0:h1] for M in (B, C))
        dt = F.softplus(dt_raw + dt_bias)
        A = -torch.exp(A_log.float() if A_log.dtype in (torch.float16, torch.bfloat16) else A_log)  # ≥ fp32
        return x.reshape(b, l, nh, self.headdim), dt, A, B, C, D

    def scan(self, xBC: torch.Tensor, dt_raw: torch.Tensor, num_prefix: int = 0,
             heads: tuple[int, int] | None = None) -> torch.Tensor:
        """Both directions' scans over the whole sequence, summed: the mixer's sequence op.

        xBC, dt_raw: as :meth:`scan_inputs` (the first ``num_prefix`` tokens are review
        tokens); returns y B×L×(heads·P), before the gated norm and out_proj. The two
        directions' scans run as one batch (``ssd.ssd_scan_multi``), or, at inference on a CPU
        where :func:`branches.branches_enabled` with ``only_if_threads_sleep``, each direction's conv
        and scan on its own single-threaded worker (the same operators per direction: the same bits).
        """
        def direction(d: int):
            if d == 0:
                return self.scan_inputs(xBC, dt_raw, 0, heads)
            return self.scan_inputs(reorder_for_backward(xBC, num_prefix), reorder_for_backward(dt_raw, num_prefix), 1, heads)

        if select_backend(xBC.device) == "torch" and branches_enabled(xBC.device, only_if_threads_sleep=True):
            # each direction's conv and scan on its own single-threaded CPU worker (models/branches.py);
            # the same operators per direction as the batched scan: the same bits
            y_fwd, y_bwd = run_branches(
                [lambda d=d: ssd_scan_multi([direction(d)], chunk_size=self.chunk_size, backend="torch")[0]
                 for d in (0, 1)], xBC.device, only_if_threads_sleep=True)
        else:
            y_fwd, y_bwd = ssd_scan_multi([direction(0), direction(1)], chunk_size=self.chunk_size)
        b, l = xBC.shape[:2]
        y_fwd, y_bwd = y_fwd.reshape(b, l, -1), y_bwd.reshape(b, l, -1)
        # y_fwd + reorder_for_backward(y_bwd) as one scatter-add (the order is an involution);
        # in place at inference (y_fwd is the scan's own output); a kernel may have saved it for backward
        index = _backward_index(l, num_prefix, xBC.device)
        if torch.is_grad_enabled():
            return torch.index_add(y_fwd, 1, index, y_bwd)
        return y_fwd.index_add_(1, index, y_bwd)

    def forward(self, u: torch.Tensor, num_prefix: int = 0) -> torch.Tensor:
        """u: B×L×D (the first ``num_prefix`` tokens are review tokens) → B×L×D."""
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"BiMamba2 expects B×L×{self.d_model}, got {tuple(u.shape)}")
        z, xBC, dt_raw = self.split(self.in_proj(u))
        return self.out_proj(self.norm(self.scan(xBC, dt_raw, num_prefix), z))
