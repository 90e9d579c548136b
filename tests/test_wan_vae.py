"""The Wan VAE adapter: streamed chunked decode equals diffusers' AutoencoderKLWan decode,
per-channel latent normalisation, and peak memory flat in clip length."""
import gc

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from lingen_model.wan.vae import WanVAE, WanVAEConfig  # noqa: E402
from lingen_model.bench.mem_meter import LiveTensorMeter  # noqa: E402

Z = 4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: one thread is faster and immune to a loaded machine's contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_vae_config():
    """×4 spatial, ×4 temporal, 4 latent channels, random per-channel mean/std."""
    return dict(base_dim=8, z_dim=Z, dim_mult=[1, 2, 2], num_res_blocks=1, temperal_downsample=[True, True],
                latents_mean=[0.3, -0.2, 0.1, 0.5], latents_std=[1.5, 0.7, 2.0, 1.1], scale_factor_spatial=4)


def tiny_vae(seed=0):
    torch.manual_seed(seed)
    ref = diffusers.AutoencoderKLWan(**tiny_vae_config()).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial weights everywhere (zero-init layers would hide the cache)
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return ref, WanVAE.from_diffusers(ref).eval()


@pytest.mark.parametrize("chunk", [1, 2, 3, None])
def test_streamed_decode_equals_diffusers_full_decode(chunk):
    ref, vae = tiny_vae()
    assert (vae.spatial_factor, vae.temporal_factor, vae.latent_channels) == (4, 4, Z)
    g = torch.Generator().manual_seed(11)
    latents = torch.randn(2, Z, 6, 3, 5, generator=g)  # normalised latents
    raw = latents * torch.tensor([1.5, 0.7, 2.0, 1.1]).view(1, -1, 1, 1, 1) + torch.tensor([0.3, -0.2, 0.1, 0.5]).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        want = ref.decode(raw).sample
    pieces = list(vae.iter_decode(latents, chunk_frames=chunk))
    assert pieces[0][1].shape[2] == 1  # first chunk = one latent frame = one video frame
    got = torch.cat([y for _, y in pieces], dim=2)
    starts = [0] + [1 + 4 * a for a in range(0, 5, chunk or 5)]  # latent frame 1 + a → video frame 1 + 4a
    assert [f0 for f0, _ in pieces] == starts
    assert got.shape == want.shape == (2, 3, 21, 12, 20)
    err = (got - want).abs().max().item()
    print(f"chunk {chunk}: max abs diff vs diffusers decode {err:.2e}")
    assert err <= 1e-5
    u8 = vae.decode_uint8(latents, chunk_frames=chunk)
    want_u8 = ((want + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)
    assert (u8.int() - want_u8.int()).abs().max() <= (0 if err == 0 else 1)  # a rounding step at most


def test_encode_normalises_per_channel():
    ref, vae = tiny_vae(1)
    g = torch.Generator().manual_seed(2)
    video = torch.rand(1, 3, 9, 8, 8, generator=g) * 2 - 1
    with torch.no_grad():
        raw = ref.encode(video).latent_dist.mode()
    z = vae.encode(video)
    mean, std = torch.tensor([0.3, -0.2, 0.1, 0.5]), torch.tensor([1.5, 0.7, 2.0, 1.1])
    assert torch.allclose(z, (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1), atol=1e-6)
    assert torch.allclose(vae.denormalize(z), raw, atol=1e-6)


def _peak_stream(vae, t_latent):
    latents = torch.randn(1, Z, t_latent, 2, 2, generator=torch.Generator().manual_seed(t_latent))
    gc.collect()
    with LiveTensorMeter() as meter:
        frames = 0
        for _, y in vae.iter_decode(latents, chunk_frames=1):
            frames += y.shape[2]
            del y
    assert frames == 1 + 4 * (t_latent - 1)
    return meter.peak


def _check_flat(t_short, t_long):
    ref, vae = tiny_vae(2)
    short, long = _peak_stream(vae, t_short), _peak_stream(vae, t_long)
    with LiveTensorMeter() as m_short, torch.no_grad():
        ref.decode(torch.randn(1, Z, t_short, 2, 2))
    with LiveTensorMeter() as m_long, torch.no_grad():
        ref.decode(torch.randn(1, Z, t_long, 2, 2))
    print(f"streamed peak: {t_short} latent frames {short / 1e6:.3f} MB, {t_long}: {long / 1e6:.3f} MB "
          f"(×{long / short:.2f}); diffusers decode: {m_short.peak / 1e6:.3f} MB, {m_long.peak / 1e6:.3f} MB "
          f"(×{m_long.peak / m_short.peak:.2f})")
    assert long <= 1.5 * short
    assert m_long.peak > 1.5 * m_short.peak  # the meter does see a decode whose memory grows


def test_streamed_decode_peak_memory_is_flat_in_clip_length():
    """A clip 8× longer (25 vs 3 latent frames): streamed peak ≤ 1.5×; diffusers' decode grows."""
    _check_flat(3, 25)


@pytest.mark.slow
def test_streamed_decode_peak_memory_60s_vs_4s():
    """60 s vs 4 s at 16 fps (241 vs 17 latent frames)."""
    _check_flat(17, 241)


def test_config_round_trip_and_errors():
    cfg = WanVAEConfig(tiny_vae_config())
    assert WanVAEConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(ValueError):
        WanVAEConfig.from_dict({"arch": "lingen"})
    with pytest.raises(ValueError, match="z_dim"):
        WanVAE({**tiny_vae_config(), "latents_mean": [0.0]})
    _, vae = tiny_vae()
    with pytest.raises(ValueError, match="latents"):
        next(vae.iter_decode(torch.zeros(1, Z + 1, 2, 2, 2)))
    with pytest.raises(ValueError, match="chunk_frames"):
        next(vae.iter_decode(torch.zeros(1, Z, 2, 2, 2), chunk_frames=0))
