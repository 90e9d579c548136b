"""recipes/lingen-tiny/probe_sdedit_gt.py: re-noising a latent to t0 and sampling it back with the model's guidance.

With the exact velocity of a known clean latent z₀ (``v = (z − z₀)/t`` on the straight path
``z_t = (1 − t)·z₀ + t·ε``) every start time must come back to z₀ through CFG and direction guidance (equal
predictions), the first call must be at t0 (not at 1), and the library's schedule must be restored after."""
import importlib.util
from pathlib import Path

import pytest
import torch

from lingen_model.generation import flow
from lingen_model.generation.pipeline import LinGenPipeline

spec = importlib.util.spec_from_file_location(
    "probe_sdedit_gt", Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny" / "probe_sdedit_gt.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


class _ExactFlow:
    """A stand-in pipeline whose denoiser knows z₀; it records the times it is called at."""

    denoise = LinGenPipeline.denoise  # the library's guidance and sampler, on this stand-in
    config = {"sampling": {"cfg_scale": 5.0, "cfg_max_t": 0.84, "direction_guidance": 10.0}}

    def __init__(self, z0):
        self.z0, self.times, self.batches = z0, [], []
        self.denoiser = self

    def __call__(self, z, t, ctx, mask):
        self.times.append(float(t[0]))
        self.batches.append(z.shape[0])
        return (z - self.z0) / t.view(-1, 1, 1, 1, 1)

    def encode_prompt(self, prompts):
        return torch.zeros(len(prompts), 3, 4), torch.ones(len(prompts), 3, dtype=torch.bool)


@pytest.mark.parametrize("t0", [0.35, 0.8, 1.0])
def test_the_exact_velocity_returns_the_clean_latent_from_t0(t0):
    z0 = torch.randn(1, 8, 3, 8, 8, dtype=torch.float64)
    pipe = _ExactFlow(z0)
    schedule = flow.sampling_timesteps
    out = probe.sdedit(pipe, z0, "a red circle moving left", t0, steps=5, seed=int(torch.randint(0, 1000, ())))
    assert torch.allclose(out, z0, atol=1e-6)
    assert pipe.times[0] == pytest.approx(t0) and len(pipe.times) == 5
    assert pipe.times[-1] == pytest.approx(t0 / 5)  # evenly spaced in t, down to 0
    assert set(pipe.batches) == {3}  # unconditional, prompt and the direction contrast in one call
    assert flow.sampling_timesteps is schedule


def test_a_still_prompt_has_no_contrast_batch_and_t0_zero_is_the_latent_itself():
    z0 = torch.randn(1, 8, 3, 8, 8, dtype=torch.float64)
    pipe = _ExactFlow(z0)
    out = probe.sdedit(pipe, z0, "a red circle standing still", 0.5, steps=4, seed=3)
    assert torch.allclose(out, z0, atol=1e-6) and set(pipe.batches) == {2}
    assert probe.sdedit(pipe, z0, "a red circle", 0.0, steps=4, seed=3) is z0
