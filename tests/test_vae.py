"""Tests for lingen_model.models.vae: shapes, causality, chunked == whole, conv reference, loss."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lingen_model.geometry import latent_frames, pixel_frames
from lingen_model.models.vae import CausalConv3d, CausalVideoVAE, VAEConfig, vae_loss

TINY = dict(base_channels=8, channel_mult=(1, 2, 2, 2))


@pytest.fixture(autouse=True)
def _one_thread():
    """These clips are tiny: one intra-op thread is several times faster on a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(seed: int = 0, **kw) -> CausalVideoVAE:
    torch.manual_seed(seed)
    return CausalVideoVAE(VAEConfig(**{**TINY, **kw})).eval()


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Replace every parameter by fresh random values (fan-in scaled), including the
    identity-initialised temporal resampling taps and the norms' affine parameters, so
    that every temporal tap really mixes frames."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _video(b, t, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def _smooth_clip(t=5, h=16, w=16):
    """A Gaussian blob moving right over a horizontal colour ramp, values in [-1, 1]."""
    ys = torch.linspace(-1, 1, h).view(h, 1)
    xs = torch.linspace(-1, 1, w).view(1, w)
    frames = []
    for i in range(t):
        blob = torch.exp(-((xs - (-0.5 + 0.25 * i)) ** 2 + ys ** 2) / 0.1)
        frames.append(torch.stack([1.6 * blob - 0.8, 0.5 * xs.expand(h, w), 0.8 * blob - 0.3]))
    return torch.stack(frames, dim=1).unsqueeze(0)


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("b,t,h,w", [(1, 1, 8, 8), (2, 5, 16, 24), (1, 13, 32, 16), (1, 9, 24, 40)])
def test_shapes(b, t, h, w):
    vae = _tiny()
    x = _video(b, t, h, w, 1)
    z = vae.encode(x)
    k = (t - 1) // 4
    assert z.shape == (b, vae.latent_channels, 1 + k, h // 8, w // 8)
    y = vae.decode(z)
    assert y.shape == (b, 3, t, h, w)
    assert y.min() >= -1 and y.max() <= 1
    mean, logvar = vae.encode_distribution(x)
    assert mean.shape == logvar.shape == z.shape


def test_default_config_shapes_and_attributes():
    vae = CausalVideoVAE().eval()
    assert (vae.spatial_factor, vae.temporal_factor, vae.latent_channels) == (8, 4, 8)
    z = vae.encode(_video(1, 9, 32, 48, 2))
    assert z.shape == (1, 8, 3, 4, 6)
    assert vae.decode(z).shape == (1, 3, 9, 32, 48)


def test_latent_channels_configurable():
    vae = _tiny(latent_channels=16)
    assert vae.encode(_video(1, 5, 16, 16, 3)).shape == (1, 16, 2, 2, 2)


def test_frame_helpers():
    for k in range(6):
        assert latent_frames(1 + 4 * k) == 1 + k
        assert pixel_frames(1 + k) == 1 + 4 * k
    assert latent_frames(481) == 121
    for bad in (0, 2, 4, 480, -3):
        with pytest.raises(ValueError, match="1 \\+ 4"):
            latent_frames(bad)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            pixel_frames(bad)


# ------------------------------------------------------------------ bad input
def test_bad_shapes_raise():
    vae = _tiny()
    with pytest.raises(ValueError, match="1 \\+ 4"):
        vae.encode(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 5, 12, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 5, 16, 20))
    with pytest.raises(ValueError, match="B×3×T×H×W"):
        vae.encode(torch.zeros(3, 5, 16, 16))
    with pytest.raises(ValueError, match="B×3×T×H×W"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match="float"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B×8×T'×H'×W'"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))
    with pytest.raises(ValueError, match="chunk_frames"):
        vae.decode(torch.zeros(1, 8, 2, 2, 2), chunk_frames=0)
    with pytest.raises(ValueError, match="chunk_frames"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16), chunk_frames=1.5)


# ------------------------------------------------------------------ the causal conv vs conv3d
@pytest.mark.parametrize("kt,ks,st,ss", [(3, 3, 1, 1), (3, 1, 2, 1), (2, 3, 1, 2), (4, 3, 2, 1), (1, 3, 1, 2)])
def test_causal_conv_matches_conv3d_reference(kt, ks, st, ss):
    """Reference: F.conv3d on the clip front-padded with kt-1 copies of frame 0."""
    torch.manual_seed(kt * 10 + st)
    conv = CausalConv3d(5, 7, (kt, ks), stride_t=st, stride_s=ss)
    b, t, h, w = 2, 1 + 2 * 6, 8, 6
    x = torch.randn(b, 5, t, h, w)
    xp = torch.cat([x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x], dim=2)
    ref = F.conv3d(xp, conv.weight, conv.bias, stride=(st, ss, ss), padding=(0, ks // 2, ks // 2))

    def to_frames(v):
        return v.permute(0, 2, 3, 4, 1).reshape(-1, h, w, 5).permute(0, 3, 1, 2)

    def from_frames(y):
        return y.reshape(b, -1, *y.shape[1:]).transpose(1, 2)

    with torch.no_grad():
        whole = from_frames(conv(to_frames(x), b))
        torch.testing.assert_close(whole, ref, atol=1e-5, rtol=1e-5)
        # streaming in uneven chunks with a cache gives the same frames
        from lingen_model.models.vae import CausalCache
        cache = CausalCache()
        parts, start = [], 0
        for n in (1, 4, 3, 5):
            parts.append(from_frames(conv(to_frames(x[:, :, start:start + n]), b, cache)))
            start += n
        assert start == t
        torch.testing.assert_close(torch.cat(parts, dim=2), ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ causality
def test_encoder_causality():
    vae = _tiny(seed=1)
    _randomize(vae, 11)
    x = _video(1, 17, 16, 16, 4)
    z = vae.encode(x)
    for f in (1, 4, 5, 8, 13, 16):
        x2 = x.clone()
        x2[:, :, f] = _video(1, 1, 16, 16, 100 + f)[:, :, 0]
        z2 = vae.encode(x2)
        first_affected = math.ceil(f / 4)  # latent j covers frames 4j-3..4j
        torch.testing.assert_close(z2[:, :, :first_affected], z[:, :, :first_affected], atol=1e-6, rtol=0)
        assert (z2[:, :, first_affected] - z[:, :, first_affected]).abs().max() > 1e-4


def test_decoder_causality():
    vae = _tiny(seed=2)
    _randomize(vae, 12)
    z = torch.randn(1, 8, 5, 2, 3, generator=torch.Generator().manual_seed(5))
    y = vae.decode_raw(z).detach()
    for j in range(5):
        z2 = z.clone()
        z2[:, :, j] += torch.randn(z2[:, :, j].shape, generator=torch.Generator().manual_seed(50 + j))
        y2 = vae.decode_raw(z2).detach()
        first = 0 if j == 0 else 4 * j - 3  # first video frame decoded from latent j
        torch.testing.assert_close(y2[:, :, :first], y[:, :, :first], atol=1e-6, rtol=0)
        assert (y2[:, :, first] - y[:, :, first]).abs().max() > 1e-4


def test_first_frame_encoded_alone():
    vae = _tiny(seed=3)
    _randomize(vae, 13)
    x = _video(1, 9, 16, 16, 6)
    z_clip = vae.encode(x)
    z_img = vae.encode(x[:, :, :1])
    torch.testing.assert_close(z_clip[:, :, :1], z_img, atol=1e-6, rtol=0)
    y_clip = vae.decode(z_clip)
    torch.testing.assert_close(y_clip[:, :, :1], vae.decode(z_img), atol=1e-6, rtol=0)


# ------------------------------------------------------------------ chunked == whole
@pytest.mark.parametrize("seed", [0, 1])
def test_chunked_equals_whole_encode(seed):
    vae = _tiny(seed=seed)
    _randomize(vae, 20 + seed)
    x = _video(2, 25, 16, 24, 30 + seed)  # 7 latent frames
    whole = vae.encode(x)
    for c in (1, 2, 3, 4, 6, 7, 10):
        torch.testing.assert_close(vae.encode(x, chunk_frames=c), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_chunked_equals_whole_decode(seed):
    vae = _tiny(seed=seed)
    _randomize(vae, 40 + seed)
    z = torch.randn(2, 8, 7, 2, 3, generator=torch.Generator().manual_seed(50 + seed))
    whole = vae.decode(z)
    with torch.no_grad():
        whole_raw = vae.decode_raw(z)
    assert whole_raw.std() > 0.05  # not a degenerate (constant / clamped) output
    for c in (1, 3, 4, 9):
        torch.testing.assert_close(vae.decode(z, chunk_frames=c), whole, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode_raw(z, chunk_frames=2), whole_raw, atol=1e-5, rtol=0)


def test_chunked_equals_whole_default_config():
    vae = CausalVideoVAE().eval()
    _randomize(vae, 7)
    x = _video(1, 13, 16, 16, 8)
    z = vae.encode(x)
    torch.testing.assert_close(vae.encode(x, chunk_frames=2), z, atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.decode(z, chunk_frames=3), vae.decode(z), atol=1e-5, rtol=0)


def test_iter_decode_tiles_decode():
    vae = _tiny(seed=8)
    _randomize(vae, 9)
    z = torch.randn(1, 8, 6, 2, 2, generator=torch.Generator().manual_seed(60))
    whole = vae.decode(z)
    starts, parts = [], []
    for f0, y in vae.iter_decode(z, chunk_frames=4):
        starts.append(f0)
        parts.append(y)
    assert starts == [0, 13]
    assert [p.shape[2] for p in parts] == [13, 8]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, atol=1e-5, rtol=0)


def test_decode_uint8_matches_decode():
    vae = _tiny(seed=9)
    z = torch.randn(2, 8, 4, 2, 3, generator=torch.Generator().manual_seed(61)) * 3
    y = vae.decode(z)
    ref = ((y + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)
    u8 = vae.decode_uint8(z, chunk_frames=3)
    assert u8.dtype == torch.uint8 and u8.shape == (2, 13, 16, 24, 3)
    assert torch.equal(u8, ref)


def test_progress_callback():
    vae = _tiny()
    calls = []
    z = vae.encode(_video(1, 21, 16, 16, 9), chunk_frames=2, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    calls.clear()
    vae.decode(z, chunk_frames=4, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(1, 2), (2, 2)]


# ------------------------------------------------------------------ latent normalisation, sampling
def test_latent_normalisation():
    torch.manual_seed(0)
    base = _tiny(seed=4)
    scaled = CausalVideoVAE(VAEConfig(**{**TINY, "scaling_factor": 0.5, "shift_factor": 0.3})).eval()
    scaled.load_state_dict(base.state_dict())
    x = _video(1, 5, 16, 16, 10)
    mean, _ = base.encode_distribution(x)
    torch.testing.assert_close(scaled.encode(x), (mean.detach() - 0.3) * 0.5, atol=1e-5, rtol=1e-5)
    zn = torch.randn(1, 8, 2, 2, 2)
    torch.testing.assert_close(scaled.decode(zn), base.decode(zn / 0.5 + 0.3), atol=1e-6, rtol=0)


def test_sampling_uses_generator_and_ignores_chunking():
    vae = _tiny(seed=5)
    x = _video(1, 13, 16, 16, 11)
    a = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    b = vae.encode(x, chunk_frames=1, sample=True, generator=torch.Generator().manual_seed(1))
    c = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a - c).abs().max() > 1e-3
    assert (a - vae.encode(x)).abs().max() > 1e-3


# ------------------------------------------------------------------ training
def test_vae_loss_decreases_with_adam():
    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig(**TINY))
    x = _smooth_clip()
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(40):
        loss, stats = vae_loss(vae, x, generator=g)
        first = stats["loss"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    final, stats = vae_loss(vae, x, generator=g)
    assert set(stats) >= {"loss", "l1", "mse", "grad", "kl", "latent_mean", "latent_std"}
    assert math.isfinite(stats["loss"])
    assert stats["loss"] < 0.4 * first, (first, stats["loss"])


def test_vae_loss_components():
    """Each reported term and the total against a float64 loop-free reference written from the
    docstring: L1/MSE means of x̂ − x, G = mean of the two finite-difference L1s, per-element KL,
    x̂ decoding μ + σ·ε with ε drawn from the same generator seed."""
    import numpy as np

    vae = _tiny(seed=6)
    x = _video(1, 5, 16, 16, 13)
    loss, s = vae_loss(vae, x, kl_weight=0.1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean, logvar = vae.encode_distribution(x)
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
        recon = vae.decode_raw(mean + torch.exp(0.5 * logvar) * eps)
    d = recon.double().numpy() - x.double().numpy()
    mu, lv = mean.double().numpy(), logvar.double().numpy()
    ref = {
        "l1": np.abs(d).mean(),
        "mse": (d ** 2).mean(),
        "grad": 0.5 * (np.abs(np.diff(d, axis=-2)).mean() + np.abs(np.diff(d, axis=-1)).mean()),
        "kl": (0.5 * (mu ** 2 + np.exp(lv) - 1.0 - lv)).mean(),
    }
    total = ref["l1"] + ref["mse"] + 0.5 * ref["grad"] + 0.1 * ref["kl"]
    for k, v in ref.items():  # float32 means of ~4k elements vs float64: ~1e-7 relative
        assert s[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
    assert float(loss.detach()) == pytest.approx(total, rel=1e-5)
    assert s["kl"] > 0 and s["mse"] <= 4 and s["l1"] <= 2


# ------------------------------------------------------------------ config
def test_config_round_trip_and_validation():
    cfg = VAEConfig(latent_channels=16, base_channels=24, scaling_factor=0.7, shift_factor=-0.1)
    d = cfg.to_dict()
    assert d["channel_mult"] == list(cfg.channel_mult)
    assert VAEConfig.from_dict(d) == cfg
    import json
    assert VAEConfig.from_dict(json.loads(json.dumps(d))) == cfg
    with pytest.raises(ValueError, match=r"unknown key\(s\): bogus"):
        VAEConfig.from_dict({**d, "bogus": 1})
    d2 = dict(d)
    del d2["latent_channels"]
    with pytest.raises(ValueError, match=r"missing key\(s\): latent_channels"):
        VAEConfig.from_dict(d2)
    with pytest.raises(ValueError, match="spatial_factor"):
        VAEConfig(spatial_factor=16)
    with pytest.raises(ValueError, match="temporal_factor"):
        VAEConfig(temporal_factor=3)
    with pytest.raises(ValueError, match="latent_channels"):
        VAEConfig(latent_channels=0)
