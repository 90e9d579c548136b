"""Object-weighted flow matching (``object_weight``, training/object_weight.py): the world's object masks,
their latent-voxel pooling, the weighted loss, the data stream's masks and the trainer's use of them,
each against a plain reference."""
import json

import numpy as np
import pytest
import torch

from lingen_model.generation.flow import flow_matching_loss
from lingen_model.shapes.clips import make_clip, object_mask
from lingen_model.shapes.render import render, signed_distance
from lingen_model.shapes.world import ObjectSpec, SceneSpec
from lingen_model.training.data import DataConfig
from lingen_model.training.data_stream import ShardedBatches
from lingen_model.training.object_weight import latent_mask, weight_map
from test_train import DATA, TINY_DENOISER, train, vae_run, write_cfg  # noqa: F401  (fixture)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize("texture", [False, True])
def test_object_mask_is_the_rendered_shape(shape, texture):
    """Pixels well inside the signed-distance outline are object pixels, pixels well outside are not,
    on a flat or a textured background."""
    h = w = 64
    obj = ObjectSpec(shape=shape, color="red", motion="still", size=0.35, x0=0.43, y0=0.56)
    scene = SceneSpec(objects=[obj], background="dark blue", texture=texture, texture_seed=7)
    frames = render(scene, 1, h, w, 8.0)
    mask = object_mask(frames, scene)
    assert mask.shape == (1, h, w) and mask.dtype == bool
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    sd = signed_distance(shape, obj.size * min(h, w), (xs[None, :] - obj.x0 * w).astype(np.float32),
                         (ys[:, None] - obj.y0 * h).astype(np.float32))
    assert mask[0][sd < -1.0].all()
    assert not mask[0][sd > 1.0].any()


def test_object_mask_errors():
    frames, _, scene = make_clip(3, 1, 16, 16, 8.0)
    with pytest.raises(ValueError):
        object_mask(frames.astype(np.float32), scene)
    with pytest.raises(ValueError):
        object_mask(frames, scene, tol=300)


def _latent_mask_ref(m, fs, ft):
    """Plain loops: voxel (k, i, j) takes the max over frame 0 (k = 0) or frames 1 + ft(k−1) … ft·k, and
    pixels fs·i … fs·i + fs − 1 × fs·j … fs·j + fs − 1."""
    b, _, t, h, w = m.shape
    out = torch.zeros(b, 1, 1 + (t - 1) // ft, h // fs, w // fs)
    for k in range(out.shape[2]):
        frames = [0] if k == 0 else list(range(1 + ft * (k - 1), 1 + ft * k))
        for i in range(h // fs):
            for j in range(w // fs):
                out[:, 0, k, i, j] = m[:, 0, frames, fs * i:fs * i + fs, fs * j:fs * j + fs].amax(dim=(1, 2, 3))
    return out


@pytest.mark.parametrize("t", [1, 5, 9])
def test_latent_mask_matches_the_voxel_loop(t):
    g = torch.Generator().manual_seed(t)
    m = (torch.rand(2, 1, t, 16, 24, generator=g) < 0.05).float()
    ours = latent_mask(m, 4, 4)
    assert torch.equal(ours, _latent_mask_ref(m, 4, 4))
    assert torch.equal(weight_map(m, 4, 4, 3.0), 1.0 + 3.0 * ours)


def test_latent_mask_errors():
    with pytest.raises(ValueError):
        latent_mask(torch.zeros(1, 1, 6, 16, 16), 4, 4)  # 6 frames: not 1 + 4k
    with pytest.raises(ValueError):
        latent_mask(torch.zeros(1, 1, 5, 18, 16), 4, 4)
    with pytest.raises(ValueError):
        latent_mask(torch.zeros(1, 2, 5, 16, 16), 4, 4)
    with pytest.raises(ValueError):
        weight_map(torch.zeros(1, 1, 5, 16, 16), 4, 4, -1.0)


def test_weighted_flow_matching_loss_is_the_weighted_mean():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 5, 6, generator=g), torch.randn(2, 3, 4, 5, 6, generator=g)
    ctx, t = torch.randn(2, 7, 8, generator=g), torch.tensor([0.3, 0.8])
    a = torch.randn(3, 3, generator=g)

    def model_fn(z, tt, c, m):
        return torch.einsum("ij,bjthw->bithw", a, z) + tt.view(-1, 1, 1, 1, 1)

    w = torch.rand(2, 1, 4, 5, 6, generator=g)
    ours = flow_matching_loss(model_fn, x0, ctx, None, t=t, noise=noise, weight_map=w)
    z = (1 - t.view(-1, 1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1, 1) * noise
    err = (model_fn(z, t, ctx, None) - (noise - x0)).double().square()
    wb = w.double().expand_as(err)
    ref = float((err * wb).sum() / wb.sum())
    assert float(ours) == pytest.approx(ref, rel=1e-5)
    plain = flow_matching_loss(model_fn, x0, ctx, None, t=t, noise=noise)
    assert float(flow_matching_loss(model_fn, x0, ctx, None, t=t, noise=noise,
                                    weight_map=torch.full((1, 1, 1, 1, 1), 2.5))) == pytest.approx(float(plain), rel=1e-6)
    assert abs(float(ours) - float(plain)) > 1e-4  # random weights change the mean
    for bad in (torch.rand(2, 1, 4, 5), torch.rand(2, 1, 3, 5, 6), -w, torch.zeros_like(w)):
        with pytest.raises(ValueError):
            flow_matching_loss(model_fn, x0, ctx, None, t=t, noise=noise, weight_map=bad)
    with pytest.raises(ValueError):
        flow_matching_loss(model_fn, x0, ctx, None, t=t, noise=noise, weight_map=w, negative=x0,
                           negative_weight=torch.tensor([0.1, 0.1]))


@pytest.mark.parametrize("crop", [None, 24])
def test_sharded_batches_yield_the_object_masks_of_their_clips(crop):
    cfg = DataConfig(**{**DATA, "still_prob": 0.3, "crop": crop})
    plain, masked = ShardedBatches(cfg, 2, seed=4, rank=1, world=2), ShardedBatches(cfg, 2, seed=4, rank=1, world=2,
                                                                                     object_masks=True)
    for _ in range(3):
        (video, caps), (video_m, caps_m, masks) = next(plain), next(masked)
        assert torch.equal(video, video_m) and caps == caps_m
        assert masks.shape == (2, 1, *video.shape[2:]) and masks.dtype == torch.float32
    # the last batch's clips, rebuilt from their world seeds (rank 1: global rows 2, 3 of each batch of 4)
    frames = video.shape[2]
    for row, i in enumerate((2 * 4 + 2, 2 * 4 + 3)):
        clip, _, scene = make_clip(4 * 1_000_000_000 + i, frames, cfg.height, cfg.width, cfg.fps,
                                   max_objects=cfg.max_objects, motions=("still",) if frames == 1 else None)
        ref = torch.from_numpy(object_mask(clip, scene)).float()
        if crop:  # the crop window is the video's: find it by matching the clip
            full = torch.from_numpy(clip).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
            hits = [(y, x) for y in range(cfg.height - crop + 1) for x in range(cfg.width - crop + 1)
                    if torch.equal(full[..., y:y + crop, x:x + crop], video[row])]
            y, x = hits[0]
            ref = ref[..., y:y + crop, x:x + crop]
        assert torch.equal(masks[row, 0], ref)
        assert ref.sum() > 0


def test_object_masks_need_the_shapes_world(tmp_path):
    with pytest.raises(ValueError, match="shapes world"):
        ShardedBatches(DataConfig(source="folder", path=str(tmp_path)), 2, seed=0, object_masks=True)


def test_trainer_weighs_the_loss_towards_the_objects(vae_run, tmp_path):  # noqa: F811
    """Same seeds, data, t and noise: object_weight changes the first step's loss (the weighted mean
    over object and background voxels), and bad combinations are one-line config errors."""
    run, _ = vae_run

    def first_loss(name, **extra):
        cfg = write_cfg(tmp_path / f"{name}.yaml", stage="denoiser", run_dir=str(tmp_path / name),
                        vae_checkpoint=str(run), steps=1, batch_size=2, log_every=1,
                        data={**DATA, "still_prob": 0.0}, denoiser=TINY_DENOISER, caption_dropout=0.0, **extra)
        r = train(cfg)
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / name / "train_state.json").read_text())["history"][0]["loss"]

    plain = first_loss("plain")
    assert first_loss("zero", object_weight=0.0) == pytest.approx(plain, rel=1e-6)
    assert abs(first_loss("heavy", object_weight=50.0) - plain) > 1e-3 * plain
    for name, extra in (("c", {"contrast_weight": 0.1}), ("v", {"stage": "vae"})):
        cfg = write_cfg(tmp_path / f"{name}.yaml", **{"stage": "denoiser", "run_dir": str(tmp_path / name),
                                                     "vae_checkpoint": str(run), "data": DATA, "object_weight": 2.0,
                                                     **extra})
        r = train(cfg)
        assert r.exit_code != 0 and "object_weight" in r.output and "Traceback" not in r.output
