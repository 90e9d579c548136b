"""Step caching (Δ-DiT's Δ-Cache, TaylorSeer's forecast) against hand-made references.

* off (``cache="none"``) the sampler and the denoiser are bit-identical to a plain block loop;
* the number of full denoiser evaluations and of block evaluations is what the schedule says;
* TaylorSeer's forecast of a polynomial feature of degree ≤ order is exact (values by hand);
* a Δ-Cache step equals the uncached network with the skipped half replaced by the stored
  deviation (forward hooks, float64), for a CFG-style batch of two different conditions;
* caching a CFG batch equals caching each sample on its own (no mixing across the batch).
"""
import pytest
import torch

from lingen_model import build_denoiser
from lingen_model.generation.flow import sample
from lingen_model.models.layers import timestep_embedding
from lingen_model.generation.step_cache import StepCache

SMALL = dict(width=32, depth=4, num_heads=2, ffn_dim=64, text_dim=16, headdim=16, d_state=8, chunk_size=8,
             in_channels=4, window=(2, 2, 2))


def model(seed=1):
    torch.manual_seed(0)
    m = build_denoiser("tiny", **SMALL).double().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random non-zero weights (adaLN-Zero gates would make every block the identity)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 / max(1, p.shape[-1]) ** 0.5
                    + (p == 1).to(p.dtype))
    return m


def data(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 4, 3, 4, 4, generator=g, dtype=torch.float64)
    ctx = torch.randn(b, 3, 16, generator=g, dtype=torch.float64)
    mask = torch.ones(b, 3, dtype=torch.bool)
    mask[0, 1:] = False  # like CFG's unconditional half
    return z, ctx, mask


def velocity_of(m):
    def velocity(z, t, ctx, mask, cache=None):
        return m(z, t, ctx, mask, cache=cache)
    return velocity


def test_off_is_bit_identical_to_a_plain_block_loop():
    m = model()
    z, ctx, mask = data()
    t = torch.tensor([0.7, 0.7], dtype=torch.float64)
    seen = {}
    m.final_norm.register_forward_hook(lambda mod, inp, out: seen.__setitem__("x", inp[0]))
    with torch.no_grad():
        v = m(z, t, ctx, mask)
        x_cached_path = seen["x"]
        # a plain block loop: positions added once, every block, positions removed once
        patches, grid = m.patchify(z)
        x0 = m.patch_embed(patches)
        pos = m._pos(grid, x0.device, x0.dtype)[None]
        t_emb = m.t_embed(timestep_embedding(t).to(x0.dtype))
        t_mod = m.t_block(t_emb).view(-1, 6, m.config.width)
        c = m.context_norm(m.context_proj(ctx))
        h = x0 + pos
        for block in m.blocks:
            h = block(h, t_mod, c, mask, grid)
        x = h - pos
        # the loop as it was first written (positions added before and removed after each block):
        # the same up to rounding, since every block is residual
        x_per_block = x0
        for block in m.blocks:
            x_per_block = block(x_per_block + pos, t_mod, c, mask, grid) - pos
    assert torch.equal(x_cached_path, x)
    torch.testing.assert_close(x_per_block, x, rtol=1e-12, atol=1e-12)
    # and the sampler with cache="none" equals the sampler given a plain 4-argument velocity
    noise = data(1)[0]
    kw = dict(shift=2.0, cfg_scale=3.0, context=ctx[1:], context_mask=mask[1:], uncond_context=ctx[:1],
              uncond_mask=mask[:1])
    a = sample(lambda z, t, c, mk: m(z, t, c, mk), noise, 5, **kw)
    b = sample(velocity_of(m), noise, 5, cache="none", **kw)
    assert torch.equal(a, b) and torch.isfinite(v).all()


@pytest.mark.parametrize("mode", ["delta", "taylor"])
def test_interval_one_is_every_step_full_and_bit_identical(mode):
    m = model()
    noise, ctx, mask = data(1)
    kw = dict(shift=2.0, context=ctx, context_mask=mask)
    a = sample(velocity_of(m), noise, 4, **kw)
    cache = StepCache(mode, 4, interval=1)
    b = sample(velocity_of(m), noise, 4, cache=cache, **kw)
    assert torch.equal(a, b) and cache.full_calls == 4


def test_schedule_by_hand():
    T, F = True, False
    # warm-up 2 (order 1), then every 2nd call counted from the last warm-up call; the last call full
    assert StepCache("taylor", 10, interval=2).schedule() == [T, T, F, T, F, T, F, T, F, T]
    assert StepCache("taylor", 8, interval=2).schedule() == [T, T, F, T, F, T, F, T]
    assert StepCache("delta", 7, interval=3).schedule() == [T, F, F, T, F, F, T]
    assert StepCache("delta", 8, interval=3).schedule() == [T, F, F, T, F, F, T, T]
    assert StepCache("taylor", 9, interval=3, order=2).schedule() == [T, T, T, F, F, T, F, F, T]
    assert sum(StepCache("taylor", 30).schedule()) == 12 and sum(StepCache("delta", 30).schedule()) == 11


@pytest.mark.parametrize("mode", ["delta", "taylor"])
@pytest.mark.parametrize("method,calls_per_step", [("euler", 1), ("heun", 2)])
def test_full_evaluations_follow_the_schedule(mode, method, calls_per_step):
    m = model()
    noise, ctx, mask = data(1)[0], *data(2)[1:]
    steps = 7
    cache = StepCache(mode, steps * calls_per_step, interval=3)
    counted = {"blocks": 0}
    for blk in m.blocks:
        blk.register_forward_hook(lambda *a: counted.__setitem__("blocks", counted["blocks"] + 1))
    sample(velocity_of(m), noise, steps, shift=2.0, cfg_scale=4.0, context=ctx[1:], context_mask=mask[1:],
           uncond_context=ctx[:1], uncond_mask=mask[:1], method=method, cache=cache)
    plan = cache.schedule()
    full = sum(plan)
    depth = m.config.depth
    assert cache.calls == steps * calls_per_step == len(plan)
    assert cache.full_calls == full < len(plan)
    per_cached = depth // 2 if mode == "delta" else 0
    assert counted["blocks"] == cache.block_calls == full * depth + (len(plan) - full) * per_cached


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_taylor_forecast_is_exact_for_polynomials_up_to_its_order(order):
    coeffs = [torch.tensor([[1.5, -2.0]], dtype=torch.float64), torch.tensor([[0.3, 4.0]], dtype=torch.float64),
              torch.tensor([[-1.2, 0.5]], dtype=torch.float64), torch.tensor([[2.0, -0.7]], dtype=torch.float64)]

    def feature(t, degree):  # a polynomial in t with known coefficients
        return sum(c * t ** i for i, c in enumerate(coeffs[:degree + 1]))

    times = [1.0, 0.93, 0.81, 0.6]  # non-uniform, like a time-shifted schedule
    for degree in range(4):
        cache = StepCache("taylor", 10, order=order)
        for t in times[: order + 1]:
            cache.push(t, feature(t, degree))
        t = 0.45
        by_hand = feature(t, degree)
        err = (cache.forecast(t) - by_hand).abs().max().item()
        if degree <= order:
            assert err < 1e-12, (order, degree, err)
        else:
            assert err > 1e-3, (order, degree, err)  # one degree more is not exact: the test can fail


def test_taylor_first_order_is_taylorseer_formula():
    """Order 1: F(t_0) + (F(t_0) − F(t_1)) / (t_0 − t_1) · (t − t_0) (TaylorSeer's first-order expansion)."""
    f0, f1 = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 3.0])
    cache = StepCache("taylor", 5, order=1)
    cache.push(0.9, f1)
    cache.push(0.8, f0)
    torch.testing.assert_close(cache.forecast(0.7), f0 + (f0 - f1) / (0.8 - 0.9) * (0.7 - 0.8))


@pytest.mark.parametrize("stage", ["early", "late"])
def test_delta_cache_step_matches_hooked_reference(stage):
    """Δ-Cache on a CFG-style batch of two conditions: call 0 full, call 1 cached; the cached call equals
    the uncached network whose skipped half is replaced (by forward hooks) by the stored deviation."""
    m = model()
    z0, ctx, mask = data(2, seed=3)
    z1 = z0 + 0.1 * data(2, seed=4)[0]
    t0, t1 = (torch.full((2,), v, dtype=torch.float64) for v in (0.8, 0.6))
    depth, mid = m.config.depth, m.config.depth // 2
    rec = {}
    hooks = [m.blocks[0].register_forward_pre_hook(lambda mod, a: rec.__setitem__("in", a[0])),
             m.blocks[mid - 1].register_forward_hook(lambda mod, a, out: rec.__setitem__("mid", out)),
             m.blocks[depth - 1].register_forward_hook(lambda mod, a, out: rec.__setitem__("out", out))]
    with torch.no_grad():
        m(z0, t0, ctx, mask)  # uncached call at t0: the deviations (positions cancel in the differences)
        d_front, d_rear = rec["mid"] - rec["in"], rec["out"] - rec["mid"]
        m(z1, t1, ctx, mask)
        h_in1, h_mid1 = rec["in"], rec["mid"]
        for h in hooks:
            h.remove()
        if stage == "early":  # rear half replaced: output of the last block = front(z1) + Δ_rear
            hook = m.blocks[depth - 1].register_forward_hook(lambda mod, a, out: h_mid1 + d_rear)
        else:  # front half replaced: input of block `mid` = input(z1) + Δ_front
            hook = m.blocks[mid].register_forward_pre_hook(lambda mod, a: (h_in1 + d_front, *a[1:]))
        expected = m(z1, t1, ctx, mask)
        hook.remove()
        cache = StepCache("delta", 4, interval=4, boundary=0.5 if stage == "early" else 0.0)
        m(z0, t0, ctx, mask, cache=cache)
        got = m(z1, t1, ctx, mask, cache=cache)
    assert cache.full_calls == 1
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(got, m(z1, t1, ctx, mask), rtol=1e-6, atol=1e-6)  # it did skip something


@pytest.mark.parametrize("mode", ["delta", "taylor"])
def test_cfg_batch_cache_equals_per_sample_cache(mode):
    m = model()
    noise, ctx, mask = data(2, seed=5)
    uncond, umask = torch.zeros(1, 1, 16, dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool)
    kw = dict(shift=2.0, cfg_scale=4.0, uncond_context=uncond, uncond_mask=umask, cache=mode)
    both = sample(velocity_of(m), noise, 6, context=ctx, context_mask=mask, **kw)
    for i in range(2):
        one = sample(velocity_of(m), noise[i:i + 1], 6, context=ctx[i:i + 1], context_mask=mask[i:i + 1], **kw)
        torch.testing.assert_close(both[i:i + 1], one, rtol=1e-9, atol=1e-9)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="cache mode"):
        StepCache("none", 5)
    with pytest.raises(ValueError, match="interval"):
        StepCache("delta", 5, interval=0)
    with pytest.raises(ValueError, match="boundary"):
        StepCache("delta", 5, boundary=1.5)
    with pytest.raises(ValueError, match="cache must be"):
        sample(lambda *a, **k: a[0], torch.zeros(1, 2), 2, context=torch.zeros(1, 1, 3), context_mask=None,
               cache="bogus")


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_cli_rejects_an_unknown_cache(command, tmp_path):
    from typer.testing import CliRunner

    from lingen_cli.app import app

    args = ["eval", "--ground-truth", "--limit", "1"] if command == "eval" else ["generate", "a red circle",
                                                                                 "--out", str(tmp_path)]
    r = CliRunner().invoke(app, args + ["--cache", "bogus"])
    assert r.exit_code != 0 and "unknown cache" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("mode", ["delta", "taylor"])
def test_contrast_guidance_with_a_cache_runs_the_contrast_on_full_calls_and_holds_it(mode):
    """Reference: a hand-written Euler loop — the CFG batch through the cache; after each call that ran
    the whole network, the contrast caption once without the cache; its difference v_c − v_x held
    through the cached calls; v = v_u + g(v_c − v_u) + w·Δ."""
    from lingen_model.generation.flow import sampling_timesteps

    m = model()
    noise, ctx, mask = data(1, seed=9)
    g = torch.Generator().manual_seed(10)
    xctx = torch.randn(1, 3, 16, generator=g, dtype=torch.float64)
    xmask = torch.ones(1, 3, dtype=torch.bool)
    uncond, umask = torch.zeros(1, 3, 16, dtype=torch.float64), torch.tensor([[True, False, False]])
    steps, cfg, w = 8, 3.0, 2.5
    calls = []

    def velocity(z, t, c, mk, cache=None):
        calls.append((z.shape[0], cache is not None))
        return m(z, t, c, mk, cache=cache)

    got = sample(velocity, noise, steps, shift=2.0, cfg_scale=cfg, context=ctx, context_mask=mask,
                 uncond_context=uncond, uncond_mask=umask, contrast_context=xctx, contrast_mask=xmask,
                 contrast_scale=w, cache=mode)
    sc = StepCache(mode, steps)
    full = sc.schedule()
    assert calls == [c for k in range(steps) for c in ([(2, True), (1, False)] if full[k] else [(2, True)])]
    times = sampling_timesteps(steps, 2.0).tolist()
    z, delta = noise, None
    with torch.no_grad():
        for k in range(steps):
            t = torch.full((2,), times[k], dtype=torch.float64)
            v = m(torch.cat([z, z]), t, torch.cat([uncond, ctx]), torch.cat([umask, mask]), cache=sc)
            v_u, v_c = v[:1], v[1:]
            if full[k]:
                delta = v_c - m(z, t[:1], xctx, xmask)
            z = z + (times[k + 1] - times[k]) * (v_u + cfg * (v_c - v_u) + w * delta)
    torch.testing.assert_close(got, z, rtol=1e-12, atol=1e-12)
    joint = sample(velocity_of(m), noise, steps, shift=2.0, cfg_scale=cfg, context=ctx, context_mask=mask,
                   uncond_context=uncond, uncond_mask=umask, contrast_context=xctx, contrast_mask=xmask,
                   contrast_scale=w)
    assert not torch.allclose(got, joint, rtol=1e-6, atol=1e-6)  # the cached calls did reuse something
