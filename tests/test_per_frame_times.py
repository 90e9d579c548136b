"""Per-frame noise levels (issue 14): the denoiser's B×T timesteps, the per-frame flow-matching loss,
training ramps (``flow.ramp_times``) and the staggered sampler (``sample(..., stagger=)``), each
against a plain reference in float64:

* equal per-frame times give exactly the one-time-per-sample denoiser (both mixers);
* different per-frame times equal a block loop whose per-token modulation is built by hand
  (token n belongs to frame n // (H'·W'));
* the loss noises frame k at t_k;
* the staggered sampler is a plain per-frame Euler loop over the staircase of times, and with
  stagger 0 it is bit-identical to the default sampler.
"""
import json

import pytest
import torch

from lingen_model import build_denoiser
from lingen_model.generation.flow import (
    flow_matching_loss,
    ramp_times,
    sample,
    sampling_timesteps,
    staggered_steps,
    staggered_times,
    time_shift,
)
from lingen_model.models.layers import timestep_embedding

SMALL = dict(width=32, depth=2, num_heads=2, ffn_dim=64, text_dim=16, headdim=16, d_state=8, chunk_size=8,
             in_channels=4, window=(2, 2, 2))


def model(mixer="mate", seed=1):
    torch.manual_seed(0)
    m = build_denoiser("tiny", mixer=mixer, **SMALL).double().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random non-zero weights (adaLN-Zero would make every block the identity)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 / max(1, p.shape[-1]) ** 0.5
                    + (p == 1).to(p.dtype))
    return m


def data(b=2, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 4, frames, 4, 6, generator=g, dtype=torch.float64)
    ctx = torch.randn(b, 3, 16, generator=g, dtype=torch.float64)
    mask = torch.ones(b, 3, dtype=torch.bool)
    mask[0, 1:] = False
    return z, ctx, mask


@pytest.mark.parametrize("mixer", ["mate", "attention"])
def test_equal_per_frame_times_are_the_per_sample_denoiser(mixer):
    m = model(mixer)
    z, ctx, mask = data(seed=3)
    t = torch.rand(2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = m(z, t, ctx, mask)
        got = m(z, t[:, None].expand(2, z.shape[2]).contiguous(), ctx, mask)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-13)


def _reference(m, z, t, ctx, mask):
    """The denoiser with per-token modulations assembled by hand from per-frame calls."""
    d = m.config.width
    patches, grid = m.patchify(z)
    frame_of_token = torch.arange(patches.shape[1]) // (grid[1] * grid[2])
    emb = [m.t_embed(timestep_embedding(t[:, k]).double()) for k in range(z.shape[2])]  # per frame: B×d
    t_mod = torch.stack([m.t_block(e).view(-1, 6, d) for e in emb], 1)[:, frame_of_token]  # B×N×6×d
    final = torch.stack([m.final_mod(e).view(-1, 2, d) for e in emb], 1)[:, frame_of_token]
    pos = m._pos(tuple(grid), z.device, z.dtype)[None]
    h = m.patch_embed(patches) + pos
    ctx = m.context_norm(m.context_proj(ctx))
    for block in m.blocks:
        h = block(h, t_mod, ctx, mask, grid)
    shift, scale = (final + m.final_table).unbind(-2)
    x = m.final_linear(m.final_norm(h - pos) * (1 + scale) + shift)
    return m.unpatchify(x, grid, z.shape[-2:])


@pytest.mark.parametrize("mixer", ["mate", "attention"])
def test_per_frame_times_modulate_each_frames_tokens(mixer):
    m = model(mixer, seed=5)
    z, ctx, mask = data(frames=3, seed=6)
    t = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = m(z, t, ctx, mask)
        want = _reference(m, z, t, ctx, mask)
        other = m(z, t.flip(1), ctx, mask)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (got - other).abs().max() > 1e-3  # the times of the frames matter, and their order


def test_per_frame_time_errors():
    m = model()
    z, ctx, mask = data()
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        m(z, torch.full((2, 4), 0.5, dtype=torch.float64), ctx, mask)
    with pytest.raises(ValueError, match="step caching"):
        m(z, torch.full((2, 3), 0.5, dtype=torch.float64), ctx, mask, cache=object())


def test_flow_matching_loss_noises_each_frame_at_its_time():
    z0, ctx, mask = data(seed=8)
    g = torch.Generator().manual_seed(9)
    noise = torch.randn(z0.shape, generator=g, dtype=torch.float64)
    t = torch.rand(2, 3, generator=g, dtype=torch.float64)
    seen = {}

    def fn(z, tt, c, m):
        seen["z"], seen["t"] = z, tt
        return z * 0.5

    loss = flow_matching_loss(fn, z0, ctx, mask, t=t, noise=noise)
    want_z = torch.stack([(1 - t[:, k, None, None, None]) * z0[:, :, k] + t[:, k, None, None, None] * noise[:, :, k]
                          for k in range(3)], 2)
    torch.testing.assert_close(seen["z"], want_z, rtol=0, atol=1e-15)
    assert torch.equal(seen["t"], t)
    assert float(loss) == pytest.approx(float(((want_z * 0.5 - (noise - z0)) ** 2).mean()), rel=1e-6)  # the loss is taken in float32
    with pytest.raises(ValueError, match="shape"):
        flow_matching_loss(fn, z0, ctx, mask, t=torch.rand(2, 4), noise=noise)


def test_ramp_times():
    g = torch.Generator().manual_seed(10)
    t = torch.rand(400, generator=g)
    state = g.get_state()
    assert ramp_times(t, 9, 0.0, 0.15, g) is t and torch.equal(g.get_state(), state)  # off: nothing drawn
    r = ramp_times(t, 9, 0.5, 0.15, g)
    assert r.shape == (400, 9) and bool(((r >= 0) & (r <= 1)).all())
    step = r.diff(dim=1)
    assert bool((step >= 0).all()) and bool((step <= 0.15 + 1e-6).all())  # earlier frames less noisy
    assert bool((r.min(1).values <= t + 1e-6).all()) and bool((r.max(1).values >= t - 1e-6).all())
    flat = (r.max(1).values - r.min(1).values) == 0
    assert 140 < int(flat.sum()) < 260  # ~half kept one time on every frame (binomial(400, 0.5) ± 6σ)
    assert torch.equal(r[flat], t[flat][:, None].expand(-1, 9))
    with pytest.raises(ValueError):
        ramp_times(t, 9, 1.5, 0.1, g)
    with pytest.raises(ValueError):
        ramp_times(t, 0, 0.5, 0.1, g)


def test_staggered_times():
    for steps, stagger, frames, shift in ((30, 0.05, 9, 1.3), (7, 0.3, 4, 1.0), (5, 0.0, 3, 2.0)):
        times = staggered_times(steps, shift, stagger, frames)
        assert times.shape == (staggered_steps(steps, stagger, frames) + 1, frames)
        assert bool((times[0] == 1).all()) and bool((times[-1] == 0).all())
        assert bool((times.diff(dim=0) <= 0).all()) and bool((times.diff(dim=1) >= 0).all())
        if stagger == 0:
            assert torch.equal(times[:, 0], sampling_timesteps(steps, shift)) and bool((times.diff(dim=1) == 0).all())
    assert staggered_steps(30, 0.05, 9) == 42 and staggered_steps(30, 0.0, 121) == 30
    torch.testing.assert_close(staggered_times(4, 1.0, 0.25, 3)[2], torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64))


def _field(z, t, ctx, mask):
    """A velocity field that mixes frames and depends on each frame's time (B×T)."""
    assert t.shape == (z.shape[0], z.shape[2])
    return 0.3 * z.roll(1, dims=2) - z * t[:, None, :, None, None] + ctx[:, :1, :1, None, None]


def test_staggered_sampler_is_a_per_frame_euler_loop():
    z1, ctx, mask = data(seed=11)
    unc = torch.zeros(1, 2, 16, dtype=torch.float64)
    got = sample(_field, z1, 6, shift=1.5, cfg_scale=3.0, context=ctx, context_mask=mask,
                 uncond_context=unc, stagger=0.2)
    times = time_shift((torch.linspace(1, -0.4, 10, dtype=torch.float64)[:, None]
                        + 0.2 * torch.arange(3, dtype=torch.float64)).clamp(0, 1), 1.5)  # ⌈6·1.4⌉ = 9 steps
    z = z1.clone()
    for i in range(9):
        tt = times[i].expand(2, 3)
        v_u = _field(z, tt, torch.zeros_like(ctx), mask)
        v_c = _field(z, tt, ctx, mask)
        v = v_u + 3.0 * (v_c - v_u)
        for k in range(3):
            z[:, :, k] = z[:, :, k] + (times[i + 1, k] - times[i, k]) * v[:, :, k]
    torch.testing.assert_close(got, z, rtol=1e-12, atol=1e-12)


def test_stagger_zero_is_the_default_sampler_and_bad_stagger_is_refused():
    m = model()
    z1, ctx, mask = data(seed=12)
    a = sample(lambda *a: m(*a), z1, 3, context=ctx, context_mask=mask)
    b = sample(lambda *a: m(*a), z1, 3, context=ctx, context_mask=mask, stagger=0.0)
    assert torch.equal(a, b)
    for bad in (-0.1, float("nan"), True):
        with pytest.raises(ValueError, match="stagger"):
            sample(lambda *a: m(*a), z1, 3, context=ctx, context_mask=mask, stagger=bad)
    with pytest.raises(ValueError, match="euler"):
        sample(lambda *a: m(*a), z1, 3, context=ctx, context_mask=mask, stagger=0.1, method="heun")
    with pytest.raises(ValueError, match="cache"):
        sample(lambda *a: m(*a), z1, 3, context=ctx, context_mask=mask, stagger=0.1, cache="taylor")


def test_staggered_sampling_runs_the_denoiser():
    m = model()
    z1, ctx, mask = data(seed=13)
    out = sample(lambda *a: m(*a), z1, 3, context=ctx, context_mask=mask, stagger=0.25)
    assert out.shape == z1.shape and bool(torch.isfinite(out).all())


def test_windowed_staggered_sampler_runs_only_the_moving_frames_and_their_context():
    """stagger_context N: each step calls the network on the moving frames plus N frames before them,
    told where the window starts (t_offset); a plain loop that does the same by hand agrees."""
    z1, ctx, mask = data(frames=7, seed=14)
    seen = []

    def field(z, t, c, m, t_offset=0):
        seen.append((t_offset, z.shape[2]))
        return _field(z, t, c, m) + 0.01 * t_offset

    got = sample(field, z1, 4, shift=1.2, context=ctx, context_mask=mask, stagger=0.5, stagger_context=1)
    times = staggered_times(4, 1.2, 0.5, 7)
    z, want_calls = z1.clone(), []
    for i in range(times.shape[0] - 1):
        h = times[i + 1] - times[i]
        moving = [k for k in range(7) if h[k] != 0]
        lo, hi = max(0, moving[0] - 1), moving[-1] + 1
        want_calls.append((lo, hi - lo))
        v = _field(z[:, :, lo:hi], times[i][lo:hi].expand(2, -1), ctx, mask) + 0.01 * lo
        for k in range(lo, hi):
            z[:, :, k] = z[:, :, k] + h[k] * v[:, :, k - lo]
    torch.testing.assert_close(got, z, rtol=1e-12, atol=1e-12)
    assert seen == want_calls and max(n for _, n in seen) < 7 and any(lo > 0 for lo, _ in seen)
    with pytest.raises(ValueError, match="stagger_context"):
        sample(field, z1, 4, context=ctx, context_mask=mask, stagger_context=1)  # without stagger


def test_per_frame_modulation_broadcasts_like_per_token_rows():
    """``modulate`` / ``gated_residual`` with one row per latent frame (B×T×1×D) equal the same rows
    copied to every token of the frame (token n in frame n // (N/T)), also for a non-contiguous x."""
    from lingen_model.models.layers import gated_residual, modulate

    g = torch.Generator().manual_seed(11)
    b, frames, tokens, d = 2, 3, 5, 4
    x = torch.randn(b, d, frames * tokens, generator=g, dtype=torch.float64).transpose(1, 2)  # B×N×D, strided
    y = torch.randn(b, frames * tokens, d, generator=g, dtype=torch.float64)
    shift, scale, gate = (torch.randn(b, frames, 1, d, generator=g, dtype=torch.float64) for _ in range(3))
    rows = lambda v: v.expand(-1, -1, tokens, -1).reshape(b, frames * tokens, d)  # noqa: E731
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + rows(scale)) + rows(shift), rtol=0, atol=1e-15)
    torch.testing.assert_close(gated_residual(x, gate, y), x + rows(gate) * y, rtol=0, atol=1e-15)
    # one row per sample (B×D) is the usual adaLN broadcast
    torch.testing.assert_close(modulate(x, shift[:, 0, 0], scale[:, 0, 0]),
                               x * (1 + scale[:, 0]) + shift[:, 0], rtol=0, atol=1e-15)
