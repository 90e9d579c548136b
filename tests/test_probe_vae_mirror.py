"""recipes/lingen-tiny/probe_vae_mirror.py (session 35 probe, issue 14): its channel fit must recover a latent
channel map exactly and leave a residual where no channel map explains the target."""
import torch

from support.recipes import load_recipe


def test_channel_fit_recovers_a_channel_map_and_not_more():
    probe = load_recipe("probe_vae_mirror")
    g = torch.Generator().manual_seed(0)
    src = torch.randn(3, 4, 2, 5, 6, generator=g, dtype=torch.float64)
    r = torch.randn(4, 4, generator=g, dtype=torch.float64)
    target = torch.einsum("bc...,cd->bd...", src, r)
    assert probe.relative(probe.channel_fit(src, target), target) < 1e-10
    noisy = target + torch.randn(target.shape, generator=g, dtype=torch.float64)
    assert 0.1 < probe.relative(probe.channel_fit(src, noisy), noisy) < 1.0
    assert probe.relative(src, src) == 0.0
