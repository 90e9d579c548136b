"""recipes/lingen-tiny/proto_aux_lab.py (session 40, issue 14): three CIELAB colour channels beside the VAE's latents,
denoised jointly. The expanded denoiser is checked against the original on fresh random inputs and weights (the same
output on the old channels, 0 on the new); the patched VAE against an unpatched one with the same weights (its own
latents first, then the colour channels; decoding reads its own channels only); the colour channels against the
sibling's float64 latent-grid CIELAB; the statistics against a direct mean and std; the learning-rate multiplier
against a plain AdamW step (new weights k× its update, old ones equal); one tiny denoiser run trains (with the
multiplier), exports and generates through the patch, and its export refuses to load without it; the probe's errors
against ones computed by hand."""
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lingen_model.models.vae as vae_module
import lingen_model.training.trainer as trainer_module
from lingen_cli.app import app
from lingen_model.models.config import get_config
from lingen_model.models.denoiser import Denoiser
from lingen_model.models.vae import CausalVideoVAE, VAEConfig
from support.recipes import load_recipe
from test_train import DATA, TINY_DENOISER, TINY_VAE, write_cfg

runner = CliRunner()


@pytest.fixture
def proto(monkeypatch):
    """The prototype, with the classes it patches restored after the test."""
    cls = vae_module.CausalVideoVAE
    monkeypatch.setattr(cls, "__init__", cls.__init__)
    monkeypatch.setattr(cls, "encode", cls.encode)
    monkeypatch.setattr(cls, "_aux_lab", False, raising=False)
    monkeypatch.setattr(vae_module.VideoDecoder, "forward", vae_module.VideoDecoder.forward)
    monkeypatch.setattr(trainer_module.Trainer, "__init__", trainer_module.Trainer.__init__)
    return load_recipe("proto_aux_lab")


def _tiny_denoiser(channels):
    spec = TINY_DENOISER
    return get_config(spec["size"], spec["mixer"], **{**spec["overrides"], "in_channels": channels, "text_dim": 8})


def test_the_expanded_denoiser_is_the_old_one_on_the_old_channels(proto):
    old_cfg = _tiny_denoiser(4)
    torch.manual_seed(11)
    old = Denoiser(old_cfg).eval()
    for p in old.parameters():  # adaLN-Zero starts at zero: give every layer random weights
        torch.nn.init.normal_(p, std=0.2)
    new = Denoiser(_tiny_denoiser(7)).eval()
    new.load_state_dict(proto.expand_weights(old.state_dict(), 4, old_cfg.patch_size))
    x, t = torch.randn(2, 7, 3, 6, 4), torch.rand(2)
    ctx, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        want = old(x[:, :4].contiguous(), t, ctx, mask)
        got = new(x, t, ctx, mask)
    torch.testing.assert_close(got[:, :4], want, rtol=1e-4, atol=1e-4)
    assert float(got[:, 4:].abs().max()) == 0.0
    with pytest.raises(ValueError, match="latent entries per patch"):
        proto.expand_weights(old.state_dict(), 5, old_cfg.patch_size)


def test_the_patched_vae_appends_the_colour_channels_and_decodes_its_own(proto):
    torch.manual_seed(12)
    plain = CausalVideoVAE(VAEConfig(**TINY_VAE)).eval()
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    z_plain = plain.encode(video)
    z_extra = torch.randn(2, 3, *z_plain.shape[2:])
    y_plain = plain.decode(z_plain)
    u8_plain = plain.decode_uint8(z_plain)
    proto.install()
    proto.install()  # idempotent: still three channels more, not six
    patched = CausalVideoVAE(VAEConfig(**TINY_VAE)).eval()
    patched.load_state_dict(plain.state_dict())
    assert (patched.base_channels, patched.latent_channels) == (4, 7)
    z = patched.encode(video)
    assert z.shape == (2, 7, *z_plain.shape[2:])
    torch.testing.assert_close(z[:, :4], z_plain)
    torch.testing.assert_close(z[:, 4:], proto.colour_channels(video, 8, 4))
    mixed = torch.cat([z_plain, z_extra], dim=1)  # whatever the sampler drew in the colour channels
    torch.testing.assert_close(patched.decode(mixed), y_plain)
    assert torch.equal(patched.decode_uint8(mixed), u8_plain)
    with pytest.raises(ValueError, match="B×7×"):
        patched.decode(z_plain)


def test_the_new_weights_take_mult_times_the_optimizers_step_and_the_old_ones_its_step(proto):
    torch.manual_seed(14)
    model = Denoiser(_tiny_denoiser(7))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    twin = Denoiser(_tiny_denoiser(7))
    twin.load_state_dict(model.state_dict())
    x, t = torch.randn(2, 7, 3, 6, 4), torch.rand(2)
    ctx, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    plain = torch.optim.AdamW(model.parameters(), lr=1e-3)
    boosted = torch.optim.AdamW(twin.parameters(), lr=1e-3)
    proto.boost_new_weights(boosted, proto.new_slices(twin), 5.0)
    for m, opt in ((model, plain), (twin, boosted)):
        m(x, t, ctx, mask).square().mean().backward()
        opt.step()
    got, want = twin.state_dict(), model.state_dict()
    k = 3 * model.config.patch_size ** 2
    new = {"patch_embed.weight": (slice(None), slice(-k, None)), "final_linear.weight": (slice(-k, None),),
           "final_linear.bias": (slice(-k, None),)}
    for name in want:
        if name in new:
            idx = new[name]
            step = want[name][idx] - start[name][idx]
            assert float(step.abs().max()) > 0
            torch.testing.assert_close(got[name][idx] - start[name][idx], 5.0 * step, rtol=1e-4, atol=1e-7)
            rest = torch.ones_like(want[name], dtype=torch.bool)
            rest[idx] = False
            torch.testing.assert_close(got[name][rest], want[name][rest])
        else:
            torch.testing.assert_close(got[name], want[name])
    with pytest.raises(ValueError, match="AUX_LR_MULT"):
        proto.boost_new_weights(boosted, [], 0.0)
    with pytest.raises(ValueError, match="AUX_LR_MULT"):
        proto.install_lr_mult(-1.0)


def test_the_colour_channels_are_the_normalised_latent_grid_cielab(proto):
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(13), dtype=torch.float64) * 2 - 1
    lab = load_recipe("proto_lab_vae").lab_targets(video, 8, 4, scale=1.0).double()  # L* − 50, a*, b*
    mean, std = (1.0, -2.0, 3.0), (2.0, 4.0, 8.0)
    got = proto.colour_channels(video, 8, 4, mean, std)
    want = (lab - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1, 1)) / torch.tensor(
        std, dtype=torch.float64).view(1, 3, 1, 1, 1)
    assert got.dtype == torch.float32 and got.shape == (1, 3, 2, 2, 2)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-5)


def test_the_statistics_are_the_mean_and_std_over_every_voxel(proto):
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import _to_tensor as frames_to_tensor

    mean, std = proto.measure_stats(clips=3, seed=500, frames=5, batch=2)  # two batches: the sums carry over
    video = torch.stack([frames_to_tensor(make_clip(500 + i, 5, 128, 128, 8.0, max_objects=2)[0]) for i in range(3)])
    lab = load_recipe("proto_lab_vae").lab_targets(video, 8, 4, scale=1.0).double().transpose(0, 1).reshape(3, -1)
    assert mean == pytest.approx(lab.mean(1).tolist(), abs=1e-4)
    assert std == pytest.approx(lab.std(1, unbiased=False).tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="clips"):
        proto.measure_stats(clips=0)


def test_a_tiny_run_trains_exports_and_generates_through_the_patch(proto, tmp_path):
    vae_cfg = write_cfg(tmp_path / "vae.yaml", stage="vae", run_dir=str(tmp_path / "vae"), steps=1, batch_size=1,
                        data=DATA, vae=TINY_VAE)
    assert runner.invoke(app, ["train", str(vae_cfg), "-q"]).exit_code == 0
    proto.install()
    boosted = []
    boost = proto.boost_new_weights
    proto.boost_new_weights = lambda opt, slices, mult: boosted.append((len(slices), mult)) or boost(opt, slices, mult)
    proto.install_lr_mult(4.0)
    export = tmp_path / "export"
    cfg = write_cfg(tmp_path / "den.yaml", stage="denoiser", run_dir=str(tmp_path / "den"),
                    vae_checkpoint=str(tmp_path / "vae"), steps=2, batch_size=2, log_every=1, data=DATA,
                    denoiser=TINY_DENOISER, export={"dir": str(export), "name": "t", "sampling": {"steps": 2}})
    r = runner.invoke(app, ["train", str(cfg), "-q"])
    assert r.exit_code == 0, r.output
    assert boosted == [(3, 4.0)]
    from lingen_model.generation.pipeline import LinGenPipeline

    pipe = LinGenPipeline.from_pretrained(export)
    assert pipe.denoiser.config.in_channels == 7 and pipe.vae.latent_channels == 7
    frames = pipe("a red circle moving left", num_frames=5, seed=0)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    vae_module.CausalVideoVAE.__init__ = vae_module.CausalVideoVAE.__init__.__wrapped__  # without the patch
    r = runner.invoke(app, ["generate", "a red circle", "--model", str(export), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "in_channels 7 != VAE latent_channels 4" in r.output


class _Text:
    """A text encoder giving each caption fixed random tokens."""

    def encode(self, captions):
        g = torch.Generator().manual_seed(len(captions))
        return torch.randn(len(captions), 5, 8, generator=g), torch.ones(len(captions), 5, dtype=torch.bool)


def test_the_probe_errors_are_the_flow_matching_errors_by_channel_group(proto):
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import _to_tensor as frames_to_tensor

    proto.install()
    torch.manual_seed(15)
    vae = CausalVideoVAE(VAEConfig(**TINY_VAE)).eval()
    den = Denoiser(_tiny_denoiser(7)).eval()
    for p in den.parameters():
        torch.nn.init.normal_(p, std=0.2)
    rows = proto.probe_use(den, vae, _Text(), clips=2, times=(0.5, 0.9), seed=40, frames=5)
    x = vae.encode(torch.stack([frames_to_tensor(make_clip(40 + i, 5, 128, 128, 8.0, max_objects=1)[0])
                                for i in range(2)]))
    ctx, mask = _Text().encode(["a", "b"])
    g = torch.Generator().manual_seed(40)
    for row, t in zip(rows, (0.5, 0.9)):
        eps = torch.randn(x.shape, generator=g)
        z, target = (1 - t) * x + t * eps, eps - x
        with torch.no_grad():
            v = den(z, torch.full((2,), t), ctx, mask)
            swapped = z.clone()
            swapped[0, 4:], swapped[1, 4:] = z[1, 4:], z[0, 4:]
            vs = den(swapped, torch.full((2,), t), ctx, mask)
        assert row["t"] == t
        assert row["base"] == pytest.approx(float((v[:, :4] - target[:, :4]).square().mean()), rel=1e-5)
        assert row["base_swapped"] == pytest.approx(float((vs[:, :4] - target[:, :4]).square().mean()), rel=1e-5)
        assert row["base_swapped"] != pytest.approx(row["base"], rel=1e-3)  # the colour inputs count here
        assert row["colour"] == pytest.approx(float((v[:, 4:] - target[:, 4:]).square().mean()), rel=1e-5)
        assert row["colour_zero"] == pytest.approx(float(target[:, 4:].square().mean()), rel=1e-5)
