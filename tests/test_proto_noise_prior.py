"""recipes/lingen-tiny/proto_noise_prior.py and proto_autoguidance.py (session 28 prototypes, issue 14).

The noise prior must be the AR(1) process it claims (checked against its closed form in float64 on fresh noise,
and by its statistics), reach the training loss, and leave ρ = 0 as the library's noise; autoguidance must be
the identity for a weak model equal to the model, push by s·(v − v_bad) only at t ≥ AG_MIN_T, per latent frame."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


prior = _load("proto_noise_prior")
ag = _load("proto_autoguidance")


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_correlate_matches_closed_form(rho):
    xi = torch.randn(2, 3, 7, 4, 5, dtype=torch.float64)
    c = math.sqrt(1 - rho * rho)
    ref = torch.stack([sum((rho ** (f - k)) * (1.0 if k == 0 else c) * xi[:, :, k] for k in range(f + 1))
                       for f in range(xi.shape[2])], dim=2)
    torch.testing.assert_close(prior.correlate(xi, rho), ref)
    assert torch.equal(xi, xi.clone())  # input untouched


def test_correlate_statistics():
    y = prior.correlate(torch.randn(64, 8, 12, 8, 8), 0.6)
    assert torch.allclose(y.var(dim=(0, 1, 3, 4)), torch.ones(12), atol=0.06)  # every frame N(0, 1)
    lag1 = (y[:, :, 1:] * y[:, :, :-1]).mean()
    lag3 = (y[:, :, 3:] * y[:, :, :-3]).mean()
    assert abs(lag1 - 0.6) < 0.02 and abs(lag3 - 0.216) < 0.02


@pytest.mark.parametrize("rho", [-0.1, 1.0])
def test_correlate_rejects_rho(rho):
    with pytest.raises(ValueError):
        prior.correlate(torch.randn(1, 1, 3, 2, 2), rho)


def test_training_noise_is_correlated(monkeypatch):
    monkeypatch.setattr(prior, "NOISE_RHO", 0.7)
    seen = {}

    def model_fn(z, t, c, m):
        seen["z"] = z.clone()
        return torch.zeros_like(z)

    x0, noise = torch.zeros(2, 4, 6, 3, 3), torch.randn(2, 4, 6, 3, 3)
    prior.flow_matching_loss(model_fn, x0, torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), t=torch.ones(2), noise=noise)
    torch.testing.assert_close(seen["z"], prior.correlate(noise, 0.7))  # at t = 1, z_t is the noise


class _Velocity:
    def __init__(self, scale):
        self.scale = scale

    def __call__(self, z, t, ctx, m, **kw):
        return self.scale * z


@pytest.mark.parametrize("per_frame", [False, True])
def test_autoguidance_push(monkeypatch, per_frame):
    monkeypatch.setattr(ag, "AG_SCALE", 0.5)
    monkeypatch.setattr(ag, "AG_MIN_T", 0.8)
    z = torch.randn(3, 2, 4, 2, 2)
    t = torch.tensor([[0.95, 0.9, 0.7, 0.5]] * 3) if per_frame else torch.tensor([0.9, 0.9, 0.9])
    good = _Velocity(2.0)
    monkeypatch.setitem(ag._bad, "model", good)
    torch.testing.assert_close(ag.autoguided(good)(z, t, None, None), 2.0 * z)  # weak = model: no push
    monkeypatch.setitem(ag._bad, "model", _Velocity(1.0))
    out = ag.autoguided(good)(z, t, None, None)
    high = (t >= 0.8).reshape(3, 1, -1, 1, 1).expand_as(z)
    torch.testing.assert_close(out[high], (2.0 * z + 0.5 * (2.0 * z - z))[high])
    torch.testing.assert_close(out[~high], (2.0 * z)[~high])
