"""CFG in a limited interval of noise levels (``flow.sample(cfg_max_t=)``; Kynkäänniemi et al. 2024).

References are plain loops written out by hand: an Euler run that switches, step by step, between
the guided velocity v_u + g·(v_c − v_u) (t ≤ cfg_max_t) and the conditional one alone (t above it);
with per-frame times (the staggered sampler) the switch is made frame by frame. The Gaussian toy of
``test_flow`` (exact velocity affine in μ) gives the guided velocity as the run on
μ_eff = μ_u + g·(μ_c − μ_u), so the toy's reference is a loop over two exact fields.
"""
import pytest
import torch

from lingen_model.generation.flow import sample, sampling_timesteps, staggered_times
from test_contrast_guidance import _setup
from test_flow import _context_for, gaussian_velocity
from test_per_frame_times import _field, data


def _switching_euler(vf, noise, steps, shift, cfg, max_t, ctx, mask, uctx, umask, xctx=None, xmask=None, w=0.0):
    """The obviously-right loop: at each step, guided where t ≤ max_t, conditional alone above it."""
    times = sampling_timesteps(steps, shift).tolist()
    z = noise.clone()
    b = noise.shape[0]
    for i in range(steps):
        t = torch.full((b,), times[i], dtype=torch.float64)
        v_c = vf(z, t, ctx, mask)
        v = v_c
        if times[i] <= max_t:
            v_u = vf(z, t, uctx.expand(b, -1, -1), umask.expand(b, -1))
            v = v_u + cfg * (v_c - v_u)
        if w:
            v = v + w * (v_c - vf(z, t, xctx.expand(b, -1, -1), xmask.expand(b, -1)))
        z = z + (times[i + 1] - times[i]) * v
    return z


@pytest.mark.parametrize("seed", [51, 52])
@pytest.mark.parametrize("max_t", [0.0, 0.37, 0.84])
@pytest.mark.parametrize("w", [0.0, 2.0])
def test_guidance_interval_is_the_switching_loop(seed, max_t, w):
    mu_c, mu_u, mu_x, sigma, noise = _setup(seed, batch=16)
    ctx, mask = _context_for(mu_c, 16, length=4)
    uctx, umask = _context_for(mu_u, 1, length=2)
    xctx, xmask = _context_for(mu_x, 1, length=3)
    vf = gaussian_velocity(sigma)
    extra = dict(contrast_context=xctx, contrast_mask=xmask, contrast_scale=w) if w else {}
    got = sample(vf, noise, 9, shift=1.7, cfg_scale=4.0, context=ctx, context_mask=mask, uncond_context=uctx,
                 uncond_mask=umask, cfg_max_t=max_t, **extra)
    want = _switching_euler(vf, noise, 9, 1.7, 4.0, max_t, ctx, mask, uctx, umask, xctx, xmask, w)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # and it is neither the plain CFG run nor the unguided one (the interval splits the 9 steps)
    plain = sample(vf, noise, 9, shift=1.7, cfg_scale=4.0, context=ctx, context_mask=mask, uncond_context=uctx,
                   uncond_mask=umask, **extra)
    times = sampling_timesteps(9, 1.7)
    if bool((times[:-1] > max_t).any()):
        assert not torch.allclose(got, plain)


def test_cfg_max_t_one_is_plain_cfg_bit_for_bit_and_zero_guides_no_step():
    mu_c, mu_u, _, sigma, noise = _setup(53, batch=8)
    ctx, mask = _context_for(mu_c, 8)
    uctx, umask = _context_for(mu_u, 1)
    vf = gaussian_velocity(sigma)
    kw = dict(cfg_scale=3.0, context=ctx, context_mask=mask, uncond_context=uctx, uncond_mask=umask)
    assert torch.equal(sample(vf, noise, 6, **kw), sample(vf, noise, 6, cfg_max_t=1.0, **kw))
    # times 1 … 1/6 > 0: with cfg_max_t = 0 no step is guided, the run is the conditional one
    cond_only = sample(vf, noise, 6, context=ctx, context_mask=mask)
    torch.testing.assert_close(sample(vf, noise, 6, cfg_max_t=0.0, **kw), cond_only, rtol=0, atol=1e-12)


def test_staggered_guidance_interval_switches_frame_by_frame():
    z1, ctx, mask = data(seed=17)
    unc = torch.zeros(1, 2, 16, dtype=torch.float64)
    max_t = 0.6
    got = sample(_field, z1, 6, shift=1.5, cfg_scale=3.0, context=ctx, context_mask=mask,
                 uncond_context=unc, stagger=0.2, cfg_max_t=max_t)
    times = staggered_times(6, 1.5, 0.2, 3)
    z = z1.clone()
    mixed = False
    for i in range(times.shape[0] - 1):
        tt = times[i].expand(2, 3)
        v_u = _field(z, tt, torch.zeros_like(ctx), mask)
        v_c = _field(z, tt, ctx, mask)
        for k in range(3):
            g = 3.0 if times[i, k] <= max_t else 1.0
            z[:, :, k] = z[:, :, k] + (times[i + 1, k] - times[i, k]) * (v_u[:, :, k] + g * (v_c[:, :, k] - v_u[:, :, k]))
        mixed |= bool((times[i] <= max_t).any() and (times[i] > max_t).any())
    assert mixed  # some step had frames on both sides of the bound
    torch.testing.assert_close(got, z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_cfg_max_t_is_refused(bad):
    mu_c, mu_u, _, sigma, noise = _setup(54, batch=2)
    ctx, mask = _context_for(mu_c, 2)
    uctx, umask = _context_for(mu_u, 1)
    with pytest.raises(ValueError, match="cfg_max_t"):
        sample(gaussian_velocity(sigma), noise, 3, cfg_scale=2.0, context=ctx, context_mask=mask,
               uncond_context=uctx, uncond_mask=umask, cfg_max_t=bad)
