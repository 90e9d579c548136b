"""Tests for lingen_model.generation.flow: rectified-flow schedule, samplers, CFG and training loss.

The samplers are checked on Gaussian data, where the rectified-flow velocity is known in
closed form. Per dimension, with x ~ N(μ, σ²), ε ~ N(0, 1) independent and
z_t = (1 − t)x + tε, the pair (v = ε − x, z_t) is jointly Gaussian, so

    v*(z, t) = E[ε − x | z_t = z] = −μ + k(t)·(z − (1 − t)μ),
    k(t) = Cov(ε − x, z_t) / Var(z_t) = (t − (1 − t)σ²) / ((1 − t)²σ² + t²).

The ODE dz/dt = v* keeps z_t = (1 − t)μ + sqrt((1 − t)²σ² + t²)·ξ for a start z_1 = ξ, so
the exact sampler maps noise ξ to μ + σξ: every sample has a known exact answer.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lingen_model.generation.flow import (
    drop_captions,
    flow_matching_loss,
    mix_high_noise_times,
    sample,
    sample_timesteps_logit_normal,
    sampling_timesteps,
    shift_for_tokens,
    time_shift,
)

C = 4  # data dimensions of the toy problem


def _toy(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random target mean μ (C,) and std σ (C,) in float64."""
    g = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(C, generator=g, dtype=torch.float64)
    sigma = 0.5 + 1.5 * torch.rand(C, generator=g, dtype=torch.float64)
    return mu, sigma


def _masked_mean(context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(context.dtype)[..., None]
    return (context * m).sum(1) / m.sum(1)


def gaussian_velocity(sigma: torch.Tensor):
    """velocity_fn for data N(μ, σ²) where μ (B×C) is the masked mean of the context."""

    def velocity_fn(z, t, context, mask):
        mu = _masked_mean(context, mask)
        t = t.to(z.dtype)[:, None]
        var = (1 - t) ** 2 * sigma**2 + t**2
        k = (t - (1 - t) * sigma**2) / var
        return -mu + k * (z - (1 - t) * mu)

    return velocity_fn


def _context_for(mu: torch.Tensor, batch: int, length: int = 3, garbage: float = 1e3):
    """B×L×C context whose ``length - 1`` real tokens average to μ, then one padding token.

    The real tokens differ (±0.25 on the first two) so only a masked mean recovers μ, and the
    padding token holds a huge value with mask False, so ignoring the mask is caught.
    """
    real = length - 1
    ctx = mu.expand(batch, real, C).clone()
    if real >= 2:
        ctx[:, 0] += 0.25
        ctx[:, 1] -= 0.25
    ctx = torch.cat([ctx, torch.full((batch, 1, C), garbage, dtype=ctx.dtype)], dim=1)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, -1] = False
    return ctx, mask


# --------------------------------------------------------------------------- reference


def test_closed_form_velocity_matches_monte_carlo_regression():
    """The closed form is the least-squares regression of ε − x on z_t (its definition)."""
    mu, sigma = _toy(1)
    g = torch.Generator().manual_seed(2)
    n = 200_000
    vf = gaussian_velocity(sigma)
    for t in (0.1, 0.5, 0.9):
        x = mu + sigma * torch.randn(n, C, generator=g, dtype=torch.float64)
        eps = torch.randn(n, C, generator=g, dtype=torch.float64)
        z = (1 - t) * x + t * eps
        v = eps - x
        zc, vc = z - z.mean(0), v - v.mean(0)
        slope = (zc * vc).mean(0) / (zc * zc).mean(0)
        intercept = v.mean(0) - slope * z.mean(0)
        zs = torch.stack([torch.zeros(C), torch.ones(C)]).to(torch.float64)
        ctx = mu.expand(2, 1, C)
        pred = vf(zs, torch.full((2,), t, dtype=torch.float64), ctx, torch.ones(2, 1, dtype=torch.bool))
        assert torch.allclose(pred[0], intercept, atol=0.03)
        assert torch.allclose(pred[1] - pred[0], slope, atol=0.03)


# --------------------------------------------------------------------------- schedule


@settings(max_examples=60, deadline=None)
@given(
    s=st.floats(0.05, 20.0),
    a=st.floats(0.0, 1.0),
    b=st.floats(0.0, 1.0),
)
def test_time_shift_properties(s, a, b):
    assert time_shift(0.0, s) == 0.0
    assert time_shift(1.0, s) == pytest.approx(1.0, abs=1e-12)
    assert time_shift(a, 1.0) == pytest.approx(a, abs=1e-15)
    lo, hi = min(a, b), max(a, b)
    assert time_shift(lo, s) <= time_shift(hi, s) + 1e-15
    if s > 1:  # shifts towards noise
        assert time_shift(a, s) >= a - 1e-12
    # Möbius maps compose multiplicatively and 1/s inverts s
    assert time_shift(time_shift(a, s), 1.0 / s) == pytest.approx(a, abs=1e-9)
    assert time_shift(time_shift(a, s), 2.0) == pytest.approx(time_shift(a, 2.0 * s), abs=1e-9)


def test_time_shift_tensor_and_errors():
    t = torch.rand(5, 7, dtype=torch.float64)
    out = time_shift(t, 3.0)
    assert out.shape == t.shape
    assert torch.allclose(out, 3.0 * t / (1.0 + 2.0 * t))
    for bad in (0.0, -1.0, math.inf, math.nan, "2"):
        with pytest.raises(ValueError):
            time_shift(t, bad)


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("shift", [1.0, 0.5, 3.0])
def test_sampling_timesteps(steps, shift):
    ts = sampling_timesteps(steps, shift)
    assert ts.shape == (steps + 1,)
    assert ts[0].item() == 1.0 and ts[-1].item() == 0.0
    assert bool((ts[1:] < ts[:-1]).all())
    grid = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    assert torch.allclose(ts, shift * grid / (1 + (shift - 1) * grid))
    assert sampling_timesteps(steps, shift, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_sampling_timesteps_rejects_bad_steps(steps):
    with pytest.raises(ValueError):
        sampling_timesteps(steps)


def test_shift_for_tokens_anchors_monotone_and_clamped():
    kw = dict(base_tokens=256, base_shift=1.0, max_tokens=65_536, max_shift=6.0)
    assert shift_for_tokens(256, **kw) == pytest.approx(1.0)
    assert shift_for_tokens(65_536, **kw) == pytest.approx(6.0)
    assert shift_for_tokens(1, **kw) == pytest.approx(1.0)  # clamped below
    assert shift_for_tokens(10**9, **kw) == pytest.approx(6.0)  # clamped above
    counts = np.unique(np.geomspace(1, 10**7, 200).astype(int))
    values = [shift_for_tokens(int(n), **kw) for n in counts]
    assert all(b >= a for a, b in zip(values, values[1:]))
    # log-log linear between the anchors: geometric midpoint of tokens -> geometric mean shift
    assert shift_for_tokens(4096, **kw) == pytest.approx(math.sqrt(6.0))


def test_shift_for_tokens_reduces_to_sd3_sqrt_rule():
    """Anchors (n, 1) and (4n, 2) give exponent 1/2: SD3's s = sqrt(m / n)."""
    n = 1024
    for m in (1500, 2048, 3000, 4000):
        s = shift_for_tokens(m, base_tokens=n, base_shift=1.0, max_tokens=4 * n, max_shift=2.0)
        assert s == pytest.approx(math.sqrt(m / n))


def test_shift_for_tokens_defaults_grow_with_tokens():
    assert shift_for_tokens(256) == pytest.approx(1.0)
    assert 1.0 < shift_for_tokens(4096) < shift_for_tokens(100_000) < shift_for_tokens(10**6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_tokens=0),
        dict(num_tokens=3.5),
        dict(num_tokens=100, base_tokens=512, max_tokens=256),
        dict(num_tokens=100, base_shift=0.0),
        dict(num_tokens=100, max_shift=math.inf),
    ],
)
def test_shift_for_tokens_errors(kwargs):
    with pytest.raises(ValueError):
        shift_for_tokens(**kwargs)


# --------------------------------------------------------------------------- samplers


def _run(mu, sigma, steps, method, shift=1.0, batch=2000, seed=0):
    xi = torch.randn(batch, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ctx, mask = _context_for(mu, batch)
    out = sample(gaussian_velocity(sigma), xi, steps, shift=shift, context=ctx, context_mask=mask, method=method)
    return xi, out


def _check_moments(out, mu, sigma):
    """Sample mean/std within 5 standard errors (plus 0.02 discretisation allowance)."""
    n = out.shape[0]
    se_mean = sigma / math.sqrt(n)
    se_std = sigma / math.sqrt(2 * n)
    assert bool(((out.mean(0) - mu).abs() < 5 * se_mean + 0.02).all()), (out.mean(0), mu)
    assert bool(((out.std(0) - sigma).abs() < 5 * se_std + 0.02).all()), (out.std(0), sigma)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_many_steps_reaches_target(shift):
    mu, sigma = _toy(3)
    xi, out = _run(mu, sigma, 400, "euler", shift=shift)
    assert out.dtype == torch.float64 and out.shape == xi.shape
    _check_moments(out, mu, sigma)
    # pointwise against the exact ODE map ξ -> μ + σξ (Euler error ~ 8/steps here)
    assert (out - (mu + sigma * xi)).abs().max().item() < 0.05


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_heun_fewer_steps_reaches_target(shift):
    mu, sigma = _toy(4)
    xi, out = _run(mu, sigma, 40, "heun", shift=shift)
    _check_moments(out, mu, sigma)
    assert (out - (mu + sigma * xi)).abs().max().item() < 0.02


def test_heun_beats_euler_and_convergence_orders():
    mu, sigma = _toy(5)

    def err(steps, method):
        xi, out = _run(mu, sigma, steps, method, batch=500)
        return (out - (mu + sigma * xi)).abs().max().item()

    for steps in (4, 10, 25):
        assert err(steps, "heun") < err(steps, "euler")
    # global error ~ h (Euler) and ~ h² (Heun): halving h halves / quarters it
    assert 1.7 < err(40, "euler") / err(80, "euler") < 2.3
    assert 3.4 < err(40, "heun") / err(80, "heun") < 4.6


def test_float32_noise_works_and_t_is_float32():
    mu, sigma = _toy(6)
    seen = []
    vf64 = gaussian_velocity(sigma)

    def vf(z, t, ctx, mask):
        seen.append(t.dtype)
        return vf64(z.double(), t, ctx.double(), mask).float()

    xi = torch.randn(1000, C, generator=torch.Generator().manual_seed(0))
    ctx, mask = _context_for(mu.float(), 1000)
    out = sample(vf, xi, 40, context=ctx, context_mask=mask, method="heun")
    assert out.dtype == torch.float32 and set(seen) == {torch.float32}
    assert (out.double() - (mu + sigma * xi.double())).abs().max().item() < 0.02


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_same_seed_same_output(method):
    mu, sigma = _toy(7)
    mu_u = torch.zeros(C, dtype=torch.float64)
    results = []
    for seed in (11, 11, 12):
        noise = torch.randn(8, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        ctx, mask = _context_for(mu, 8)
        uctx, umask = _context_for(mu_u, 1, length=2)
        results.append(
            sample(gaussian_velocity(sigma), noise, 6, shift=2.0, cfg_scale=4.0, context=ctx,
                   context_mask=mask, uncond_context=uctx, uncond_mask=umask, method=method)
        )
    assert torch.equal(results[0], results[1])
    assert not torch.allclose(results[0], results[2])


# --------------------------------------------------------------------------- guidance


def _cfg_setup(batch=64, seed=8):
    mu_c, sigma = _toy(seed)
    mu_u = torch.randn(C, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)
    noise = torch.randn(batch, C, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    ctx, mask = _context_for(mu_c, batch, length=5)
    uctx, umask = _context_for(mu_u, batch, length=2)
    return mu_c, mu_u, sigma, noise, ctx, mask, uctx, umask


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_cfg_scale_one_equals_cond_only(method):
    mu_c, mu_u, sigma, noise, ctx, mask, uctx, umask = _cfg_setup()
    vf = gaussian_velocity(sigma)
    guided = sample(vf, noise, 8, cfg_scale=1.0, context=ctx, context_mask=mask,
                    uncond_context=uctx, uncond_mask=umask, method=method)
    cond = sample(vf, noise, 8, context=ctx, context_mask=mask, method=method)
    assert torch.equal(guided, cond)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_cfg_scale_zero_equals_uncond_only(method):
    mu_c, mu_u, sigma, noise, ctx, mask, uctx, umask = _cfg_setup()
    vf = gaussian_velocity(sigma)
    guided = sample(vf, noise, 8, cfg_scale=0.0, context=ctx, context_mask=mask,
                    uncond_context=uctx, uncond_mask=umask, method=method)
    uncond = sample(vf, noise, 8, context=uctx, context_mask=umask, method=method)
    cond = sample(vf, noise, 8, context=ctx, context_mask=mask, method=method)
    assert torch.allclose(guided, uncond, rtol=0, atol=1e-12)
    assert not torch.allclose(guided, cond)


def test_cfg_extrapolates_the_mean():
    """v is affine in μ, so guidance g samples N(μ_u + g(μ_c − μ_u), σ²) exactly."""
    mu_c, mu_u, sigma, noise, ctx, mask, uctx, umask = _cfg_setup(batch=500)
    g = 3.5
    out = sample(gaussian_velocity(sigma), noise, 40, cfg_scale=g, context=ctx, context_mask=mask,
                 uncond_context=uctx[:1], uncond_mask=umask[:1], method="heun")
    target = mu_u + g * (mu_c - mu_u) + sigma * noise
    assert (out - target).abs().max().item() < 0.02


@pytest.mark.parametrize("method,calls_per_step", [("euler", 1), ("heun", 2)])
def test_cfg_is_one_batched_forward(method, calls_per_step):
    mu_c, mu_u, sigma, noise, ctx, mask, uctx, umask = _cfg_setup(batch=6)
    inner = gaussian_velocity(sigma)
    calls = []

    def vf(z, t, context, m):
        calls.append((z.clone(), t.clone(), context.clone(), m.clone()))
        return inner(z, t, context, m)

    steps = 5
    sample(vf, noise, steps, cfg_scale=2.0, context=ctx, context_mask=mask,
           uncond_context=uctx, uncond_mask=umask, method=method)
    assert len(calls) == calls_per_step * steps
    times = sampling_timesteps(steps)
    for i, (z, t, context, m) in enumerate(calls):
        assert z.shape == (12, C) and torch.equal(z[:6], z[6:])
        assert torch.equal(t, t[:1].expand(12))
        if method == "euler":
            assert t[0].item() == pytest.approx(times[i].item())
        assert context.shape == (12, 5, C) and m.shape == (12, 5)
        # unconditional half first, padded to the conditional length with mask False
        assert torch.equal(m[:6], torch.tensor([[True, False, False, False, False]]).expand(6, 5))
        assert torch.equal(context[:6, :2], uctx) and not context[:6, 2:].any()
        assert torch.equal(m[6:], mask) and torch.equal(context[6:], ctx)


def test_cfg_pads_the_shorter_conditional_context():
    mu_c, mu_u, sigma, noise, _, _, _, _ = _cfg_setup(batch=3)
    ctx, mask = _context_for(mu_c, 3, length=2)
    uctx, umask = _context_for(mu_u, 1, length=6)  # longer unconditional context
    seen = []

    def vf(z, t, context, m):
        seen.append(m.clone())
        return gaussian_velocity(sigma)(z, t, context, m)

    sample(vf, noise, 1, cfg_scale=2.0, context=ctx, context_mask=mask, uncond_context=uctx, uncond_mask=umask)
    assert seen[0].shape == (6, 6)
    assert torch.equal(seen[0][3:], torch.tensor([[True] + [False] * 5]).expand(3, 6))


def test_progress_callback():
    mu, sigma = _toy(9)
    ctx, mask = _context_for(mu, 2)
    seen = []
    sample(gaussian_velocity(sigma), torch.randn(2, C, dtype=torch.float64), 7, context=ctx,
           context_mask=mask, method="heun", progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 7) for i in range(1, 8)]


def test_mask_none_means_all_tokens():
    mu, sigma = _toy(10)
    noise = torch.randn(4, C, dtype=torch.float64)
    ctx = mu.expand(4, 3, C).clone()
    a = sample(gaussian_velocity(sigma), noise, 3, context=ctx, context_mask=None)
    b = sample(gaussian_velocity(sigma), noise, 3, context=ctx, context_mask=torch.ones(4, 3, dtype=torch.bool))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(steps=0),
        dict(steps=2.0),
        dict(cfg_scale=math.nan),
        dict(cfg_scale=math.inf),
        dict(method="rk4"),
        dict(cfg_scale=3.0, uncond_context=None),
        dict(context=torch.zeros(5, 3, C, dtype=torch.float64)),  # batch mismatch
        dict(context=torch.zeros(4, C, dtype=torch.float64)),  # not B×L×D
        dict(context_mask=torch.ones(4, 2, dtype=torch.bool)),  # mask shape
        dict(uncond_context=torch.zeros(3, 1, C, dtype=torch.float64), uncond_mask=None),  # batch 3
        dict(uncond_context=torch.zeros(4, 1, C + 1, dtype=torch.float64), uncond_mask=None),  # width
        dict(noise=torch.zeros(4, C, dtype=torch.long)),
    ],
)
def test_sample_rejects_bad_input(overrides):
    mu, sigma = _toy(11)
    ctx, mask = _context_for(mu, 4)
    uctx, umask = _context_for(mu, 1)
    kwargs = dict(noise=torch.randn(4, C, dtype=torch.float64), steps=3, cfg_scale=2.0, context=ctx,
                  context_mask=mask, uncond_context=uctx, uncond_mask=umask)
    kwargs.update(overrides)
    noise, steps = kwargs.pop("noise"), kwargs.pop("steps")
    with pytest.raises(ValueError):
        sample(gaussian_velocity(sigma), noise, steps, **kwargs)


def test_sample_rejects_wrong_velocity_shape():
    ctx = torch.zeros(2, 1, C)
    with pytest.raises(ValueError):
        sample(lambda z, t, c, m: z[:, :1], torch.randn(2, C), 2, context=ctx, context_mask=None)


# --------------------------------------------------------------------------- training


def test_flow_matching_loss_zero_for_exact_target():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 2, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.rand(5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    ctx, mask = torch.randn(5, 7, 8, dtype=torch.float64), torch.ones(5, 7, dtype=torch.bool)

    def oracle(z, tt, c, m):  # recovers ε − x from z_t = (1 − t)x + tε knowing x
        tb = tt.view(-1, 1, 1, 1, 1)
        return (z - x0) / tb

    loss = flow_matching_loss(oracle, x0, ctx, mask, t=t, noise=noise)
    assert loss.ndim == 0 and loss.item() < 1e-20


def test_flow_matching_loss_matches_reference_and_backprops():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 3, 5, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.rand(6, generator=g)
    ctx, mask = torch.randn(6, 4, 8, generator=g), torch.rand(6, 4, generator=g) > 0.3
    w = torch.randn(5, 5, generator=g, requires_grad=True)

    def model(z, tt, c, m):
        return z @ w * tt.view(-1, 1, 1) + _masked_mean(c, m | ~m.any(1, keepdim=True))[:, None, :5]

    loss = flow_matching_loss(model, x0, ctx, mask, t=t, noise=noise)
    # plain per-sample loop reference
    total = 0.0
    for i in range(6):
        zi = (1 - t[i]) * x0[i] + t[i] * noise[i]
        pred = model(zi[None], t[i : i + 1], ctx[i : i + 1], mask[i : i + 1])[0]
        total = total + ((pred - (noise[i] - x0[i])) ** 2).sum()
    ref = total / x0.numel()
    assert torch.allclose(loss, ref, rtol=1e-5, atol=1e-7)
    loss.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_flow_matching_loss_defaults_are_seeded():
    x0 = torch.randn(4, 2, 3)
    ctx = torch.randn(4, 2, 3)

    def model(z, t, c, m):
        return 0.5 * z

    def run(seed):
        return flow_matching_loss(model, x0, ctx, None, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(t=torch.full((4,), 1.5)),
        dict(t=torch.full((3,), 0.5)),
        dict(noise=torch.zeros(4, 2)),
        dict(context=torch.zeros(3, 2, 3)),
        dict(model_fn=lambda z, t, c, m: z.sum(-1)),
    ],
)
def test_flow_matching_loss_rejects_bad_input(overrides):
    kwargs = dict(model_fn=lambda z, t, c, m: z, x0=torch.randn(4, 2, 3), context=torch.randn(4, 2, 3), mask=None)
    kwargs.update(overrides)
    with pytest.raises(ValueError):
        flow_matching_loss(**kwargs)


def test_contrastive_flow_matching_loss_matches_reference():
    g = torch.Generator().manual_seed(3)
    x0, neg = torch.randn(5, 2, 3, 4, generator=g, dtype=torch.float64), torch.randn(5, 2, 3, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.rand(5, generator=g, dtype=torch.float64)
    lam = torch.tensor([0.0, 0.05, 0.1, 0.0, 0.3], dtype=torch.float64)
    ctx = torch.randn(5, 3, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def model(z, tt, c, m):
        return z @ w * tt.view(-1, 1, 1, 1) + c.mean(1)[:, None, None, :4]

    loss = flow_matching_loss(model, x0, ctx, None, t=t, noise=noise, negative=neg, negative_weight=lam)
    terms = []
    for i in range(5):  # per-sample loop: ||v − (ε − x)||² − λ ||v − (ε − x̃)||², element means
        zi = (1 - t[i]) * x0[i] + t[i] * noise[i]
        v = model(zi[None], t[i : i + 1], ctx[i : i + 1], None)[0]
        terms.append(((v - (noise[i] - x0[i])) ** 2).mean() - lam[i] * ((v - (noise[i] - neg[i])) ** 2).mean())
    assert loss.dtype == torch.float32  # the loss is taken in float32 by design
    assert torch.allclose(loss.double(), torch.stack(terms).mean(), rtol=1e-6)
    # zero weights give the plain loss exactly
    plain = flow_matching_loss(model, x0, ctx, None, t=t, noise=noise)
    zero = flow_matching_loss(model, x0, ctx, None, t=t, noise=noise, negative=neg, negative_weight=torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(plain, zero, rtol=1e-6)
    loss.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_contrastive_flow_matching_optimum_moves_away_from_negative():
    """Minimising over a free prediction gives v = (ε − x) + λ/(1 − λ)(x̃ − x) (ΔFM's closed form)."""
    g = torch.Generator().manual_seed(4)
    x0, neg, noise = (torch.randn(3, 2, 5, generator=g, dtype=torch.float64) for _ in range(3))
    t, lam = torch.full((3,), 0.6, dtype=torch.float64), torch.tensor([0.1, 0.2, 0.0], dtype=torch.float64)
    v = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.LBFGS([v], max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        loss = flow_matching_loss(lambda z, tt, c, m: v, x0, torch.zeros(3, 1, 2, dtype=torch.float64), None,
                                  t=t, noise=noise, negative=neg, negative_weight=lam)
        loss.backward()
        return loss

    opt.step(closure)
    k = (lam / (1 - lam)).view(3, 1, 1)
    assert torch.allclose(v.detach(), noise - x0 + k * (neg - x0), atol=1e-5)


@pytest.mark.parametrize("extra", [
    {"negative": torch.randn(4, 2, 3)},                                                   # no weight
    {"negative": torch.randn(4, 2, 2), "negative_weight": torch.zeros(4)},                # wrong shape
    {"negative": torch.randn(4, 2, 3), "negative_weight": torch.zeros(3)},                # wrong batch
    {"negative": torch.randn(4, 2, 3), "negative_weight": torch.full((4,), 1.0)},         # λ = 1 is unbounded
    {"negative": torch.randn(4, 2, 3), "negative_weight": torch.full((4,), -0.1)},
])
def test_contrastive_flow_matching_rejects_bad_negative(extra):
    with pytest.raises(ValueError):
        flow_matching_loss(lambda z, t, c, m: z, torch.randn(4, 2, 3), torch.randn(4, 2, 3), None, **extra)


def test_mix_high_noise_times_share_and_range():
    n = 40_000
    g = torch.Generator().manual_seed(5)
    t = sample_timesteps_logit_normal(n, g, mean=0.7)
    mixed = mix_high_noise_times(t, 0.3, 0.9, g)
    changed = mixed != t
    # a replaced time is uniform on [0.9, 1): share ≈ 0.3 (binomial s.e. 0.0023), mean ≈ 0.95
    assert abs(changed.float().mean().item() - 0.3) < 0.012
    assert bool(((mixed[changed] >= 0.9) & (mixed[changed] < 1.0)).all())
    assert abs(mixed[changed].mean().item() - 0.95) < 0.002
    # P(t > 0.95): logit-normal(0.7, 1) alone ~1.3 %; mixed ~0.7·1.3 % + 0.3·50 % ≈ 15.9 %
    assert (t > 0.95).float().mean().item() < 0.02 and abs((mixed > 0.95).float().mean().item() - 0.159) < 0.012


def test_mix_high_noise_times_off_draws_nothing():
    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    t = torch.rand(8, generator=torch.Generator().manual_seed(1))
    assert mix_high_noise_times(t, 0.0, 0.9, g1) is t
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    with pytest.raises(ValueError):
        mix_high_noise_times(t, 1.5, 0.9, g1)
    with pytest.raises(ValueError):
        mix_high_noise_times(t, 0.5, 1.0, g1)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.8, 0.5), (-1.2, 2.0)])
def test_logit_normal_timesteps(mean, std):
    n = 40_000
    t = sample_timesteps_logit_normal(n, torch.Generator().manual_seed(0), mean=mean, std=std)
    assert t.shape == (n,) and t.dtype == torch.float32
    assert bool(((t > 0) & (t < 1)).all())
    # median of a logit-normal is sigmoid(mean); the median's standard error is ~ 1.25σ_t/√n
    median = 1 / (1 + math.exp(-mean))
    assert abs(t.median().item() - median) < 0.01
    logit = torch.log(t.double()) - torch.log1p(-t.double())
    assert abs(logit.std().item() - std) < 0.03 * std
    again = sample_timesteps_logit_normal(n, torch.Generator().manual_seed(0), mean=mean, std=std)
    assert torch.equal(t, again)


def test_logit_normal_extreme_std_stays_open_interval():
    t = sample_timesteps_logit_normal(10_000, torch.Generator().manual_seed(1), std=200.0)
    assert bool(((t > 0) & (t < 1)).all())


@pytest.mark.parametrize("kwargs", [dict(batch=0), dict(batch=4, std=0.0), dict(batch=4, mean=math.nan)])
def test_logit_normal_errors(kwargs):
    with pytest.raises(ValueError):
        sample_timesteps_logit_normal(**kwargs)


@pytest.mark.parametrize(
    "make_rng",
    [lambda s: random.Random(s), lambda s: np.random.default_rng(s), lambda s: torch.Generator().manual_seed(s)],
)
def test_drop_captions(make_rng):
    prompts = [f"caption {i}" for i in range(20_000)]
    out = drop_captions(prompts, 0.1, make_rng(0))
    assert len(out) == len(prompts)
    dropped = sum(o == "" for o in out)
    # binomial(20000, 0.1): sd ≈ 42
    assert abs(dropped - 2000) < 5 * 42
    assert all(o in ("", p) for o, p in zip(out, prompts))
    assert drop_captions(prompts, 0.1, make_rng(0)) == out
    assert drop_captions(prompts[:50], 0.0, make_rng(1)) == prompts[:50]
    assert drop_captions(prompts[:50], 1.0, make_rng(1)) == [""] * 50


@pytest.mark.parametrize(
    "args",
    [
        ("a prompt", 0.1, random.Random(0)),
        (["a"], 1.5, random.Random(0)),
        (["a"], -0.1, random.Random(0)),
        (["a", 3], 0.1, random.Random(0)),
        (["a"], 0.1, 42),
    ],
)
def test_drop_captions_errors(args):
    with pytest.raises(ValueError):
        drop_captions(*args)
