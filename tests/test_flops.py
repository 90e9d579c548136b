"""The analytic FLOP model against torch's own counter (FlopCounterMode) on the pure-torch path.

FlopCounterMode counts matmul/bmm/conv/SDPA; on CPU it does not know the fused flash-attention
kernel, so the counted runs use the MATH SDPA backend, whose matmuls it sees. The scan runs
on the ``torch`` backend (the Triton kernels would count zero).
"""
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lingen_model import build_denoiser
from lingen_model.bench.flops import (
    FlopCount,
    bimamba2_flops,
    denoiser_flops,
    ssd_flops,
    tesa_flops,
    tesa_padded_grid,
    token_grid,
)
from lingen_model.models.config import get_config
from lingen_model.models.mamba2 import BiMamba2
from lingen_model.models.ssd import ssd_chunked
from lingen_model.models.tesa import TESA

SMALL = dict(width=48, depth=4, num_heads=2, ffn_dim=96, text_dim=24, headdim=16, d_state=8, chunk_size=16,
             in_channels=4, window=(2, 3, 3))
REL = 1e-9  # the FLOP model counts what torch counts: exact (1e-9 only absorbs float rounding of sums)


@pytest.fixture(autouse=True)
def torch_scan(monkeypatch):
    monkeypatch.setenv("LINGEN_SCAN_BACKEND", "torch")


def counted(fn, *args):
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn(*args)
    return fc


def module_flops(fc: FlopCounterMode, suffix: str) -> int:
    """Summed FLOPs of every module whose name ends with ``suffix`` (e.g. '.mixer' over all blocks)."""
    return sum(sum(v.values()) for k, v in fc.get_flop_counts().items() if k.endswith(suffix) and k.count(".") == 3)


def close(a, b, rel=REL):
    return abs(a - b) <= rel * max(abs(b), 1)


@pytest.mark.parametrize("mixer", ["mate", "attention"])
@pytest.mark.parametrize("shape,L,overrides", [
    ((5, 6, 6), 5, {}),
    ((3, 7, 5), 3, {}),                                 # odd H, W: patch padding
    ((7, 9, 11), 4, {"review_size": 0}),               # no review tokens; TESA pads in shifted layers
    ((2, 16, 6), 6, {"ngroups": 2, "chunk_size": 7}),  # groups; chunk not dividing the sequence
    ((1, 4, 4), 2, {"window": (4, 8, 8)}),             # windows clamped to the grid
])
def test_denoiser_flops_match_flop_counter(mixer, shape, L, overrides):
    torch.manual_seed(0)
    model = build_denoiser("tiny", mixer=mixer, **{**SMALL, **overrides}).eval()
    b = 2
    x = torch.randn(b, 4, *shape)
    ctx, mask = torch.randn(b, L, 24), torch.ones(b, L, dtype=torch.bool)
    fc = counted(model, x, torch.rand(b), ctx, mask)
    est = denoiser_flops(model.config, x.shape, batch=b, text_len=L)
    assert est.tokens == math.prod(model.token_grid(x.shape))
    assert close(est.total, fc.get_total_flops()), (est.total, fc.get_total_flops())
    if mixer == "mate":  # the depthwise conv (a conv2d, so in the counted total) against a hand count
        cfg = model.config
        channels = cfg.d_inner + 2 * cfg.ngroups * cfg.d_state
        seq = est.tokens + shape[0] * cfg.review_size ** 2
        per_block = 2 * 2 * b * channels * (seq + cfg.d_conv - 1) * cfg.d_conv  # 2 directions, L + k − 1 outputs
        assert est.components["conv"] == cfg.depth * per_block
    # component by component (summed over blocks), so errors cannot cancel out
    c = est.components
    mixer_keys = [k for k in c if k not in ("patch_embed", "conditioning", "text_proj", "final_layer",
                                            "cross_attention", "ffn")]
    assert close(sum(c[k] for k in mixer_keys), module_flops(fc, ".mixer"))
    assert close(c["cross_attention"], module_flops(fc, ".cross"))
    assert close(c["ffn"], module_flops(fc, ".ffn"))


@pytest.mark.parametrize("l,q", [(50, 16), (64, 16), (5, 8)])
def test_ssd_flops_match_counter(l, q):
    b, h, p, n = 2, 3, 4, 5
    x = torch.randn(b, l, h, p)
    dt = torch.rand(b, l, h)
    A = -torch.rand(h)
    B, C = torch.randn(b, l, 1, n), torch.randn(b, l, 1, n)
    fc = counted(lambda: ssd_chunked(x, dt, A, B, C, chunk_size=q))
    assert close(ssd_flops(b, l, h, p, n, q), fc.get_total_flops())


def test_bimamba2_flops_match_counter():
    cfg = get_config("tiny", **SMALL)
    m = BiMamba2(cfg.width, cfg.d_state, cfg.expand, cfg.headdim, cfg.d_conv, cfg.ngroups, cfg.chunk_size)
    u = torch.randn(2, 37, cfg.width)
    fc = counted(m, u, 3)
    f = bimamba2_flops(cfg, 2, 37)
    assert close(f["ma_projections"] + f["ssd_scan"] + f["conv"], fc.get_total_flops())
    assert f["conv"] == 2 * 2 * 2 * (cfg.d_inner + 2 * cfg.ngroups * cfg.d_state) * (37 + cfg.d_conv - 1) * cfg.d_conv


@pytest.mark.parametrize("grid,shifted", [((5, 7, 6), True), ((5, 7, 6), False), ((1, 2, 9), True)])
def test_tesa_flops_match_counter(grid, shifted):
    cfg = get_config("tiny", **SMALL)
    m = TESA(cfg.width, cfg.num_heads, cfg.window)
    x = torch.randn(2, math.prod(grid), cfg.width)
    fc = counted(m, x, grid, shifted)
    assert close(sum(tesa_flops(cfg, 2, grid, shifted).values()), fc.get_total_flops())


def test_tesa_padding_rules():
    # windows clamped to the grid, the grid padded to whole windows; a shift rolls into the same slots
    assert tesa_padded_grid((5, 8, 3), (4, 4, 4), shifted=False) == ((8, 8, 3), 4 * 4 * 3)
    assert tesa_padded_grid((5, 8, 3), (4, 4, 4), shifted=True) == ((8, 8, 3), 4 * 4 * 3)  # rolled, not padded


def test_lingen_is_linear_and_dit_quadratic_in_tokens():
    """Doubling the clip length doubles LinGen's FLOPs (up to fixed terms) and ~quadruples the DiT's attention."""
    lin, dit = get_config("small", "mate"), get_config("small", "attention")
    a, b = denoiser_flops(lin, (400, 32, 32)), denoiser_flops(lin, (800, 32, 32))
    assert 1.98 < b.total / a.total < 2.02
    a, b = denoiser_flops(dit, (400, 32, 32)), denoiser_flops(dit, (800, 32, 32))
    assert b.components["self_attention"] == 4 * a.components["self_attention"]
    assert b.total / a.total > 3.5


def test_paper_scale_needs_no_model_and_dit_attention_dominates():
    dit = denoiser_flops(get_config("4b", "attention"), (69, 64, 64))
    n, d, depth = 69 * 32 * 32, 3072, 24
    assert dit.components["self_attention"] == 4 * n * n * d * depth
    assert dit.components["self_attention"] > 0.5 * dit.total


def test_flopcount_add_and_token_grid():
    cfg = get_config("tiny")
    assert token_grid(cfg, (1, 8, 9, 15, 17)) == (9, 8, 9)
    s = FlopCount({"a": 1, "b": 2}, 4) + FlopCount({"b": 3, "c": 4}, 4)
    assert s.components == {"a": 1, "b": 5, "c": 4} and s.total == 10


@pytest.mark.parametrize("call", [
    lambda: denoiser_flops(get_config("tiny"), (4, 4)),
    lambda: denoiser_flops(get_config("tiny"), (0, 4, 4)),
    lambda: denoiser_flops(get_config("tiny"), (1, 4, 4), batch=0),
    lambda: ssd_flops(1, 0, 1, 1, 1, 1),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
