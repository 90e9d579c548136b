"""UniPC sampler option against the exact flow of a Gaussian (closed-form velocity and endpoint)."""
import pytest
import torch

pytest.importorskip("diffusers")

from lingen_model.generation.flow import sample  # noqa: E402

MU, S = 0.7, 0.4  # data x ~ N(MU, S²) per element


def exact_velocity(z, t, ctx, mask):
    """E[ε − x | z_t] for z_t = (1−t)x + tε with Gaussian x: linear in z."""
    t = t.double().view(-1, *([1] * (z.dim() - 1)))
    var = (1 - t) ** 2 * S ** 2 + t ** 2
    r = z.double() - (1 - t) * MU
    return (t / var * r - (MU + (1 - t) * S ** 2 / var * r)).to(z.dtype)


@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_unipc_converges_to_the_exact_endpoint_and_beats_euler(shift):
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(4, 3, 2, 2, 2, generator=g, dtype=torch.float64)
    want = MU + S * eps  # the ODE maps ε to μ + s·ε (z_t = (1−t)μ + σ_t ε)
    ctx, mask = torch.zeros(4, 1, 2, dtype=torch.float64), torch.ones(4, 1, dtype=torch.bool)

    def err(method, steps):
        z = sample(exact_velocity, eps, steps, shift=shift, context=ctx, context_mask=mask, method=method)
        return (z - want).abs().max().item()

    e10, e50, euler50 = err("unipc", 10), err("unipc", 50), err("euler", 50)
    print(f"shift {shift}: max error unipc 10 steps {e10:.2e}, 50 steps {e50:.2e}; euler 50 steps {euler50:.2e}")
    assert e50 < 0.5 * e10 and e50 < 0.2 * euler50 and e50 < 2e-2


def test_unipc_with_cfg_and_progress():
    calls = []
    eps = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    ctx = torch.ones(2, 3, 5)
    z = sample(lambda z, t, c, m: z * 0 + c[:, :1, :4].sum(1), eps, 4, shift=3.0, cfg_scale=2.0, context=ctx,
               context_mask=torch.ones(2, 3, dtype=torch.bool), uncond_context=torch.zeros(1, 1, 5),
               method="unipc", progress=lambda k, n: calls.append((k, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # constant velocity 2·1 (guided: 0 + 2·(1 − 0)): z0 = ε − 2
    assert torch.allclose(z, eps - 2.0, atol=1e-5)
