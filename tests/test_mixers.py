"""MATE pieces against plain references: bidirectional Mamba2, RMS orders, review tokens, TESA."""
import contextlib
import itertools
import os
import threading
import zlib

import pytest
import torch
import torch.nn.functional as F

from lingen_model.models.config import get_config
from lingen_model.models.denoiser import MABranch
import lingen_model.models.mamba2 as mamba2_module
from lingen_model.models.mamba2 import BiMamba2
from lingen_model.models.scan_order import (
    SCAN_ORDERS,
    review_tokens,
    rms_permutation,
    scan_order,
)
from lingen_model.models.ssd import ssd_reference
from lingen_model.models.tesa import TESA, window_ids


def fresh_seed():
    """A seed fixed per test id (crc32 of pytest's node id, parameters included): each parametrised
    case gets its own inputs, and a failure reruns with the very same ones."""
    return zlib.crc32(os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].encode())


# ---------------------------------------------------------------- bidirectional Mamba2

def causal_depthwise_conv_ref(x, weight, bias):
    """Plain loop: y[t, c] = bias[c] + sum_k w[c, k] · x[t - (K-1) + k, c] (zero before the start)."""
    l, c = x.shape[-2:]
    k = weight.shape[-1]
    y = torch.zeros_like(x) + bias
    for t in range(l):
        for j in range(k):
            s = t - (k - 1) + j
            if s >= 0:
                y[..., t, :] += weight[:, 0, j] * x[..., s, :]
    return y


def one_direction_ref(m: BiMamba2, xBC, dt_raw, d):
    xBC = F.silu(causal_depthwise_conv_ref(xBC, m.conv[d].weight, m.conv[d].bias))
    x, B, C = torch.split(xBC, [m.d_inner, m.ngroups * m.d_state, m.ngroups * m.d_state], dim=-1)
    b, l, _ = x.shape
    dt = F.softplus(dt_raw + m.dt_bias[d])
    y = ssd_reference(x.reshape(b, l, m.nheads, m.headdim), dt, -torch.exp(m.A_log[d]),
                      B.reshape(b, l, m.ngroups, m.d_state), C.reshape(b, l, m.ngroups, m.d_state), m.D[d])
    return y.reshape(b, l, m.d_inner)


@pytest.fixture
def two_torch_threads():
    """At least two torch threads (the CPU-branches path needs them), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("num_prefix", [0, 3])
@pytest.mark.parametrize("path", ["autograd", "inference", "inference-cpu-branches"])
def test_bimamba_equals_forward_plus_flipped_backward(num_prefix, path, monkeypatch, two_torch_threads):
    """The layer against the plain per-direction recurrence, on each of its code paths: with autograd
    (one batched scan, out of place), at inference (one batched scan, in place) and at inference with
    each direction on its own CPU worker thread (models/branches.py; checked to run there)."""
    monkeypatch.setenv("LINGEN_CPU_BRANCHES", "on" if path == "inference-cpu-branches" else "off")
    ran_on = []
    real_run_branches = mamba2_module.run_branches

    def spy(branches, device, **kw):
        def tag(fn):
            def call():
                ran_on.append(threading.current_thread().name)
                return fn()
            return call
        return real_run_branches([tag(fn) for fn in branches], device, **kw)

    monkeypatch.setattr(mamba2_module, "run_branches", spy)
    torch.manual_seed(fresh_seed())
    m = BiMamba2(d_model=16, d_state=8, expand=2, headdim=8, d_conv=4, ngroups=2, chunk_size=5).double()
    with torch.no_grad():  # make the two directions differ
        for p in (m.dt_bias, m.A_log, m.D):
            p.add_(torch.randn_like(p) * 0.3)
    u = torch.randn(2, 23, 16, dtype=torch.float64)
    z, xBC, dt_raw = m.split(m.in_proj(u))
    y_f = one_direction_ref(m, xBC, dt_raw, 0)
    # backward: prefix first, then the video part reversed; result mapped back by hand
    R = num_prefix
    xb = torch.cat([xBC[:, :R], xBC[:, R:].flip(1)], 1)
    db = torch.cat([dt_raw[:, :R], dt_raw[:, R:].flip(1)], 1)
    yb = one_direction_ref(m, xb, db, 1)
    y_b = torch.cat([yb[:, :R], yb[:, R:].flip(1)], 1)
    expected = m.out_proj(m.norm(y_f + y_b, z))
    with torch.no_grad() if path.startswith("inference") else contextlib.nullcontext():
        out = m(u, num_prefix=R)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    if path == "inference-cpu-branches":
        assert len(ran_on) == 2 and len(set(ran_on)) == 2 and all(n.startswith("lingen-branch") for n in ran_on)
    else:
        assert ran_on == []


def test_bimamba_is_bidirectional():
    torch.manual_seed(0)
    m = BiMamba2(16, d_state=8, headdim=8, chunk_size=4)
    u = torch.randn(1, 20, 16)
    u2 = u.clone()
    u2[:, -1] += 1.0
    u3 = u.clone()
    u3[:, 0] += 1.0
    assert not torch.allclose(m(u)[:, 0], m(u2)[:, 0])  # last token reaches the first (backward scan)
    assert not torch.allclose(m(u)[:, -1], m(u3)[:, -1])  # first reaches the last (forward scan)


# ---------------------------------------------------------------- Rotary Major Scan

@pytest.mark.parametrize("grid", [(3, 5, 7), (1, 3, 2), (5, 1, 1), (4, 4, 4)])
def test_rms_orders_are_permutations_and_invert(grid):
    t, h, w = grid
    x = torch.randn(2, t * h * w, 3)
    for order in SCAN_ORDERS:
        perm, inv = rms_permutation(grid, order)
        assert sorted(perm.tolist()) == list(range(t * h * w))
        torch.testing.assert_close(x[:, perm][:, inv], x)
        # reference: nested loops over the axes in `order`, last one fastest
        sizes = {"t": t, "h": h, "w": w}
        expected = []
        for a, b, c in itertools.product(*(range(sizes[ax]) for ax in order)):
            coord = dict(zip(order, (a, b, c)))
            expected.append((coord["t"] * h + coord["h"]) * w + coord["w"])
        assert perm.tolist() == expected


def test_scan_order_rotates_with_layer():
    assert [scan_order(i) for i in range(8)] == list(SCAN_ORDERS) * 2
    assert scan_order(2) == ("h", "w", "t")  # temporal row-major: time fastest


def test_rms_rejects_bad_input():
    with pytest.raises(ValueError):
        rms_permutation((0, 2, 2), ("t", "h", "w"))
    with pytest.raises(ValueError):
        rms_permutation((1, 2, 2), ("t", "t", "w"))


# ---------------------------------------------------------------- review tokens

@pytest.mark.parametrize("grid,r", [((3, 4, 6), 2), ((2, 5, 3), 1), ((2, 4, 4), 3)])
def test_review_tokens_are_per_frame_pools_in_rms_order(grid, r):
    t, h, w = grid
    x = torch.randn(2, t * h * w, 5)
    for order in SCAN_ORDERS:
        rev = review_tokens(x, grid, r, order)
        assert rev.shape == (2, t * r * r, 5)
        frames = x.view(2, t, h, w, 5)
        ref = {}
        for ti in range(t):  # explicit adaptive pooling windows (floor/ceil bounds as in torch)
            for i in range(r):
                for j in range(r):
                    hs, he = (i * h) // r, -(-((i + 1) * h) // r)
                    ws, we = (j * w) // r, -(-((j + 1) * w) // r)
                    ref[(ti, i, j)] = frames[:, ti, hs:he, ws:we].mean(dim=(1, 2))
        sizes = {"t": t, "h": r, "w": r}
        expected = []
        for a, b, c in itertools.product(*(range(sizes[ax]) for ax in order)):
            coord = dict(zip(order, (a, b, c)))
            expected.append(ref[(coord["t"], coord["h"], coord["w"])])
        torch.testing.assert_close(rev, torch.stack(expected, 1))
    assert review_tokens(x, grid, 0, SCAN_ORDERS[0]).shape == (2, 0, 5)


def test_review_prefix_first_in_both_directions_and_dropped():
    cfg = get_config("tiny", width=32, num_heads=2, headdim=16, d_state=8, review_size=2, chunk_size=8)
    branch = MABranch(cfg)
    grid = (3, 4, 5)
    n = 60
    x = torch.randn(2, n, 32)
    seen = {}

    def spy(xBC, dt_raw, direction, heads=None, _orig=branch.mamba.scan_inputs):
        seen[direction] = xBC.detach().clone()
        return _orig(xBC, dt_raw, direction, heads)

    branch.mamba.scan_inputs = spy
    for layer in range(4):
        y = branch(x, grid, layer)
        assert y.shape == x.shape  # review outputs dropped
        order = scan_order(layer)
        R = grid[0] * 4
        rev = review_tokens(x, grid, 2, order)
        perm, _ = rms_permutation(grid, order)
        _, xBC_rev, _ = branch.mamba.split(branch.mamba.in_proj(rev))
        _, xBC_vid, _ = branch.mamba.split(branch.mamba.in_proj(x[:, perm]))
        assert seen[0].shape[1] == R + n and seen[1].shape[1] == R + n
        torch.testing.assert_close(seen[0][:, :R], xBC_rev)  # prefix first, forward
        torch.testing.assert_close(seen[1][:, :R], xBC_rev)  # prefix first, backward too
        torch.testing.assert_close(seen[0][:, R:], xBC_vid)
        torch.testing.assert_close(seen[1][:, R:], xBC_vid.flip(1))  # video reversed


# ---------------------------------------------------------------- TESA

def masked_full_attention_ref(m: TESA, x, grid, shifted):
    ids = window_ids(grid, m.window, shifted)
    mask = ids[:, None] == ids[None, :]
    q, k, v = m.qkv_heads(x)
    att = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    out = (att @ v).transpose(1, 2).reshape(x.shape)
    return m.proj(out)


def window_ids_ref(grid, window, shifted):
    """Independent loop version: per axis, clamp the window, shift by half when shifted and > 1 window."""
    out = []
    per_axis = []
    for n, w in zip(grid, window):
        w = min(w, n)
        s = w // 2 if (shifted and w < n) else 0
        per_axis.append([(c + s) // w for c in range(n)])
    for a, b, c in itertools.product(*per_axis):
        out.append((a, b, c))
    return out


@pytest.mark.parametrize("grid", [(4, 4, 4), (5, 6, 7), (3, 9, 2), (1, 5, 5)])
@pytest.mark.parametrize("shifted", [False, True])
def test_tesa_equals_masked_full_attention(grid, shifted):
    torch.manual_seed(fresh_seed())
    m = TESA(16, 2, window=(2, 4, 3)).double()
    x = torch.randn(2, grid[0] * grid[1] * grid[2], 16, dtype=torch.float64)
    torch.testing.assert_close(m(x, grid, shifted), masked_full_attention_ref(m, x, grid, shifted))
    # window ids agree with the independent loop (same-window relation)
    ids = window_ids(grid, m.window, shifted).tolist()
    ref = window_ids_ref(grid, m.window, shifted)
    for i in range(0, len(ids), 7):
        for j in range(0, len(ids), 5):
            assert (ids[i] == ids[j]) == (ref[i] == ref[j])


def test_tesa_shift_never_wraps_and_changes_windows():
    grid, window = (4, 8, 8), (4, 4, 4)
    a, b = window_ids(grid, window, False), window_ids(grid, window, True)
    assert not torch.equal(a, b)
    coords = list(itertools.product(range(4), range(8), range(8)))
    # first and last columns are never in one window (no wrap-around seam)
    for (i, ci), (j, cj) in itertools.product(enumerate(coords), repeat=2):
        if ci[2] == 0 and cj[2] == 7 and ci[:2] == cj[:2]:
            assert b[i] != b[j]


def test_rms_permutation_cached_in_inference_mode_serves_training():
    """A permutation first built under inference_mode (sampling, benchmarks) must not poison a later
    training forward that autograd records (regression: 'Inference tensors cannot be saved for backward')."""
    from lingen_model.models.scan_order import _perm, review_tokens

    _perm.cache_clear()
    grid, order = (3, 5, 7), ("h", "w", "t")
    with torch.inference_mode():
        review_tokens(torch.randn(1, 105, 4), grid, 2, order)
    x = torch.randn(1, 105, 4, requires_grad=True)
    review_tokens(x, grid, 2, order).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mixer_index_caches_filled_in_inference_mode_serve_training():
    """Every cached index of MATE (RMS permutation, TESA window slots, backward scan order) built
    first under inference_mode must still serve a training forward and backward."""
    from lingen_model import build_denoiser
    from lingen_model.models.mamba2 import _backward_index_cpu
    from lingen_model.models.scan_order import _perm
    from lingen_model.models.tesa import _window_layout_cpu

    for cached in (_perm, _window_layout_cpu, _backward_index_cpu):
        cached.cache_clear()
    torch.manual_seed(0)
    model = build_denoiser("tiny", width=32, depth=2, num_heads=2, headdim=16, d_state=8, ffn_dim=64, chunk_size=16,
                           window=(2, 2, 2))
    args = (torch.randn(1, 8, 3, 6, 6), torch.rand(1), torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool))
    with torch.inference_mode():
        model(*args)
    model(*args).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
