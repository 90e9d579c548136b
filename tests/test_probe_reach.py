"""recipes/lingen-tiny/probe_reach.py: the temporal-reach estimate against a map whose Jacobian is
known exactly — a temporal convolution ``y[k] = Σ_j a[k − j]·z[j]`` has ``‖∂y[k]/∂z[j]‖² ∝ a[k − j]²``
for every projection, so the shares are exact whatever the random probes."""
import importlib.util
from pathlib import Path

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "probe_reach", Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny" / "probe_reach.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


@pytest.mark.parametrize("frames", [5, 9])
def test_shares_of_a_temporal_convolution(frames):
    g = torch.Generator().manual_seed(frames)
    a = torch.randn(2 * frames - 1, generator=g, dtype=torch.float64)  # a[d + frames - 1] for d = k - j
    mix = torch.stack([torch.stack([a[k - j + frames - 1] for j in range(frames)]) for k in range(frames)])
    z = torch.randn(2, 3, frames, 4, 5, generator=g, dtype=torch.float64)
    s = probe.reach_matrix(lambda u: torch.einsum("kj,bcjhw->bckhw", mix, u), z, probes=1, generator=g)
    want = mix.pow(2) / mix.pow(2).sum(1, keepdim=True)
    torch.testing.assert_close(s, want, rtol=1e-9, atol=1e-12)
    assert probe.by_distance(want)[0] == pytest.approx(float(want.diagonal().mean()))
    idx = torch.arange(frames)
    assert probe.far_share(want) == pytest.approx(float((want * ((idx[:, None] - idx[None]).abs() > 3)).sum() / frames))


def test_a_purely_local_map_has_no_far_share():
    z = torch.randn(1, 2, 9, 3, 3, dtype=torch.float64)
    s = probe.reach_matrix(lambda u: 2 * u + torch.roll(u, 1, dims=2) * 0, z)
    assert torch.equal(s, torch.eye(9, dtype=torch.float64)) and probe.far_share(s) == 0.0
    with pytest.raises(ValueError):
        probe.reach_matrix(lambda u: u, z[0])
