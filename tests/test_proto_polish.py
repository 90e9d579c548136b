"""recipes/lingen-tiny/proto_polish.py's temporal blur (session 29 prototype, issue 14): a Gaussian along the latent
frames with replicated edges, checked against a plain loop in float64 on fresh random latents."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny"


@pytest.fixture(scope="module")
def polish():
    sys.path.insert(0, str(RECIPES))
    try:
        spec = importlib.util.spec_from_file_location("proto_polish", RECIPES / "proto_polish.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(RECIPES))


def _blur_ref(z, sigma):
    r = max(1, math.ceil(3 * sigma))
    w = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-r, r + 1)]
    s = sum(w)
    out = torch.zeros_like(z)
    T = z.shape[2]
    for t in range(T):
        for j, i in enumerate(range(-r, r + 1)):
            out[:, :, t] += (w[j] / s) * z[:, :, min(max(t + i, 0), T - 1)]
    return out


@pytest.mark.parametrize("sigma,T", [(1.0, 9), (0.6, 5), (2.5, 4)])
def test_temporal_blur_matches_loop(polish, sigma, T):
    z = torch.randn(2, 3, T, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(polish.temporal_blur(z, sigma), _blur_ref(z, sigma), rtol=0, atol=1e-12)


def test_temporal_blur_off_and_constant(polish):
    z = torch.randn(1, 2, 6, 3, 3, dtype=torch.float64)
    assert polish.temporal_blur(z, 0.0) is z
    c = torch.randn(1, 2, 1, 3, 3, dtype=torch.float64).expand(1, 2, 6, 3, 3).contiguous()
    torch.testing.assert_close(polish.temporal_blur(c, 1.3), c, rtol=0, atol=1e-12)
