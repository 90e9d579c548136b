"""How the MATE mixer is wired inside the denoiser, checked against hand-written expectations:

* the MA-branch's Rotary-Major-Scan permutation, its inverse (Rev-RMS) and the dropping of
  the review-token outputs, with the Mamba2 core replaced by known maps;
* the scan order of every layer (LinGen, arXiv 2412.09856, §3.2: the Rotary Major Scan
  cycles through four axis orders, one per layer), written out here as nested loops;
* TESA windows shifted on odd layers only (Swin, Liu et al. 2021, alternating shifts);
* the whole denoiser's receptive field: global through the MA-branch, local without it.
"""
import itertools
import math

import pytest
import torch
import torch.nn as nn

from lingen_model import build_denoiser
from lingen_model.models.config import get_config
from lingen_model.models.denoiser import MABranch
from lingen_model.models.mamba2 import BiMamba2
from lingen_model.models.tesa import TESA

SMALL = dict(width=48, depth=4, num_heads=2, ffn_dim=96, text_dim=24, headdim=16, d_state=8, chunk_size=16,
             in_channels=4, window=(2, 2, 2))

# The design's scan orders, layer by layer (slowest axis first, the last one varies fastest):
# spatial row-major, spatial column-major, temporal row-major, temporal column-major, then again.
DESIGN_ORDERS = {0: "thw", 1: "twh", 2: "hwt", 3: "wht", 4: "thw", 5: "twh", 6: "hwt", 7: "wht"}


def design_scan_positions(grid, order: str) -> torch.Tensor:
    """pos[j] = place of canonical token j (index (t·H + h)·W + w) in the scan ``order`` (nested loops)."""
    t, h, w = grid
    sizes = {"t": t, "h": h, "w": w}
    pos = torch.empty(t * h * w, dtype=torch.long)
    for k, idx in enumerate(itertools.product(*(range(sizes[a]) for a in order))):
        c = dict(zip(order, idx))
        pos[(c["t"] * h + c["h"]) * w + c["w"]] = k
    return pos


class IdentityMamba(nn.Module):
    """Stands in for BiMamba2: returns its input sequence unchanged."""

    def forward(self, seq, num_prefix=0):
        return seq


class PositionTagMamba(nn.Module):
    """Stands in for BiMamba2: adds each token's place in the sequence it is given (0, 1, 2, …)
    to every channel, and records ``num_prefix``. Tells where every token sat in the scan."""

    def __init__(self):
        super().__init__()
        self.prefixes = []

    def forward(self, seq, num_prefix=0):
        self.prefixes.append(num_prefix)
        return seq + torch.arange(seq.shape[1], dtype=seq.dtype)[None, :, None]


def _branch(review_size=2):
    cfg = get_config("tiny", width=8, num_heads=2, headdim=8, d_state=4, review_size=review_size, chunk_size=8)
    return MABranch(cfg)


@pytest.mark.parametrize("grid", [(3, 4, 5), (2, 3, 3), (4, 2, 6)])
@pytest.mark.parametrize("review_size", [0, 2])
@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_ma_branch_with_identity_mamba_is_the_identity(grid, review_size, layer):
    """RMS permutation, review prefix, drop of the prefix outputs, Rev-RMS: together the identity."""
    branch = _branch(review_size)
    branch.mamba = IdentityMamba()
    x = torch.randn(2, grid[0] * grid[1] * grid[2], 8, generator=torch.Generator().manual_seed(layer))
    assert torch.equal(branch(x, grid, layer), x)


@pytest.mark.parametrize("grid", [(3, 4, 5), (2, 3, 3)])
@pytest.mark.parametrize("layer", range(8))
def test_ma_branch_scans_in_the_design_order_and_drops_the_review_outputs(grid, layer):
    """With a core that adds each token's sequence position, the output at canonical token j is
    x_j + R + (place of j in the layer's scan), R = T·r·r review tokens in front."""
    r = 2
    branch = _branch(r)
    branch.mamba = core = PositionTagMamba()
    n = grid[0] * grid[1] * grid[2]
    x = torch.randn(1, n, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + layer))
    y = branch.double()(x, grid, layer)
    R = grid[0] * r * r
    assert core.prefixes == [R]
    expected = x + (R + design_scan_positions(grid, DESIGN_ORDERS[layer])).double()[None, :, None]
    assert torch.equal(y, expected)


def test_design_scan_orders_differ_on_a_cube():
    """The four orders are four different permutations (so the test above can tell them apart)."""
    perms = {tuple(design_scan_positions((3, 3, 3), DESIGN_ORDERS[l]).tolist()) for l in range(4)}
    assert len(perms) == 4


def _spy_denoiser(monkeypatch, depth=8):
    """A denoiser whose MA-branch and TESA record, per block (by position in ``blocks``), the layer
    index and the ``shifted`` flag they are called with."""
    model = build_denoiser("tiny", **{**SMALL, "depth": depth}).eval()
    calls = {"ma": [], "te": []}
    real_ma, real_te = MABranch.forward, TESA.forward
    block_of = {}
    for i, block in enumerate(model.blocks):
        block_of[id(block.mixer.ma)] = i
        block_of[id(block.mixer.te)] = i

    def ma_spy(self, x, grid, layer_idx):
        calls["ma"].append((block_of[id(self)], layer_idx))
        return real_ma(self, x, grid, layer_idx)

    def te_spy(self, x, grid, shifted=False):
        calls["te"].append((block_of[id(self)], shifted))
        return real_te(self, x, grid, shifted)

    monkeypatch.setattr(MABranch, "forward", ma_spy)
    monkeypatch.setattr(TESA, "forward", te_spy)
    return model, calls


def test_tesa_shifts_on_odd_layers_and_ma_branch_gets_its_layer(monkeypatch):
    model, calls = _spy_denoiser(monkeypatch, depth=8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4, generator=g)
    with torch.no_grad():
        model(x, torch.rand(1, generator=g), torch.randn(1, 3, 24, generator=g), torch.ones(1, 3, dtype=torch.bool))
    assert calls["te"] == [(i, i % 2 == 1) for i in range(8)]
    assert calls["ma"] == [(i, i) for i in range(8)]


def test_shifted_tesa_is_a_different_function_on_the_denoiser_grid():
    """A shifted and an unshifted TESA differ on a grid with several windows per axis (the flag matters)."""
    torch.manual_seed(0)
    m = TESA(48, 2, (2, 2, 2)).double()
    x = torch.randn(1, 5 * 4 * 4, 48, dtype=torch.float64)
    a, b = m(x, (5, 4, 4), False), m(x, (5, 4, 4), True)
    assert (a - b).abs().max() > 0.1 * a.abs().max()


# ---------------------------------------------------------------- receptive field of the denoiser


def _randomized(model, seed=1):
    """Every parameter random and non-zero (the zero-initialised gates and final layer would hide
    the mixer): weights ~ N(0, 0.25/fan_in), ones stay near one. The Mamba2 heads are then set to
    a long memory (Δt = 0.01, A = −1: decay 0.99 per token, like the slow heads of mamba_ssm's init),
    so that an effect crossing the clip is far above float32 rounding."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.5 / max(1, p.shape[-1]) ** 0.5)
                    + (p == 1).to(p.dtype))
        for mod in model.modules():
            if isinstance(mod, BiMamba2):
                mod.dt_bias.fill_(math.log(math.expm1(0.01)))
                mod.A_log.fill_(0.0)
                mod.D.fill_(1.0)
    return model.eval()


def _field_inputs():
    g = torch.Generator().manual_seed(0)
    # 9 latent frames of 4×4 → a 9×2×2 token grid; TESA windows are 2×2×2, so L TESA layers reach
    # at most L tokens along t: the first and last latent frames are 8 tokens apart.
    x = torch.randn(1, 4, 9, 4, 4, generator=g)
    ctx = torch.randn(1, 5, 24, generator=g)
    return x, torch.tensor([0.5]), ctx, torch.ones(1, 5, dtype=torch.bool)


def _far_effect(model, src_frame, dst_frame):
    """Relative change ‖Δout‖ / ‖out‖ of the output's latent frame ``dst_frame`` when one latent pixel
    (all channels, +1) of frame ``src_frame`` is perturbed, at the corner opposite the far end."""
    x, t, ctx, mask = _field_inputs()
    x2 = x.clone()
    corner = (0, 0) if src_frame == 0 else (-1, -1)
    x2[0, :, src_frame, corner[0], corner[1]] += 1.0
    with torch.no_grad():
        a, b = model(x, t, ctx, mask)[0, :, dst_frame], model(x2, t, ctx, mask)[0, :, dst_frame]
    return float((b - a).norm() / a.norm())


def _cut_direction(monkeypatch, direction):
    """Zero one scan direction of every BiMamba2 (0 forward, 1 backward): its scan input x is zeroed,
    so its output (the scan of x plus the D·x skip) is exactly zero."""
    real = BiMamba2.scan_inputs

    def inputs(self, xBC, dt_raw, d, heads=None):
        x, *rest = real(self, xBC, dt_raw, d, heads)
        return (torch.zeros_like(x) if d == direction else x, *rest)

    monkeypatch.setattr(BiMamba2, "scan_inputs", inputs)


@pytest.mark.parametrize("src,dst", [(0, 8), (8, 0)], ids=["first-to-last", "last-to-first"])
def test_mate_receptive_field_is_global_and_bidirectional(monkeypatch, src, dst):
    """One latent pixel reaches the far end of the clip in both directions through the MA-branch,
    and not at all when the MA-branch is cut (TESA windows, cross-attention and FFN are local)."""
    model = _randomized(build_denoiser("tiny", **SMALL))
    # Measured over weight seeds 1–3: 1.2e-4 … 3.2e-4 first→last, 7e-3 … 1.3e-2 last→first, relative
    # to the far frame's norm (the perturbed frame itself moves by ~0.1). 2e-5 leaves a 6× margin;
    # any non-zero value is a real path here, since the cut below gives exactly 0.
    assert _far_effect(model, src, dst) > 2e-5
    monkeypatch.setattr(MABranch, "forward", lambda self, x, grid, layer_idx: torch.zeros_like(x))
    assert _far_effect(model, src, dst) == 0.0


def test_both_scan_directions_carry_information():
    """Two t-major layers (scan orders t,h,w and t,w,h) without review tokens: only the forward scan
    carries the first frame to the last, only the backward scan the last frame to the first."""
    with pytest.MonkeyPatch.context() as mp:
        model = _randomized(build_denoiser("tiny", **{**SMALL, "depth": 2, "review_size": 0}))
        # measured 4.8e-6 … 1.9e-5 over weight seeds 1–3 (two layers, no review summary); 1e-6 leaves
        # a 4.8× margin, and the cut directions below give exactly 0, so non-zero means a real path
        assert _far_effect(model, 0, 8) > 1e-6 and _far_effect(model, 8, 0) > 1e-6
        _cut_direction(mp, 1)
        assert _far_effect(model, 8, 0) == 0.0 and _far_effect(model, 0, 8) > 1e-6
        mp.undo()
        _cut_direction(mp, 0)
        assert _far_effect(model, 0, 8) == 0.0 and _far_effect(model, 8, 0) > 1e-6


def test_text_reaches_every_frame_through_cross_attention_only(monkeypatch):
    model = _randomized(build_denoiser("tiny", **SMALL))
    x, t, ctx, mask = _field_inputs()
    with torch.no_grad():
        base = model(x, t, ctx, mask)
        moved = model(x, t, ctx + torch.randn(ctx.shape, generator=torch.Generator().manual_seed(3)), mask)

    def per_frame(v):  # B×C×T×H×W → norm of each latent frame (T,)
        return v[0].transpose(0, 1).flatten(1).norm(dim=1)

    rel = per_frame(moved - base) / per_frame(base)
    # a new caption moves every frame by a sizeable fraction (measured ~0.3–0.5)
    assert rel.min() > 0.05, rel
    from lingen_model.models.layers import CrossAttention

    monkeypatch.setattr(CrossAttention, "forward", lambda self, x, context, context_mask: torch.zeros_like(x))
    with torch.no_grad():
        assert torch.equal(model(x, t, ctx, mask), model(x, t, ctx + 1.0, mask))
