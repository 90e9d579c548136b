"""Contrast guidance in the sampler (``flow.sample(contrast_context=, contrast_scale=)``) and direction
guidance in the pipeline (the contrast is the prompt with its direction words swapped).

Reference: the Gaussian toy of ``test_flow`` — for data N(μ, σ²) the exact velocity is affine in μ,
and the guided combination v_u + g·(v_c − v_u) + w·(v_c − v_x) has weights 1 − g, g + w, −w that
sum to 1, so it IS the exact velocity of μ_eff = μ_u + g·(μ_c − μ_u) + w·(μ_c − μ_x): a guided run
must equal an unguided run on μ_eff (float64, fresh random μ, σ and noise), and sample
N(μ_eff, σ²) exactly."""
import pytest
import torch

from lingen_model.generation.contrast import DIRECTION_PAIRS, opposite_direction
from lingen_model.generation.flow import sample
from test_flow import C, _context_for, _toy, gaussian_velocity


def _setup(seed: int, batch: int = 64):
    mu_c, sigma = _toy(seed)
    g = torch.Generator().manual_seed(seed + 7)
    mu_u = torch.randn(C, generator=g, dtype=torch.float64)
    mu_x = mu_c + 0.5 * torch.randn(C, generator=g, dtype=torch.float64)
    noise = torch.randn(batch, C, generator=g, dtype=torch.float64)
    return mu_c, mu_u, mu_x, sigma, noise


@pytest.mark.parametrize("seed", [31, 32, 33])
@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("cfg,w", [(4.0, 2.5), (1.0, 3.0), (2.0, -1.0)])
def test_contrast_guided_run_equals_the_run_on_the_combined_mean(seed, method, cfg, w):
    mu_c, mu_u, mu_x, sigma, noise = _setup(seed)
    batch = noise.shape[0]
    ctx, mask = _context_for(mu_c, batch, length=5)
    uctx, umask = _context_for(mu_u, 1, length=2)
    xctx, xmask = _context_for(mu_x, 1, length=4)
    vf = gaussian_velocity(sigma)
    guided = sample(vf, noise, 12, cfg_scale=cfg, context=ctx, context_mask=mask, uncond_context=uctx,
                    uncond_mask=umask, contrast_context=xctx, contrast_mask=xmask, contrast_scale=w, method=method)
    mu_eff = mu_u + cfg * (mu_c - mu_u) + w * (mu_c - mu_x)
    ectx, emask = _context_for(mu_eff, batch, length=3)
    reference = sample(vf, noise, 12, context=ectx, context_mask=emask, method=method)
    assert torch.allclose(guided, reference, rtol=0, atol=1e-10)
    if method == "heun":  # and the exact answer of the toy: N(μ_eff, σ²)
        exact = sample(vf, noise, 60, cfg_scale=cfg, context=ctx, context_mask=mask, uncond_context=uctx,
                       uncond_mask=umask, contrast_context=xctx, contrast_mask=xmask, contrast_scale=w, method="heun")
        assert (exact - (mu_eff + sigma * noise)).abs().max().item() < 0.02


def test_scale_zero_or_no_contrast_is_plain_cfg_bit_for_bit():
    mu_c, mu_u, mu_x, sigma, noise = _setup(40, batch=8)
    ctx, mask = _context_for(mu_c, 8)
    uctx, umask = _context_for(mu_u, 1)
    xctx, xmask = _context_for(mu_x, 1)
    vf = gaussian_velocity(sigma)
    plain = sample(vf, noise, 5, cfg_scale=3.0, context=ctx, context_mask=mask, uncond_context=uctx, uncond_mask=umask)
    off = sample(vf, noise, 5, cfg_scale=3.0, context=ctx, context_mask=mask, uncond_context=uctx, uncond_mask=umask,
                 contrast_context=xctx, contrast_mask=xmask, contrast_scale=0.0)
    assert torch.equal(plain, off)
    on = sample(vf, noise, 5, cfg_scale=3.0, context=ctx, context_mask=mask, uncond_context=uctx, uncond_mask=umask,
                contrast_context=xctx, contrast_mask=xmask, contrast_scale=1.0)
    assert not torch.allclose(plain, on)


def test_contrast_joins_the_one_batched_call_after_uncond_and_cond():
    mu_c, mu_u, mu_x, sigma, noise = _setup(41, batch=3)
    ctx, mask = _context_for(mu_c, 3, length=2)
    uctx, umask = _context_for(mu_u, 1, length=3)
    xctx, xmask = _context_for(mu_x, 3, length=6)  # the longest: the others are padded to it
    seen = []

    def vf(z, t, context, m):
        seen.append((z.clone(), t.clone(), context.clone(), m.clone()))
        return gaussian_velocity(sigma)(z, t, context, m)

    sample(vf, noise, 4, cfg_scale=2.0, context=ctx, context_mask=mask, uncond_context=uctx, uncond_mask=umask,
           contrast_context=xctx, contrast_mask=xmask, contrast_scale=1.5)
    assert len(seen) == 4
    z, t, context, m = seen[0]
    assert z.shape == (9, C) and torch.equal(z[:3], z[3:6]) and torch.equal(z[:3], z[6:])
    assert torch.equal(t, t[:1].expand(9))
    assert context.shape == (9, 6, C) and m.shape == (9, 6)
    assert torch.equal(context[:3, :3], uctx.expand(3, -1, -1)) and not context[:3, 3:].any()
    assert torch.equal(context[3:6, :2], ctx) and not m[3:6, 2:].any()
    assert torch.equal(context[6:], xctx) and torch.equal(m[6:], xmask)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "2"])
def test_bad_contrast_scale_is_refused(bad):
    mu_c, mu_u, mu_x, sigma, noise = _setup(42, batch=2)
    ctx, mask = _context_for(mu_c, 2)
    with pytest.raises(ValueError, match="contrast_scale"):
        sample(gaussian_velocity(sigma), noise, 2, context=ctx, context_mask=mask,
               contrast_context=ctx, contrast_mask=mask, contrast_scale=bad)


def test_contrast_of_another_width_or_batch_is_refused():
    mu_c, mu_u, mu_x, sigma, noise = _setup(43, batch=2)
    ctx, mask = _context_for(mu_c, 2)
    with pytest.raises(ValueError, match="contrast_context width"):
        sample(gaussian_velocity(sigma), noise, 2, context=ctx, context_mask=mask,
               contrast_context=torch.zeros(1, 3, C + 1, dtype=torch.float64), contrast_scale=1.0)
    with pytest.raises(ValueError, match="contrast_context batch"):
        sample(gaussian_velocity(sigma), noise, 2, context=ctx, context_mask=mask,
               contrast_context=torch.zeros(3, 3, C, dtype=torch.float64), contrast_scale=1.0)


# --------------------------------------------------------------------------- the contrast caption

@pytest.mark.parametrize("prompt,expected", [
    ("a red circle moving left on a black background", "a red circle moving right on a black background"),
    ("a blue square sliding toward the right", "a blue square sliding toward the left"),
    ("orange circle floating upward", "orange circle floating downward"),
    ("A ball moving from left to right", "A ball moving from right to left"),
    ("Left-moving box, then UP", "Right-moving box, then DOWN"),
    ("a red ball falls; a blue one rises", "a red ball rises; a blue one falls"),
    ("a green triangle drifting downwards", "a green triangle drifting upwards"),
])
def test_opposite_direction_swaps_every_direction_word(prompt, expected):
    assert opposite_direction(prompt) == expected
    assert opposite_direction(expected) == prompt  # an involution


@pytest.mark.parametrize("prompt", ["a red circle standing still", "an orbiting square", "a dog surfing",
                                    "bright lights", "a leftover box", "uptown", ""])
def test_no_direction_word_gives_none(prompt):
    assert opposite_direction(prompt) is None


def test_direction_pairs_are_a_matching():
    words = [w for pair in DIRECTION_PAIRS for w in pair]
    assert len(words) == len(set(words))
    with pytest.raises(TypeError):
        opposite_direction(None)
