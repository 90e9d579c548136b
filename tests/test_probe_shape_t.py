"""recipes/lingen-tiny/probe_shape_t.py: noising to a schedule time and integrating back.

With the exact velocity of a known clean latent z₀ (``v = (z − z₀)/t`` on the straight path
``z_t = (1 − t)·z₀ + t·ε``) every start time must come back to z₀, and CFG of two equal
predictions is that prediction; a start time off by one schedule step would not."""
import importlib.util
from pathlib import Path

import pytest
import torch

from lingen_model.generation.flow import sampling_timesteps, shift_for_tokens

spec = importlib.util.spec_from_file_location(
    "probe_shape_t", Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny" / "probe_shape_t.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


class _ExactFlow:
    """A stand-in pipeline whose denoiser knows z₀; it records the first time it is called at."""

    def __init__(self, z0):
        self.z0, self.first_t = z0, None
        self.denoiser = self

    def default_shift(self, latent_shape):  # a checkpoint without ``sampling.shift``: the token count's
        return shift_for_tokens(latent_shape[2] * (latent_shape[3] // 2) * (latent_shape[4] // 2))

    def __call__(self, z, t, ctx, mask):
        if self.first_t is None:
            self.first_t = float(t[0])
        return (z - self.z0) / t.view(-1, 1, 1, 1, 1)

    def encode_prompt(self, prompts):
        return torch.zeros(len(prompts), 3, 4), torch.ones(len(prompts), 3, dtype=torch.bool)

    def decode(self, z):
        return z


@pytest.mark.parametrize("t_start", [0.3, 0.6, 1.0])
def test_the_exact_velocity_returns_the_clean_latent_from_any_start(t_start):
    z0 = torch.randn(1, 8, 3, 8, 8, dtype=torch.float64)
    pipe = _ExactFlow(z0)
    out = probe.sample_from(pipe, z0, t_start, "a red circle", seed=int(torch.randint(0, 1000, ())), cfg=5.0)
    # the probe hands the denoiser float32 times (as the pipeline does), so each step's velocity is off by
    # float32 rounding of t (~1e-7 relative); a start one schedule step off is off by ~3 % of |z − z0|
    assert torch.allclose(out, z0, atol=1e-5)
    times = sampling_timesteps(30, shift_for_tokens(3 * 4 * 4)).tolist()
    assert pipe.first_t == pytest.approx(min(times, key=lambda t: abs(t - t_start)))


def test_a_start_at_zero_is_the_clean_latent_itself():
    z0 = torch.randn(1, 8, 3, 8, 8, dtype=torch.float64)
    pipe = _ExactFlow(z0)
    assert torch.equal(probe.sample_from(pipe, z0, 0.0, "a red circle", seed=1, cfg=5.0), z0)
    assert pipe.first_t is None  # no step runs
