"""recipes/lingen-tiny/proto_contrast_weight.py and probe_latent_contrast.py (session 38, issue 14): the object's loss
weighted by how faint it is in the latents. The contrast is checked against a plain per-voxel loop in float64 on
random latents; the patched loss against the library's weighted loss with the map written out by hand; strong objects
must keep the plain loss; one tiny training run must go through the patch with the world's object voxels."""
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.generation import flow
from lingen_model.shapes import clips, world
from support.recipes import load_recipe
from test_train import DATA, TINY_DENOISER, TINY_VAE, write_cfg

runner = CliRunner()


@pytest.fixture
def proto(monkeypatch):
    mod = load_recipe("proto_contrast_weight")
    monkeypatch.setattr(flow, "flow_matching_loss", flow.flow_matching_loss)  # restored after the test
    monkeypatch.setattr(world, "SPEED_RANGE", world.SPEED_RANGE)  # proto_circles' patches
    monkeypatch.setattr(clips, "sample_scene", clips.sample_scene)
    return mod


def _reference_contrast(z, m):
    """Per clip: the RMS of z minus the background's per-channel median over the object voxels, voxel by voxel."""
    out = []
    for b in range(z.shape[0]):
        zb, mb = z[b].numpy(), m[b, 0].numpy()
        bg = np.array([sorted(row)[(len(row) - 1) // 2] for row in zb[:, ~mb]])  # torch's median: the lower middle
        sq = [float(((zb[:, i, j, k] - bg) ** 2).mean()) for i, j, k in zip(*np.nonzero(mb))]
        out.append(np.sqrt(np.mean(sq)) if sq else np.inf)
    return out


def test_the_contrast_is_the_objects_rms_distance_from_the_background_median(proto):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, 2, 5, 6, generator=g, dtype=torch.float64)
    m = torch.rand(3, 1, 2, 5, 6, generator=g) < 0.3
    m[2] = False  # no object: weight 1
    z[1][:, m[1, 0]] += 3.0  # a strong object in clip 1
    c = proto.object_contrast(z, m)
    ref = _reference_contrast(z, m)
    assert c[:2].tolist() == pytest.approx(ref[:2], rel=1e-6) and c[2] == float("inf")
    assert c[1] > 2.5 > c[0]
    torch.testing.assert_close(proto.clip_weights(torch.tensor([0.25, 1.0, 2.0, 4.0, float("inf")]), 2.0, 16.0),
                               torch.tensor([16.0, 4.0, 1.0, 1.0, 1.0]))


def _toy(z, t, c, m):
    return z * 0.5 + t.reshape(-1, 1, 1, 1, 1)


def test_the_patched_loss_weighs_faint_objects_and_leaves_strong_ones_plain(proto):
    original = flow.flow_matching_loss
    proto.install(c_ref=2.0, k_max=16.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 3, 6, 6, generator=g)
    objects = torch.zeros(2, 1, 3, 6, 6, dtype=torch.bool)
    objects[:, :, :, 2:4, 2:4] = True
    x[0][:, objects[0, 0]] += 0.5  # faint object: weight (2 / c)² > 1
    x[1][:, objects[1, 0]] += 8.0  # strong: weight 1
    ctx, eps, t = torch.randn(2, 3, 4, generator=g), torch.randn(x.shape, generator=g), torch.rand(2, generator=g)
    given = 1.0 + 4.0 * objects.float()  # object_weight's map (value 4: not used, only where it is above 1)
    k = proto.clip_weights(proto.object_contrast(x, objects), 2.0, 16.0)
    assert 1.0 < float(k[0]) < 16.0 and float(k[1]) == 1.0
    expected = torch.where(objects, k.view(-1, 1, 1, 1, 1), torch.ones(()))
    got = flow.flow_matching_loss(_toy, x, ctx, None, t=t, noise=eps, weight_map=given)
    torch.testing.assert_close(got, original(_toy, x, ctx, None, t=t, noise=eps, weight_map=expected))
    # strong objects only: the plain loss; no map: the library's loss untouched
    plain = original(_toy, x[1:], ctx[1:], None, t=t[1:], noise=eps[1:])
    torch.testing.assert_close(flow.flow_matching_loss(_toy, x[1:], ctx[1:], None, t=t[1:], noise=eps[1:],
                                                       weight_map=given[1:]), plain)
    assert flow.flow_matching_loss(_toy, x[1:], ctx[1:], None, t=t[1:], noise=eps[1:]).item() == plain.item()
    with pytest.raises(ValueError, match="C_REF"):
        proto.install(c_ref=0.0)


def test_one_training_run_weighs_the_worlds_object_voxels(proto, tmp_path, monkeypatch):
    vae_cfg = write_cfg(tmp_path / "vae.yaml", stage="vae", run_dir=str(tmp_path / "vae"), steps=1, batch_size=1,
                        data=DATA, vae=TINY_VAE)
    assert runner.invoke(app, ["train", str(vae_cfg), "-q"]).exit_code == 0
    seen = []
    weights = proto.clip_weights
    monkeypatch.setattr(proto, "clip_weights", lambda c, *a: seen.append(c.clone()) or weights(c, *a))
    proto.install(c_ref=50.0, k_max=8.0)  # a reference far above the tiny VAE's contrasts: every object lifted
    cfg = write_cfg(tmp_path / "den.yaml", stage="denoiser", run_dir=str(tmp_path / "den"),
                    vae_checkpoint=str(tmp_path / "vae"), steps=2, warmup_steps=0, batch_size=2, log_every=1,
                    object_weight=1.0, data={**DATA, "still_prob": 0.0, "entry_prob": 0.0}, denoiser=TINY_DENOISER)
    r = runner.invoke(app, ["train", str(cfg), "-q"])
    assert r.exit_code == 0, r.output
    assert len(seen) == 2 and all(c.shape == (2,) and bool(torch.isfinite(c).all()) and bool((c > 0).all())
                                  for c in seen)


def test_the_probe_reads_world_clips_and_ranks(tmp_path):
    probe = load_recipe("probe_latent_contrast")
    assert probe.spearman([1, 2, 3, 4], [10, 20, 25, 40]) == pytest.approx(1.0)
    assert probe.spearman([1, 2, 3], [3, 2, 2]) == pytest.approx(-0.866, abs=1e-3)
    import lingen_model
    from lingen_model.training.trainer import load_vae

    vae = load_vae(Path(lingen_model.__file__).parent / "weights" / "lingen-tiny")  # the shipped VAE
    out = probe.scene_contrast(vae, clips=4, batch=2)
    assert sum(map(len, out.values())) == 4
    assert all(b in world.BACKGROUNDS and c in world.COLORS and all(v > 0 for v in vs) for (b, c), vs in out.items())
