"""recipes/lingen-tiny/proto_lab_vae.py, init_new_vae.py and probe_latent_mix.py (session 39, issue 14): a VAE whose
first latent channels follow CIELAB colour, a denoiser carried over to it, and the best linear mix of the old channels. CIELAB is checked against published sRGB → L*a*b* values;
the latent-grid targets against a per-voxel loop in float64; the patched loss against the library's loss plus the
anchor written out, with one encode per step; the folded denoiser against the original on fresh random inputs; the
latent-map fit against a known map; one tiny VAE training run goes through the patch; the mix probe's contrast against
object_contrast, and its fit must lift a scene hidden in a quiet direction at equal signal power."""
import pytest
import torch
from typer.testing import CliRunner

import lingen_model.models.vae as vae_module
from lingen_cli.app import app
from lingen_model.models.config import get_config
from lingen_model.models.denoiser import Denoiser
from lingen_model.models.vae import CausalVideoVAE, VAEConfig
from support.recipes import load_recipe
from test_train import DATA, TINY_DENOISER, TINY_VAE, write_cfg

runner = CliRunner()


@pytest.fixture
def proto(monkeypatch):
    mod = load_recipe("proto_lab_vae")
    monkeypatch.setattr(vae_module, "vae_loss", vae_module.vae_loss)  # restored after the test
    return mod


@pytest.mark.parametrize("rgb, lab", [((255, 255, 255), (100.0, 0.0, 0.0)), ((0, 0, 0), (0.0, 0.0, 0.0)),
                                      ((255, 0, 0), (53.24, 80.09, 67.20)), ((0, 255, 0), (87.73, -86.18, 83.18)),
                                      ((0, 0, 255), (32.30, 79.19, -107.86)), ((128, 128, 128), (53.59, 0.0, 0.0))])
def test_cielab_of_srgb_matches_the_published_values(proto, rgb, lab):
    video = torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1, 1) / 127.5 - 1
    assert proto.srgb_to_lab(video).flatten().tolist() == pytest.approx(lab, abs=0.02)
    with pytest.raises(ValueError, match="B×3"):
        proto.srgb_to_lab(torch.zeros(1, 4, 2))


def test_the_targets_average_each_latent_voxels_pixels(proto):
    g = torch.Generator().manual_seed(3)
    video = torch.rand(2, 3, 9, 16, 8, generator=g, dtype=torch.float64) * 2 - 1
    got = proto.lab_targets(video, 4, 4, scale=25.0)
    assert got.shape == (2, 3, 3, 4, 2)
    lab = proto.srgb_to_lab(video)
    groups = [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    for b in range(2):
        for k, frames in enumerate(groups):
            for i in range(4):
                for j in range(2):
                    px = lab[b][:, frames, 4 * i:4 * i + 4, 4 * j:4 * j + 4].reshape(3, -1).mean(1)
                    want = (px - torch.tensor([50.0, 0.0, 0.0], dtype=torch.float64)) / 25.0
                    torch.testing.assert_close(got[b, :, k, i, j].double(), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="latent grid"):
        proto.lab_targets(video[:, :, :8], 4, 4)


def test_the_patched_loss_adds_the_anchor_to_one_encode(proto):
    original = vae_module.vae_loss
    proto.install(weight=0.5, scale=40.0, free_weight=0.3)
    vae = CausalVideoVAE(VAEConfig(**TINY_VAE))
    video = torch.rand(2, 3, 5, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    calls = []
    encode = vae.encode_distribution
    counting = lambda *a, **k: calls.append(1) or encode(*a, **k)  # noqa: E731
    vae.encode_distribution = counting
    loss, stats = vae_module.vae_loss(vae, video, 1e-3, generator=torch.Generator().manual_seed(5))
    assert len(calls) == 1 and vae.encode_distribution is counting  # one encode; the instance's own is put back
    del vae.encode_distribution
    plain, plain_stats = original(vae, video, 1e-3, generator=torch.Generator().manual_seed(5))
    mean, _ = vae.encode_distribution(video)
    target = proto.lab_targets(video, vae.spatial_factor, vae.temporal_factor, 40.0)
    anchor = (mean[:, :3] - target).square().mean()
    free = mean[:, 3:].square().mean()
    torch.testing.assert_close(loss, plain + 0.5 * anchor + 0.3 * free)
    assert stats["lab"] == pytest.approx(float(anchor.detach()), rel=1e-5)
    assert stats["free"] == pytest.approx(float(free.detach()), rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in vae.encoder.parameters())
    with pytest.raises(ValueError, match="LAB_WEIGHT"):
        proto.install(weight=0.0)
    with pytest.raises(ValueError, match="FREE_WEIGHT"):
        proto.install(free_weight=-1.0)


def test_one_tiny_vae_run_goes_through_the_patch(proto, tmp_path, monkeypatch):
    seen = []
    anchor = proto.lab_anchor
    monkeypatch.setattr(proto, "lab_anchor", lambda *a, **k: seen.append(1) or anchor(*a, **k))
    proto.install()
    cfg = write_cfg(tmp_path / "vae.yaml", stage="vae", run_dir=str(tmp_path / "vae"), steps=2, batch_size=1,
                    log_every=1, data=DATA, vae=TINY_VAE)
    r = runner.invoke(app, ["train", str(cfg), "-q"])
    assert r.exit_code == 0, r.output
    assert len(seen) == 2 and (tmp_path / "vae" / "vae_ema.safetensors").is_file()


def test_the_folded_denoiser_reads_and_writes_the_new_latents(tmp_path):
    init = load_recipe("init_new_vae")
    spec = TINY_DENOISER
    cfg = get_config(spec["size"], spec["mixer"], **{**spec["overrides"], "in_channels": 4, "text_dim": 8})
    torch.manual_seed(6)
    model = Denoiser(cfg).eval()
    for p in model.parameters():  # adaLN-Zero starts at zero: give every layer random weights
        torch.nn.init.normal_(p, std=0.2)
    a = torch.randn(4, 4, dtype=torch.float64) + 3 * torch.eye(4, dtype=torch.float64)
    folded = Denoiser(cfg).eval()
    folded.load_state_dict(init.fold_latent_map(model.state_dict(), a, cfg.patch_size))
    x, t = torch.randn(2, 4, 3, 6, 4), torch.rand(2)
    ctx, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        want = torch.einsum("ij,bj...->bi...", a.float(), model(x, t, ctx, mask))
        got = folded(torch.einsum("ij,bj...->bi...", a.float(), x).contiguous(), t, ctx, mask)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


class _Mapped:
    """A VAE whose latents are a fixed linear map of another's."""

    def __init__(self, vae, a):
        self.vae, self.a = vae, a

    def encode(self, video):
        return torch.einsum("ij,bj...->bi...", self.a, self.vae.encode(video))


def test_the_latent_map_fit_recovers_a_known_map():
    init = load_recipe("init_new_vae")
    torch.manual_seed(7)
    vae = CausalVideoVAE(VAEConfig(**TINY_VAE)).eval()
    a = torch.randn(4, 4) + 2 * torch.eye(4)
    fit, r2 = init.fit_latent_map(vae, _Mapped(vae, a), clips=2, batch=2)
    torch.testing.assert_close(fit.float(), a, rtol=1e-3, atol=1e-3)
    assert r2 == pytest.approx(1.0, abs=1e-6)


def test_the_mix_probe_lifts_a_scene_hidden_in_a_quiet_direction():
    probe = load_recipe("probe_latent_mix")
    weak = load_recipe("proto_contrast_weight")
    g = torch.Generator().manual_seed(8)
    # the probe's contrast with the channels as they are is object_contrast's, on random latents
    z = torch.randn(2, 3, 2, 5, 6, generator=g, dtype=torch.float64)
    m = torch.rand(2, 1, 2, 5, 6, generator=g) < 0.3
    moments = []
    for b in range(2):
        d = z[b][:, m[b, 0]] - z[b][:, ~m[b, 0]].median(dim=1).values[:, None]
        moments.append(d @ d.T / d.shape[1])
    med = probe.scene_medians(torch.eye(3, dtype=torch.float64), torch.stack(moments), [("a", "x"), ("b", "y")])
    assert [med[("a", "x")], med[("b", "y")]] == pytest.approx(weak.object_contrast(z, m).tolist(), rel=1e-6)  # float32 there
    # scene "faint" differs from its background only along channel 2, where the signal is quiet
    e_loud, e_faint = torch.diag(torch.tensor([4.0, 0.0, 0.0])), torch.diag(torch.tensor([0.0, 0.0, 0.04]))
    moments = torch.stack([e_loud, e_loud, e_faint, e_faint]).double()
    keys = [("gray", "white")] * 2 + [("gray", "green")] * 2
    s = torch.diag(torch.tensor([4.0, 1.0, 0.1])).double()
    a = probe.fit_mix(moments, keys, s, max_cond=5.0, iters=1500)
    before = probe.scene_medians(torch.eye(3, dtype=torch.float64), moments, keys)
    after = probe.scene_medians(a, moments, keys)
    sv = torch.linalg.svdvals(a)
    assert after[("gray", "green")] > 2 * before[("gray", "green")]
    assert float(torch.trace(a @ s @ a.T)) == pytest.approx(float(torch.trace(s)), rel=1e-6)
    assert float(sv.max() / sv.min()) < 5.5
    with pytest.raises(ValueError, match="max_cond"):
        probe.fit_mix(moments, keys, s, max_cond=0.5)
