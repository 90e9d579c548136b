"""The Wan-compatible LinGen denoiser equals diffusers' WanTransformer3DModel when TESA's
window covers the grid and the MA-branch out_proj is zero (float32, ≤ 1e-5)."""
import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from lingen_model.models.rope import apply_rope, rope_3d, rope_axis_dims  # noqa: E402
from lingen_model.wan.convert import WanConvertError, convert_wan, key_map  # noqa: E402

MA = dict(d_state=8, headdim=4, chunk_size=16, review_size=1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster and immune to a loaded machine's contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_wan(seed: int, heads=2, head_dim=12, layers=2, ffn=40, text_dim=20, in_ch=4, out_ch=None):
    """A diffusers Wan transformer with every parameter random (norm weights and tables too)."""
    torch.manual_seed(seed)
    m = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=in_ch,
        out_channels=out_ch or in_ch, text_dim=text_dim, freq_dim=32, ffn_dim=ffn, num_layers=layers,
        rope_max_seq_len=64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(p.shape[-1], 1)) + (0.5 if p.dim() == 1 else 0.0))
    return m.eval()


def wan_inputs(m, b, t, h, w, n_real, text_len, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = m.config
    x = torch.randn(b, cfg.in_channels, t, h, w, generator=g)
    tt = torch.rand(b, generator=g)
    ctx = torch.randn(b, n_real, cfg.text_dim, generator=g)
    mask = torch.ones(b, n_real, dtype=torch.bool)
    mask[0, n_real - 2:] = False  # a shorter first prompt: its tail must act as zero slots
    padded = torch.zeros(b, text_len, cfg.text_dim)
    padded[:, :n_real] = ctx * mask[..., None]
    return x, tt, ctx, mask, padded


def wan_conf(m):
    """The model's config as its saved config.json holds it."""
    return {"_class_name": type(m).__name__, **m.config}


def convert(m, text_len, **opts):
    return convert_wan(m.state_dict(), wan_conf(m), text_len=text_len, **{**MA, "window": (0, 0, 0), **opts})


CASES = [  # (seed, model kwargs, latent T, H, W)
    (0, {}, 3, 4, 6),
    (1, dict(heads=3, head_dim=8, layers=3, in_ch=3, out_ch=5), 2, 6, 2),
    (2, dict(heads=1, head_dim=18, layers=1), 5, 2, 10),  # odd token grid 5×1×5
    (3, dict(heads=2, head_dim=14, layers=2, text_dim=8), 1, 6, 6),  # single frame, 3×3 grid
]


@pytest.mark.parametrize("seed,kw,t,h,w", CASES)
def test_full_window_zero_ma_equals_diffusers_wan(seed, kw, t, h, w):
    ref = tiny_wan(seed, **kw)
    ours = convert(ref, text_len=9)
    x, tt, ctx, mask, padded = wan_inputs(ref, 2, t, h, w, n_real=6, text_len=9, seed=100 + seed)
    with torch.no_grad():
        want = ref(x, 1000.0 * tt, padded, return_dict=False)[0]
        got = ours(x, tt, ctx, mask)
    assert got.shape == want.shape
    err = (got - want).abs().max().item()
    print(f"seed {seed} grid {(t, h // 2, w // 2)} max abs diff {err:.2e} (|ref| max {want.abs().max():.2f})")
    assert err <= 1e-5


def test_ma_branch_and_windows_change_the_output():
    """Sanity: a non-zero MA out_proj or a window smaller than the grid moves the output."""
    ref = tiny_wan(5)
    x, tt, ctx, mask, _ = wan_inputs(ref, 1, 4, 8, 8, n_real=5, text_len=9, seed=7)
    full = convert(ref, text_len=9)
    small = convert(ref, text_len=9, window=(2, 2, 2))
    with torch.no_grad():
        base = full(x, tt, ctx, mask)
        assert (small(x, tt, ctx, mask) - base).abs().max() > 1e-3
        with small.as_teacher():
            assert (small(x, tt, ctx, mask) - base).abs().max() <= 1e-5
        for b in full.blocks:
            b.ma.mamba.out_proj.weight.normal_(0, 0.1)
        assert (full(x, tt, ctx, mask) - base).abs().max() > 1e-3


def test_bf16_islands_stay_float32_and_track_diffusers():
    ref = tiny_wan(6)
    ours = convert(ref, text_len=9).to(torch.bfloat16)
    assert ours.final_table.dtype == torch.float32 and ours.t_embed[0].weight.dtype == torch.float32
    assert ours.blocks[0].norm2.weight.dtype == torch.float32 and ours.blocks[0].ada_table.dtype == torch.float32
    assert ours.blocks[0].te.qkv.weight.dtype == torch.bfloat16
    x, tt, ctx, mask, padded = wan_inputs(ref, 1, 3, 4, 4, n_real=5, text_len=9, seed=8)
    with torch.no_grad():
        want = ref(x, 1000.0 * tt, padded, return_dict=False)[0]
        got = ours(x, tt, ctx, mask)
    rel = ((got - want).norm() / want.norm()).item()
    print(f"bf16 relative error vs float32 diffusers: {rel:.3e}")
    assert got.dtype == torch.float32 and rel < 2e-2


def test_rope_matches_diffusers_tables():
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    assert rope_axis_dims(128) == (44, 42, 42)
    rope = WanRotaryPosEmbed(24, (1, 2, 2), 32)
    cos_ref, sin_ref = rope(torch.zeros(1, 1, 3, 10, 6))
    cos, sin = rope_3d((3, 5, 3), 24)
    assert torch.equal(cos, cos_ref[0, :, 0]) and torch.equal(sin, sin_ref[0, :, 0])
    # a rotation: norms kept, and q·k depends on the temporal offset only through differences
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 1, 45, 24, generator=g).unbind(0)
    rq, rk = apply_rope(q, cos, sin, 1), apply_rope(k, cos, sin, 1)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    c2, s2 = rope_3d((3, 5, 3), 24, t0=7)
    assert torch.allclose(rq @ rk.transpose(1, 2), apply_rope(q, c2, s2, 1) @ apply_rope(k, c2, s2, 1).transpose(1, 2),
                          atol=1e-4)


def test_convert_rejects_bad_checkpoints():
    ref = tiny_wan(9)
    sd, conf = ref.state_dict(), wan_conf(ref)
    with pytest.raises(WanConvertError, match="lacks"):
        convert_wan({k: v for k, v in sd.items() if "attn2.to_k" not in k}, conf, **MA)
    bad = dict(sd)
    bad["blocks.0.ffn.net.2.weight"] = torch.zeros(3, 3)
    with pytest.raises(WanConvertError, match="shape"):
        convert_wan(bad, conf, **MA)
    with pytest.raises(WanConvertError, match="does not know"):
        convert_wan({**sd, "blocks.0.attn2.add_k_proj.weight": torch.zeros(1)}, conf, **MA)
    with pytest.raises(WanConvertError, match="unsupported"):
        convert_wan(sd, {**conf, "image_dim": 1280}, **MA)
    with pytest.raises(WanConvertError, match="WanTransformer3DModel"):
        convert_wan(sd, {**conf, "_class_name": "UNet"}, **MA)
    assert len(key_map(2)) == len(set(key_map(2)))


@pytest.mark.slow
def test_real_1p3b_shapes_tiny_grid():
    """Wan2.1-T2V-1.3B shapes (30 layers, width 1536 = 12×128, FFN 8960, text 4096), random weights."""
    torch.manual_seed(0)
    ref = diffusers.WanTransformer3DModel(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                                          num_layers=30, text_dim=4096).eval()
    ours = convert_wan(ref.state_dict(), wan_conf(ref), window=(0, 0, 0), text_len=512)
    extra = sum(p.numel() for b in ours.blocks for p in b.ma.parameters())
    base = sum(p.numel() for p in ref.parameters())
    print(f"Wan params {base / 1e9:.3f} B; MA-branch adds {extra / 1e9:.3f} B (+{100 * extra / base:.0f} %)")
    x, tt, ctx, mask, padded = wan_inputs(ref, 1, 2, 4, 4, n_real=20, text_len=512, seed=1)
    with torch.no_grad():
        want = ref(x, 1000.0 * tt, padded, return_dict=False)[0]
        got = ours(x, tt, ctx, mask)
    err = (got - want).abs().max().item()
    print(f"1.3B shapes, grid 2×2×2: max abs diff {err:.2e}")
    assert err <= 1e-5
