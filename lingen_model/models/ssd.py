"""The Mamba2 selective scan (state-space duality, SSD) and its backends.

Recurrence (Mamba2, Dao & Gu 2024, "Transformers are SSMs", §6), per head h with state
``S_t ∈ R^{N×P}`` (N = d_state, P = headdim)::

    S_t = exp(dt_t · A) · S_{t-1} + dt_t · B_t ⊗ x_t
    y_t = C_tᵀ S_t + D · x_t

Backends, same signature as mamba_ssm's ``mamba_chunk_scan_combined``:

* ``torch`` — :func:`ssd_chunked`, the chunked SSD algorithm of mamba_ssm's
  ``ssd_minimal`` in plain PyTorch: quadratic attention-like form inside chunks of
  length Q, and a linear recurrence over chunk states. Cost O(L·Q) — linear in L.
  The inter-chunk pass is a sequential loop over chunks (not the O((L/Q)²) segsum
  matrix of ``ssd_minimal``), so it stays linear for minute-long sequences.
* ``triton`` — mamba_ssm's fused kernels, used on CUDA when ``mamba_ssm`` imports.

:func:`ssd_reference` is the step-by-step recurrence, the ground truth in tests.
The backend is chosen by :func:`select_backend`; ``LINGEN_SCAN_BACKEND`` =
``auto`` (default) | ``torch`` | ``triton`` forces one.

Under Triton's interpreter (``TRITON_INTERPRET=1``, Triton's debugging mode that runs
kernels on CPU tensors) the ``triton`` backend also accepts CPU tensors when asked for
explicitly (``backend="triton"`` or ``LINGEN_SCAN_BACKEND=triton``); ``auto`` still never
picks it off CUDA. This exists for the CPU parity test of the Triton path
(tests/test_triton_interpreter.py), which also supplies the shims mamba-ssm needs there.
"""
from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from lingen_model.models.index_cache import index_cache

BACKENDS = ("torch", "triton")


def _check_scan_inputs(x, dt, A, B, C) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be B×L×H×P, got shape {tuple(x.shape)}")
    b, l, h, _ = x.shape
    if dt.shape != (b, l, h):
        raise ValueError(f"dt must be B×L×H = {(b, l, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must have shape (H,) = ({h},), got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (b, l) or B.shape != C.shape:
        raise ValueError(f"B and C must be B×L×G×N with B={b}, L={l}, got {tuple(B.shape)} and {tuple(C.shape)}")
    if h % B.shape[2]:
        raise ValueError(f"heads {h} not divisible by ngroups {B.shape[2]}")


def _expand_groups(M: torch.Tensor, nheads: int) -> torch.Tensor:
    """B×L×G×N → B×L×H×N (each group shared by H/G consecutive heads)."""
    g = M.shape[2]
    return M if g == nheads else M.repeat_interleave(nheads // g, dim=2)


def ssd_reference(x, dt, A, B, C, D=None, initial_state=None, return_final_state=False):
    """Naive step-by-step Mamba2 recurrence (the obviously-right reference).

    Args:
        x: B×L×H×P inputs.  dt: B×L×H positive step sizes (already softplus'd).
        A: H negative decay rates.  B, C: B×L×G×N input/output projections (G groups).
        D: optional H skip weights.  initial_state: optional B×H×P×N state.
    Returns:
        y: B×L×H×P (and the final B×H×P×N state if ``return_final_state``).
    """
    _check_scan_inputs(x, dt, A, B, C)
    b, l, h, p = x.shape
    Bh, Ch = _expand_groups(B, h), _expand_groups(C, h)
    state = x.new_zeros(b, h, p, B.shape[-1]) if initial_state is None else initial_state
    ys = []
    for i in range(l):
        decay = torch.exp(dt[:, i] * A)  # B×H
        state = state * decay[..., None, None] + (dt[:, i, :, None, None] * x[:, i, :, :, None]) * Bh[:, i, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, i]))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * D[:, None]
    return (y, state) if return_final_state else y


def ssd_chunked(x, dt, A, B, C, chunk_size=64, D=None, initial_state=None, return_final_state=False):
    """Chunked SSD scan in plain PyTorch (mamba_ssm ``ssd_minimal`` algorithm, linear inter-chunk pass).

    Same arguments and result as :func:`ssd_reference`; ``chunk_size`` Q is the chunk
    length in tokens (L need not be a multiple of Q: the tail is zero-padded, which is
    exact because padded steps come after every real one). Cost O(B·L·(G·Q·N + H·(Q·P + 2·N·P))).

    Written for the CPU, where the memory-bound work around the small matrix products and
    the number of separate operations (each one wakes the OpenMP threads) cost more than
    the products themselves:

    * B and C stay per group: ``C·Bᵀ`` is one Q×Q product per group, shared by the H/G
      heads of the group by broadcasting (no per-head copies); the chunk states and the
      entering-state outputs are one product per group with the group's heads side by side
      (``(H/G)·P`` columns, the token-major layout);
    * the discretised input ``dt·x`` is written once, head-major and padded, so the
      intra-chunk product needs no transposing copy; the decay-weighted copy for the chunk
      states is written token-major by the same multiply that weights it;
    * the intra-chunk decays ``exp(Σ a_{j+1..i})`` are ``exp(cum_i − cum_j)`` of the in-chunk
      cumulative log-decays (as mamba_ssm's Triton ``chunk_scan`` computes them), built in
      one Q×Q buffer per head that is clamped to [``EXP_FLOOR``, 0], exponentiated and
      multiplied in place by ``C·Bᵀ``, whose entries above the diagonal (the causal mask) are
      zeroed per group: exact zeros, and no ``exp`` of −inf, which is slow on CPU;
    * at inference every step writes into its destination (``out=``, in place): the padded
      buffers, each entering state straight into its slot (one op per chunk), the output.
      With autograd the same arithmetic runs out of place (bitwise the same result);
    * several independent scans of the same shape (the two directions of a bidirectional
      layer) run as one batch: :func:`ssd_chunked_multi`.

    Raises:
        ValueError: inconsistent shapes, ``chunk_size`` < 1.
    """
    _check_scan_inputs(x, dt, A, B, C)
    (y,), state = _ssd_batched([(x, dt, A, B, C, D)], chunk_size, initial_state, return_final_state)
    return (y, state) if return_final_state else y


#: Smallest log-decay given to ``exp`` in the intra-chunk scores. ``exp(−80) ≈ 1.8e-35`` is far below
#: what float32 (or float64) can add to a sum of the size these weights multiply, so the clamp changes
#: no output that matters; it keeps the inputs above float32's underflow (≈ −87.3), below which
#: torch's vectorised CPU ``exp`` falls back to a slow path (measured here: 1.3 M elements in 0.29 ms
#: when all are in [−5, 0], 27 ms when all are ≤ −88, 3.7 ms when half are −inf).
EXP_FLOOR = -80.0

#: Largest intra-chunk score buffer (bytes, all scans together) for which :func:`ssd_chunked_multi`
#: batches its scans. Batching saves per-operation overhead, which matters for short sequences
#: (4 s clips at 128²: 4 MB, ~5–8 % faster); past this size the doubled intermediates fall out of
#: the caches and the batched scan was slower than two scans (2.6× at 60 s, CFG batch 2, 2 cores).
MULTI_SCAN_MAX_BYTES = 8 * 2**20


def ssd_chunked_multi(scans, chunk_size=64):
    """Several independent SSD scans of the same shape as one batched :func:`ssd_chunked`.

    ``scans``: a sequence of ``(x, dt, A, B, C, D)`` tuples, each as in :func:`ssd_reference`
    (D may be None), all with the same shapes, dtype and device; e.g. the forward and
    backward directions of a bidirectional Mamba2 layer, whose A and D differ. Their padded
    inputs are written side by side along the batch, so every later step is one operation
    for all of them. Returns the list of outputs, each B×L×H×P (equal to one
    :func:`ssd_chunked` call per scan). Raises ValueError for inconsistent shapes.
    """
    scans = list(scans)
    if not scans:
        return []
    for x, dt, A, B, C, _ in scans:
        _check_scan_inputs(x, dt, A, B, C)
        if x.shape != scans[0][0].shape or B.shape != scans[0][3].shape or x.dtype != scans[0][0].dtype:
            raise ValueError("ssd_chunked_multi needs scans of one shape and dtype")
    b, l, h, _ = scans[0][0].shape
    # the fp32 Q×Q scores of all scans (chunk_size itself is checked by _ssd_batched)
    scores_bytes = len(scans) * b * h * -(-l // max(chunk_size, 1)) * chunk_size ** 2 * 4
    if scores_bytes > MULTI_SCAN_MAX_BYTES:  # large: one scan at a time keeps the intermediates in cache
        return [_ssd_batched([sc], chunk_size, None, False)[0][0] for sc in scans]
    return _ssd_batched(scans, chunk_size, None, False)[0]


def _ssd_batched(scans, chunk_size, initial_state, return_final_state):
    """The chunked scan of S same-shape scans stacked along the batch (S·B rows) → ([y_s], state).

    Half-precision inputs are scanned in fp32 (as mamba_ssm's kernels do) and the outputs cast back.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype = scans[0][0].dtype
    if out_dtype in (torch.float16, torch.bfloat16):
        f32 = [tuple(None if t is None else t.float() for t in sc) for sc in scans]
        init = None if initial_state is None else initial_state.float()
        ys, state = _ssd_batched(f32, chunk_size, init, return_final_state)
        return [y.to(out_dtype) for y in ys], state
    x0, _, _, B0, _, _ = scans[0]
    b, l, h, p = x0.shape
    g, n = B0.shape[2], B0.shape[3]
    sb = len(scans) * b  # every scan's batch, side by side
    r = h // g  # heads per group
    q = chunk_size
    pad = (-l) % q
    lp = l + pad
    c = lp // q
    # in place at inference; autograd needs the decays and products it saved untouched
    inplace = not torch.is_grad_enabled() or not any(t.requires_grad for sc in scans for t in sc[:5])
    if inplace:  # padded buffers written once (only the pad rows zeroed), head-major
        xd = x0.new_empty(sb, h, lp, p)  # discretised input dt·x
        Adt = x0.new_empty(sb, h, lp)  # log-decays dt·A (≤ 0)
        BC = x0.new_empty(2, sb, lp, g, n)
        for i, (x, dt, A, B, C, _) in enumerate(scans):
            rows = slice(i * b, (i + 1) * b)
            torch.mul(x.transpose(1, 2), dt.transpose(1, 2)[..., None], out=xd[rows, :, :l])
            torch.mul(dt.transpose(1, 2), A[:, None], out=Adt[rows, :, :l])
            BC[0, rows, :l], BC[1, rows, :l] = B, C
        if pad:
            xd[:, :, l:].zero_()
            Adt[:, :, l:].zero_()
            BC[:, :, l:].zero_()
        B, C = BC.unbind(0)
    else:
        xd = torch.cat([F.pad(x.transpose(1, 2) * dt.transpose(1, 2)[..., None], (0, 0, 0, pad))
                        for x, dt, *_ in scans])
        Adt = torch.cat([F.pad(dt.transpose(1, 2) * A[:, None], (0, pad)) for _, dt, A, *_ in scans])
        B = torch.cat([F.pad(sc[3], (0, 0, 0, 0, 0, pad)) for sc in scans])
        C = torch.cat([F.pad(sc[4], (0, 0, 0, 0, 0, pad)) for sc in scans])
    b1, b = b, sb  # one scan's batch; all scans'
    xd = xd.view(b, h, c, q, p)
    a_cum = torch.cumsum(Adt.view(b, h, c, q), dim=-1)  # B×H×c×Q, in-chunk cumulative
    Bg = B.reshape(b, c, q, g, n).transpose(2, 3)  # B×c×G×Q×N (views)
    Cg = C.reshape(b, c, q, g, n).transpose(2, 3)

    # 1) intra-chunk (diagonal blocks): y_i = sum_{j<=i} (C_i·B_j) exp(cum_i - cum_j) dt_j x_j
    # cum never rises along a chunk, so cum_i − cum_j ≤ 0 for j ≤ i; the entries above the diagonal
    # (j > i, ≥ 0) are clamped to 0 and zeroed by the causal mask on C·Bᵀ (r = H/G times smaller)
    # instead of being set to −inf: exp's vectorised CPU kernel takes a slow path for inputs below
    # float32's underflow (≈ −87.3, −inf included), ~10× slower over these buffers (docs/benchmarks.md)
    CB = Cg @ Bg.transpose(-1, -2)  # C·Bᵀ per group, B×c×G×Q×Q, causal: zero above the diagonal
    CB = CB.masked_fill_(_upper_mask(q, xd.device), 0.0).transpose(1, 2)[:, :, None]  # B×G×1×c×Q×Q
    scores = a_cum[..., :, None] - a_cum[..., None, :]  # B×H×c×Q×Q
    if inplace:
        scores.clamp_(min=EXP_FLOOR, max=0.0).exp_().view(b, g, r, c, q, q).mul_(CB)
    else:
        scores = (scores.clamp(min=EXP_FLOOR, max=0.0).exp().view(b, g, r, c, q, q) * CB).view(b, h, c, q, q)
    y_diag = scores @ xd  # B×H×c×Q×P

    # 2) state contributed by each chunk, decayed to the chunk end: B×c×H×P×N
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)[..., None]  # B×H×c×Q×1
    if inplace:  # weighted and laid out token-major (heads side by side) by one multiply
        xw = xd.new_empty(b, c, q, h, p)
        torch.mul(xd, decay_to_end, out=xw.permute(0, 3, 1, 2, 4))
    else:
        xw = (xd * decay_to_end).permute(0, 2, 3, 1, 4).contiguous()
    xw = xw.view(b, c, q, g, r * p).transpose(2, 3)  # B×c×G×Q×(r·P)
    chunk_states = (xw.transpose(-1, -2) @ Bg).view(b, c, h, p, n)

    # 3) linear recurrence over chunks: the state entering chunk k
    chunk_decay = torch.exp(a_cum[..., -1]).transpose(1, 2)[..., None, None]  # B×c×H×1×1
    states_in = torch.empty_like(chunk_states)
    state = xd.new_zeros(b, h, p, n) if initial_state is None else initial_state.to(xd.dtype)
    if inplace:  # each entering state written straight into its slot
        states_in[:, 0] = state
        for k in range(c - 1):
            torch.addcmul(chunk_states[:, k], states_in[:, k], chunk_decay[:, k], out=states_in[:, k + 1])
        if return_final_state:
            state = torch.addcmul(chunk_states[:, -1], states_in[:, -1], chunk_decay[:, -1])
    else:
        for k in range(c):
            states_in[:, k] = state
            state = torch.addcmul(chunk_states[:, k], state, chunk_decay[:, k])

    # 4) contribution of the entering state to each position of its chunk, then the sum
    y_state = Cg @ states_in.view(b, c, g, r * p, n).transpose(-1, -2)  # B×c×G×Q×(r·P)
    y_state = y_state.view(b, c, g, q, r, p).permute(0, 1, 3, 2, 4, 5)  # B×c×Q×G×r×P
    # token-major B×c×Q×H×P: a view for one group, a copy when the groups were outermost
    y_state = y_state.reshape(b, c, q, h, p) if g == 1 else y_state.contiguous().view(b, c, q, h, p)
    decay_from_start = torch.exp(a_cum).permute(0, 2, 3, 1)[..., None]  # B×c×Q×H×1
    y_diag = y_diag.permute(0, 2, 3, 1, 4)  # B×c×Q×H×P (a view)
    if inplace:
        out = torch.addcmul(y_diag, y_state, decay_from_start, out=y_state)
    else:
        out = torch.addcmul(y_diag, y_state, decay_from_start)
    out = out.view(b, lp, h, p)
    ys = []
    for i, (x, _, _, _, _, D) in enumerate(scans):
        y = out[i * b1:(i + 1) * b1, :l]
        if D is not None:
            y = y.addcmul_(x, D[:, None]) if inplace else torch.addcmul(y, x, D[:, None])
        ys.append(y)
    return ys, state


@index_cache(maxsize=8)
def _upper_mask_cpu(q: int) -> torch.Tensor:
    return torch.ones(q, q, dtype=torch.bool).triu_(1)


def _upper_mask(q: int, device) -> torch.Tensor:
    """Q×Q bool, True strictly above the diagonal (the causal mask of one chunk), cached."""
    return _upper_mask_cpu(q).to(device)


@functools.lru_cache(maxsize=1)
def _triton_kernel():
    """mamba_ssm's ``mamba_chunk_scan_combined`` if it imports, else None (never raises)."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined  # type: ignore
    except Exception:  # ImportError, missing CUDA libs, Triton errors
        return None
    return mamba_chunk_scan_combined


def triton_interpreter() -> bool:
    """True when Triton's interpreter is on (``TRITON_INTERPRET=1``): Triton kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "").strip() == "1"


def triton_available() -> bool:
    """True when mamba_ssm's Triton SSD kernel imports and a CUDA device is present."""
    return torch.cuda.is_available() and _triton_kernel() is not None


def select_backend(device: torch.device | str | None = None) -> str:
    """The scan backend for tensors on ``device``: ``"triton"`` or ``"torch"``.

    ``LINGEN_SCAN_BACKEND`` forces one (``torch`` | ``triton`` | ``auto``).
    Raises:
        ValueError: unknown value of ``LINGEN_SCAN_BACKEND``.
        RuntimeError: ``triton`` forced but mamba-ssm does not import or no CUDA device.
    """
    forced = os.environ.get("LINGEN_SCAN_BACKEND", "auto").strip().lower()
    if forced not in ("auto",) + BACKENDS:
        raise ValueError(f"LINGEN_SCAN_BACKEND must be auto, torch or triton, got {forced!r}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if forced == "torch":
        return "torch"
    usable = dev.type == "cuda" and triton_available()
    if forced == "triton":
        if triton_interpreter() and _triton_kernel() is not None:
            return "triton"  # interpreted kernels run on any device (tests only)
        if not usable:
            raise RuntimeError("LINGEN_SCAN_BACKEND=triton needs a CUDA device and mamba-ssm (pip install 'lingen[cuda]')")
        return "triton"
    return "triton" if usable else "torch"


def active_backend() -> str:
    """The backend a scan on the default device would use now (for ``lingen info``)."""
    return select_backend(None)


def ssd_scan_multi(scans, chunk_size=64, backend: str | None = None):
    """Several same-shape scans ``[(x, dt, A, B, C, D), ...]`` (shapes as in :func:`ssd_reference`)
    through the selected backend → list of B×L×H×P outputs: one batched :func:`ssd_chunked_multi`
    on ``torch``, one kernel call per scan on ``triton``.

    Raises:
        ValueError: inconsistent shapes (torch backend), an unknown backend.
        RuntimeError: ``triton`` without CUDA tensors and mamba-ssm.
    """
    scans = list(scans)
    if not scans:
        return []
    backend = backend or select_backend(scans[0][0].device)
    if backend == "torch":
        return ssd_chunked_multi(scans, chunk_size)
    return [ssd_scan(x, dt, A, B, C, chunk_size, D, backend) for x, dt, A, B, C, D in scans]


def ssd_scan(x, dt, A, B, C, chunk_size=64, D=None, backend: str | None = None):
    """Mamba2 scan through the selected backend. Shapes as in :func:`ssd_reference`; returns B×L×H×P."""
    backend = backend or select_backend(x.device)
    if backend == "triton":
        kernel = _triton_kernel()
        if kernel is None or not (x.is_cuda or triton_interpreter()):
            raise RuntimeError("triton scan backend needs CUDA tensors and mamba-ssm")
        return kernel(x, dt, A, B, C, chunk_size, D=D)
    if backend != "torch":
        raise ValueError(f"unknown scan backend {backend!r}; known: {BACKENDS}")
    return ssd_chunked(x, dt, A, B, C, chunk_size=chunk_size, D=D)
