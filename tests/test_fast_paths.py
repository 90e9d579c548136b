"""The CPU fast paths (issue 19) against plain references: float64, fresh random inputs, logged seeds.

* ``ssd_chunked`` gradients vs autograd through the naive recurrence (the inference path runs
  in place; the training path must not);
* ``causal_depthwise_conv_silu`` vs a plain loop (and short sequences, L < K);
* ``reorder_for_backward``'s gather vs cat + flip;
* TESA's window slots vs ``window_ids``;
* the embedded ``lingen-tiny`` denoiser in float32 vs the same weights in float64 with every
  mixer replaced by its reference (naive scan recurrence, loop conv, masked full attention).
"""
import copy

import math

import pytest
import torch
import torch.nn.functional as F

from lingen_model.models import mamba2 as mamba2_mod
from lingen_model.models.mamba2 import causal_depthwise_conv_silu, reorder_for_backward
from lingen_model.generation.pipeline import embedded_model_path
from lingen_model.models.ssd import ssd_chunked, ssd_reference
from lingen_model.models.tesa import TESA, window_ids, window_layout
from test_mixers import causal_depthwise_conv_ref


def fresh_seed():
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    print(f"seed {seed}")
    return seed


def scan_inputs(b, l, h, p, g, n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen, dtype=torch.float64)
    dt = torch.rand(b, l, h, generator=gen, dtype=torch.float64) * 0.5 + 1e-3
    A = -torch.rand(h, generator=gen, dtype=torch.float64) * 3 - 0.05
    B = torch.randn(b, l, g, n, generator=gen, dtype=torch.float64)
    C = torch.randn(b, l, g, n, generator=gen, dtype=torch.float64)
    D = torch.randn(h, generator=gen, dtype=torch.float64)
    return x, dt, A, B, C, D


def test_quadratic_scan_ref_is_the_recurrence():
    """The quadratic-form reference used below agrees with the step-by-step recurrence."""
    x, dt, A, B, C, D = scan_inputs(2, 30, 4, 3, 2, 5, fresh_seed())
    torch.testing.assert_close(_quadratic_scan_ref(x, dt, A, B, C, D=D), ssd_reference(x, dt, A, B, C, D),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("l,q,g", [(23, 8, 1), (17, 5, 2), (9, 16, 3)])
def test_chunked_gradients_match_reference(l, q, g):
    inputs = [t.requires_grad_() for t in scan_inputs(2, l, 6, 4, g, 5, fresh_seed())]
    w = torch.randn(2, l, 6, 4, dtype=torch.float64)
    grads_ref = torch.autograd.grad((ssd_reference(*inputs) * w).sum(), inputs)
    grads = torch.autograd.grad((ssd_chunked(*inputs[:5], chunk_size=q, D=inputs[5]) * w).sum(), inputs)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_chunked_no_grad_equals_grad_mode():
    """The in-place (no_grad) path and the autograd path give the same numbers."""
    x, dt, A, B, C, D = scan_inputs(1, 70, 4, 8, 2, 6, fresh_seed())
    y_grad = ssd_chunked(x.requires_grad_(), dt, A, B, C, chunk_size=16, D=D)
    with torch.no_grad():
        y = ssd_chunked(x, dt, A, B, C, chunk_size=16, D=D)
    torch.testing.assert_close(y, y_grad.detach(), rtol=0, atol=0)


def conv_loop_ref(x, weight, bias):
    """y[t, c] = silu(bias[c] + sum_k w[c, k] · x[t - (K-1) + k, c]): the loop reference of test_mixers, then SiLU."""
    return F.silu(causal_depthwise_conv_ref(x, weight, bias))


@pytest.mark.parametrize("l,k", [(1, 4), (3, 4), (20, 4), (9, 2)])
@pytest.mark.parametrize("grad", [False, True])
def test_causal_depthwise_conv_matches_loop(l, k, grad):
    gen = torch.Generator().manual_seed(fresh_seed())
    x = torch.randn(2, l, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 1, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(5, generator=gen, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        y = causal_depthwise_conv_silu(x, w, bias)
    torch.testing.assert_close(y, conv_loop_ref(x, w, bias), rtol=1e-12, atol=1e-12)


def test_conv_windows_ref_is_the_loop():
    gen = torch.Generator().manual_seed(fresh_seed())
    x, w, bias = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((2, 7, 3), (3, 1, 4), (3,)))
    torch.testing.assert_close(_conv_windows_ref(x, w, bias), conv_loop_ref(x, w, bias), rtol=1e-12, atol=1e-12)


def test_causal_depthwise_conv_gradients():
    gen = torch.Generator().manual_seed(fresh_seed())
    x = torch.randn(1, 11, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(causal_depthwise_conv_silu, (x, w, bias))


@pytest.mark.parametrize("l,r", [(10, 0), (10, 3), (3, 3), (4, 3), (1, 0)])
def test_reorder_for_backward_is_prefix_then_reversed(l, r):
    seq = torch.arange(2 * l * 2).view(2, l, 2)
    expected = torch.cat([seq[:, :r], seq[:, r:].flip(1)], dim=1)
    assert torch.equal(reorder_for_backward(seq, r), expected)
    assert torch.equal(reorder_for_backward(expected, r), seq)


@pytest.mark.parametrize("grid,window,shifted", [((5, 6, 7), (2, 4, 3), True), ((4, 8, 8), (4, 4, 4), False),
                                                 ((9, 8, 8), (4, 4, 4), True), ((1, 3, 2), (4, 4, 4), True),
                                                 ((6, 5, 9), (4, 2, 4), True)])
def test_window_layout_agrees_with_window_ids(grid, window, shifted):
    """Token i may attend to token j in the rolled slot layout exactly when the padded-grid
    windows of ``window_ids`` (the masked-full-attention reference's windows) put them together."""
    slots, key_ok, allowed = window_layout(grid, window, shifted)
    n = grid[0] * grid[1] * grid[2]
    assert slots.shape == (n,) and len(set(slots.tolist())) == n  # every token its own slot
    assert int(key_ok.sum()) == n
    nwin, lw = key_ok.shape
    assert torch.equal(key_ok.view(-1)[slots], torch.ones(n, dtype=torch.bool))
    assert nwin * lw == math.prod(-(-g // min(w, g)) * min(w, g) for g, w in zip(grid, window))  # no shift padding
    ids = window_ids(grid, window, shifted)
    win, pos = slots // lw, slots % lw
    may = win[:, None] == win[None, :]
    if allowed is not None:
        may &= allowed[win[:, None], pos[:, None], pos[None, :]]
        assert allowed.any(-1).all()  # no slot's query is left without a key (a NaN row)
    assert torch.equal(may, ids[:, None] == ids[None, :])


# ---------------------------------------------------------------- embedded weights, end to end


def _masked_full_attention(self: TESA, x, grid, shifted=False):
    ids = window_ids(grid, self.window, shifted).to(x.device)
    q, k, v = self.qkv_heads(x)
    att = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    att = att.masked_fill(~(ids[:, None] == ids[None, :]), float("-inf")).softmax(-1)
    return self.proj((att @ v).transpose(1, 2).reshape(x.shape))


def _quadratic_scan_ref(x, dt, A, B, C, chunk_size=64, D=None, backend=None):
    """SSD in its full quadratic ("attention") form over the whole sequence (Dao & Gu 2024, §3):
    y_i = sum_{j<=i} (C_i·B_j) exp(sum a_{j+1..i}) dt_j x_j + D x_i; no chunks, no recurrence."""
    h = x.shape[2]
    Bh, Ch = (M.repeat_interleave(h // M.shape[2], dim=2) for M in (B, C))
    cs = torch.cumsum(dt * A, dim=1)  # B×L×H
    seg = cs[:, :, None, :] - cs[:, None, :, :]  # [b, i, j, h] = sum a_{j+1..i}
    causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()[None, :, :, None]
    decay = seg.masked_fill(~causal, float("-inf")).exp()
    scores = torch.einsum("bihn,bjhn->bijh", Ch, Bh) * decay
    return torch.einsum("bijh,bjhp->bihp", scores, x * dt[..., None]) + x * D[:, None]


def _conv_windows_ref(x, weight, bias):
    """Causal depthwise conv as explicit windows: pad K−1 zeros in front, unfold, contract; then SiLU.
    (``F.conv1d`` would be the layer's original form, but its float64 depthwise CPU path is very slow.)"""
    k = weight.shape[-1]
    windows = F.pad(x, (0, 0, k - 1, 0)).unfold(1, k, 1)  # B×L×C×K, [t, c, j] = x[t − (K−1) + j, c]
    return F.silu(torch.einsum("blck,ck->blc", windows, weight[:, 0]) + bias)


@pytest.mark.skipif(not (embedded_model_path() / "config.json").is_file(), reason="embedded weights not installed")
def test_embedded_denoiser_float32_matches_float64_reference(monkeypatch):
    """The shipped weights through the fast paths (float32) vs the same weights through the
    plain references in float64: the speed work did not change the model's maths."""
    from lingen_model.generation.checkpoint import load_checkpoint

    seed = fresh_seed()
    den32, _, _ = load_checkpoint(embedded_model_path())
    den64 = copy.deepcopy(den32).double()
    cfg = den32.config
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, cfg.in_channels, 5, 8, 8, generator=gen)  # 80 tokens + 20 review: 2 chunks of 64
    t = torch.tensor([0.3, 0.8])
    ctx = torch.randn(2, 5, cfg.text_dim, generator=gen)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with torch.no_grad():
        y32 = den32(z, t, ctx, mask)
        # BiMamba2 scans both directions through ssd_scan_multi: each scan by the quadratic reference
        monkeypatch.setattr(mamba2_mod, "ssd_scan_multi",
                            lambda scans, chunk_size=64: [_quadratic_scan_ref(x, dt, A, B, C, D=D)
                                                          for x, dt, A, B, C, D in scans])
        monkeypatch.setattr(mamba2_mod, "causal_depthwise_conv_silu", _conv_windows_ref)
        monkeypatch.setattr(TESA, "forward", _masked_full_attention)
        y64 = den64(z.double(), t.double(), ctx.double(), mask)
    rel = ((y32.double() - y64).abs().max() / y64.abs().max()).item()
    print(f"max |float32 fast - float64 reference| / max |reference| = {rel:.2e}")
    assert rel < 1e-4
