"""The denoiser end to end (receptive field: test_mate_wiring.py): shapes, twins, gradients, overfitting, bad input."""
import pytest
import torch

from lingen_model import build_denoiser
from lingen_model.models.config import DENOISER_CONFIGS, DenoiserConfig, get_config
from lingen_model.models.denoiser import count_parameters

SMALL = dict(width=48, depth=4, num_heads=2, ffn_dim=96, text_dim=24, headdim=16, d_state=8, chunk_size=16,
             in_channels=4, window=(2, 2, 2))


def inputs(b=2, c=4, t=5, h=6, w=6, L=5, text_dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, L, dtype=torch.bool)
    mask[0, 3:] = False
    return (torch.randn(b, c, t, h, w, generator=g), torch.rand(b, generator=g),
            torch.randn(b, L, text_dim, generator=g), mask)


def randomize(model):
    """Give every parameter random non-zero values (zero-init gates would hide the mixer)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p.shape[-1]) ** 0.5) + (p == 1).float())
    return model


@pytest.mark.parametrize("mixer", ["mate", "attention"])
@pytest.mark.parametrize("shape", [(5, 6, 6), (3, 7, 5), (1, 4, 4)])
def test_output_shape_and_dtype(mixer, shape):
    m = build_denoiser("tiny", mixer=mixer, **SMALL)
    x, t, ctx, mask = inputs(t=shape[0], h=shape[1], w=shape[2])
    v = m(x, t, ctx, mask)
    assert v.shape == x.shape and v.dtype == x.dtype


def test_zero_init_output_and_config_fields():
    m = build_denoiser("tiny", **SMALL)
    x, t, ctx, mask = inputs()
    assert torch.count_nonzero(m(x, t, ctx, mask)) == 0  # final layer is zero-initialised
    assert (m.config.in_channels, m.config.text_dim, m.config.patch_size) == (4, 24, 2)


def test_t_offset_shifts_the_temporal_positions():
    from lingen_model.models.layers import sincos_3d

    # the embedding of a clip at offset k is the slice k… of the embedding of a longer clip
    long, short = sincos_3d(9, 3, 2, 48, 8.0, 100.0), sincos_3d(4, 3, 2, 48, 8.0, 100.0, t0=5)
    assert torch.equal(short, long[5 * 6:])
    m = randomize(build_denoiser("tiny", **SMALL)).eval()
    x, t, ctx, mask = inputs(t=3)
    v0, v0_again, v5 = m(x, t, ctx, mask), m(x, t, ctx, mask, t_offset=0), m(x, t, ctx, mask, t_offset=5)
    assert torch.equal(v0, v0_again) and (v5 - v0).abs().max() > 1e-6
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="t_offset"):
            m(x, t, ctx, mask, t_offset=bad)


def test_twins_differ_only_in_mixer_parameters():
    a = build_denoiser("tiny", mixer="mate", **SMALL)
    b = build_denoiser("tiny", mixer="attention", **SMALL)
    pa = {k: v.shape for k, v in a.named_parameters() if ".mixer." not in k}
    pb = {k: v.shape for k, v in b.named_parameters() if ".mixer." not in k}
    assert pa == pb
    assert any(".mixer.ma." in k for k, _ in a.named_parameters())
    assert not any(".mixer.ma." in k for k, _ in b.named_parameters())


@pytest.mark.parametrize("mixer", ["mate", "attention"])
def test_every_parameter_gets_a_gradient(mixer):
    """From the real (adaLN-Zero) init: step 1 moves the final layer off zero, step 2 the gates;
    at the third backward every parameter must have a non-zero gradient (no dead saddle)."""
    torch.manual_seed(0)
    m = build_denoiser("tiny", mixer=mixer, **SMALL)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, t, ctx, mask = inputs(t=5, h=6, w=6)
    for step in range(3):
        opt.zero_grad()
        loss = (m(x, t, ctx, mask) - x).pow(2).mean()
        loss.backward()
        if step < 2:
            opt.step()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, missing


def test_grad_checkpointing_matches():
    torch.manual_seed(0)
    a = randomize(build_denoiser("tiny", **SMALL)).train()
    b = randomize(build_denoiser("tiny", grad_checkpointing=True, **SMALL)).train()
    x, t, ctx, mask = inputs()
    la, lb = a(x, t, ctx, mask).square().mean(), b(x, t, ctx, mask).square().mean()
    la.backward(), lb.backward()
    torch.testing.assert_close(la, lb)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)


@pytest.mark.parametrize("mixer", ["mate", "attention"])
def test_tiny_model_overfits_one_clip(mixer):
    torch.manual_seed(0)
    m = build_denoiser("tiny", mixer=mixer, width=64, depth=2, num_heads=2, ffn_dim=128, text_dim=24,
                       headdim=32, d_state=16, chunk_size=32, in_channels=4)
    x0, _, ctx, mask = inputs(b=1, t=3, h=8, w=8)
    noise = torch.randn_like(x0)
    t = torch.tensor([0.6])
    zt, target = (1 - t) * x0 + t * noise, noise - x0
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = (m(zt, t, ctx, mask) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < first / 20:
            break
    assert loss.item() < first / 10, (first, loss.item())


def test_bad_inputs_raise_value_error():
    m = build_denoiser("tiny", **SMALL)
    x, t, ctx, mask = inputs()
    with pytest.raises(ValueError, match="B×C×T×H×W"):
        m(x[0], t, ctx, mask)
    with pytest.raises(ValueError, match="channels"):
        m(x[:, :3], t, ctx, mask)
    with pytest.raises(ValueError, match="context must be 2×L×24"):
        m(x, t, ctx[..., :10], mask)
    with pytest.raises(ValueError, match=r"t must be finite"):
        m(x, torch.tensor([0.5, float("nan")]), ctx, mask)
    with pytest.raises(ValueError, match=r"t must be a float tensor of shape \(2,\)"):
        m(x, t[:1], ctx, mask)
    with pytest.raises(ValueError, match="context_mask"):
        m(x, t, ctx, mask.float())


def test_registry():
    assert {"tiny", "small", "4b"} <= set(DENOISER_CONFIGS)
    assert DENOISER_CONFIGS["4b"].width == 3072 and DENOISER_CONFIGS["4b"].ffn_dim == 8192
    for mixer in ("mate", "attention"):
        assert count_parameters(build_denoiser("tiny", mixer=mixer)) <= 20_000_000
    with pytest.raises(ValueError, match="unknown model size"):
        build_denoiser("huge")
    with pytest.raises(ValueError, match="mixer"):
        build_denoiser("tiny", mixer="conv")
    with pytest.raises(ValueError, match="override"):
        build_denoiser("tiny", colour=3)
    cfg = get_config("tiny")
    assert DenoiserConfig.from_dict(cfg.to_dict()) == cfg


def test_bfloat16_forward_runs_and_matches_float32():
    """Half precision on the torch scan backend (the scan itself runs in fp32)."""
    torch.manual_seed(0)
    m = randomize(build_denoiser("tiny", **SMALL)).eval()
    x, t, ctx, mask = inputs()
    with torch.no_grad():
        ref = m(x, t, ctx, mask)
        out = m.to(torch.bfloat16)(x.bfloat16(), t, ctx.bfloat16(), mask)
    assert out.dtype == torch.bfloat16
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.1, rel
