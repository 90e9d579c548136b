"""`lingen preprocess`: PyAV window decoding against an independent decoder (imageio-ffmpeg), shards +
manifest from a folder of mp4s made here (with a corrupt file), JSONL captions, one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

pytest.importorskip("av")

from lingen_cli.app import app  # noqa: E402
from lingen_model.io.video import read_mp4, write_mp4  # noqa: E402
from lingen_model.training.preprocess import captioned_videos, decode_window, fit_frames  # noqa: E402
from lingen_model.shapes.clips import make_clip  # noqa: E402

from ckpt_utils import make_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """40 frames at 16 fps (2.5 s) of the shapes world, world seed 0."""
    path = tmp_path_factory.mktemp("clip") / "a.mp4"
    frames, _, _ = make_clip(0, 40, 48, 64, 8)
    write_mp4(frames, path, 16)
    return path


@pytest.mark.parametrize("start, expect", [(0.0, [0, 2, 4, 6, 8]), (1.0, [16, 18, 20, 22, 24]),
                                           (2.0, [32, 34, 36, 38, 32])])  # the last one loops a short tail
def test_decode_window_resamples_and_seeks_like_a_full_decode(clip, start, expect):
    """8 fps windows of a 16 fps clip are every second frame from the start; the same pixels as
    decoding the whole file with the ffmpeg binary (both are FFmpeg's H.264 decoder)."""
    ref, fps = read_mp4(clip)
    assert fps == 16 and len(ref) == 40
    window = decode_window(clip, 5, 8.0, start)
    assert window.shape == (5, 48, 64, 3) and window.dtype == np.uint8
    for k, i in enumerate(expect):
        assert np.array_equal(window[k], ref[i]), (k, i)


def test_decode_window_errors_are_value_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(ValueError, match="cannot decode"):
        decode_window(bad, 5, 8.0)
    with pytest.raises(ValueError, match="cannot decode"):
        decode_window(tmp_path / "missing.mp4", 5, 8.0)


def test_fit_frames_covers_then_centre_crops():
    video = np.zeros((1, 40, 80, 3), np.uint8)
    video[:, :, 12:68] = 255  # a white band of 56 columns in the middle
    x = fit_frames(video, 32, 32)  # 40x80 -> 32x64 (no squashing), keep columns 16..47 = 20..59 of the input
    assert x.shape == (3, 1, 32, 32) and torch.allclose(x, torch.ones_like(x))
    video[:, :, 12:68] = 0
    video[:, :, :12] = video[:, :, 68:] = 255  # white only outside the crop: nothing of it survives
    assert torch.allclose(fit_frames(video, 32, 32), -torch.ones(3, 1, 32, 32))


def test_preprocess_writes_shards_and_skips_a_corrupt_clip(tmp_path):
    from lingen_model.models.text_encoder import build_text_encoder
    from lingen_model.training.trainer import load_vae

    videos = tmp_path / "videos"
    videos.mkdir()
    captions = []
    for i in range(3):
        frames, caption, _ = make_clip(i, 12, 48, 64, 8)
        write_mp4(frames, videos / f"c{i}.mp4", 8)
        (videos / f"c{i}.txt").write_text(caption)
        captions.append(caption)
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 20)
    (videos / "broken.txt").write_text("a red circle")
    (videos / "uncaptioned.mp4").write_bytes(b"")  # no .txt: not listed
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["preprocess", str(videos), str(out), "--vae", str(ckpt), "--frames", "5",
                                 "--height", "32", "--width", "32", "--fps", "8", "--shard-size", "2"])
    assert r.exit_code == 0, r.output
    man = json.loads((out / "manifest.json").read_text())
    assert [s["source"] for s in man["samples"]] == ["c0.mp4", "c1.mp4", "c2.mp4"]
    assert [s["caption"] for s in man["samples"]] == captions
    assert [s["source"] for s in man["skipped"]] == ["broken.mp4"] and "3 clips" in r.output and "1 skipped" in r.output
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    # each sample: the VAE latents of its first 5 frames and the text encoder's tokens of its caption
    vae, enc = load_vae(ckpt), build_text_encoder({"backend": "minilm"})
    for i, s in enumerate(man["samples"]):
        shard = load_file(str(out / s["shard"]))
        ref_frames, _ = read_mp4(videos / s["source"])  # the independent decoder
        want = vae.encode(fit_frames(ref_frames[:5], 32, 32)[None])[0]
        torch.testing.assert_close(shard[f"{s['key']}.latents"], want)
        ctx, mask = enc.encode([captions[i]])
        torch.testing.assert_close(shard[f"{s['key']}.context"], ctx[0])
        assert torch.equal(shard[f"{s['key']}.mask"].bool(), mask[0])
        assert s["latent_shape"] == [4, 2, 4, 4]


def test_jsonl_manifest_and_bad_input(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"video": "sub/x.mp4", "caption": " a blue square "}) + "\n\n"
        + json.dumps({"video": "y.mp4", "caption": "a red circle"}) + "\n")
    pairs = captioned_videos(tmp_path, tmp_path / "manifest.jsonl")
    assert pairs == [(tmp_path / "sub" / "x.mp4", "a blue square"), (tmp_path / "y.mp4", "a red circle")]
    (tmp_path / "bad.jsonl").write_text('{"video": "x.mp4"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        captioned_videos(tmp_path, tmp_path / "bad.jsonl")
    r = CliRunner().invoke(app, ["preprocess", str(tmp_path / "missing"), str(tmp_path / "o")])
    assert r.exit_code == 2 and "video folder not found" in r.output and "Traceback" not in r.output


def test_epoch_batches_bucket_by_shape_and_cover_each_bucket():
    from lingen_model.training.shard_data import epoch_batches

    samples = [{"latent_shape": [4, 2, 4, 4]}] * 7 + [{"latent_shape": [4, 5, 4, 4]}] * 4
    e0 = epoch_batches(samples, 2, seed=1, epoch=0)
    assert len(e0) == 3 + 2 and all(len(b) == 2 for b in e0)
    assert all(len({tuple(samples[i]["latent_shape"]) for i in b}) == 1 for b in e0)  # one shape per batch
    assert len({i for b in e0 for i in b}) == 10  # 6 of the 7 short clips, all 4 long ones, no repeats
    assert e0 == epoch_batches(samples, 2, seed=1, epoch=0) != epoch_batches(samples, 2, seed=1, epoch=1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 captioned 32×32 clips preprocessed (5 frames each) with a tiny random checkpoint's VAE."""
    from lingen_model.training.preprocess import preprocess
    from lingen_model.models.text_encoder import build_text_encoder
    from lingen_model.training.trainer import load_vae

    d = tmp_path_factory.mktemp("shards")
    videos = d / "videos"
    videos.mkdir()
    for i in range(4):
        frames, caption, _ = make_clip(10 + i, 12, 32, 32, 8)
        write_mp4(frames, videos / f"c{i}.mp4", 8)
        (videos / f"c{i}.txt").write_text(caption)
    ckpt = make_tiny_checkpoint(d / "ckpt")
    preprocess(videos, d / "shards", load_vae(ckpt), build_text_encoder({"backend": "minilm"}),
               {"backend": "minilm"}, frames=5, height=32, width=32, fps=8)
    return d / "shards", ckpt


def test_shard_batches_split_each_global_batch_across_ranks(shards):
    from lingen_model.training.shard_data import ShardBatches

    one = ShardBatches(shards[0], 2, seed=7)
    ranks = [ShardBatches(shards[0], 1, seed=7, rank=r, world=2) for r in range(2)]
    for _ in range(3):  # across the epoch boundary (2 global batches an epoch)
        lat, ctx, mask, caps = next(one)
        parts = [next(s) for s in ranks]
        assert torch.equal(lat, torch.cat([p[0] for p in parts])) and caps == parts[0][3] + parts[1][3]
        for k in range(2):  # the text tokens of each row, up to padding
            n = int(mask[k].sum())
            assert torch.equal(ctx[k, :n], parts[k][1][0, :n]) and int(parts[k][2].sum()) == n
    with pytest.raises(ValueError, match="no latent shape has 8 samples"):
        ShardBatches(shards[0], 4, seed=7, rank=0, world=2)


def test_training_from_shards_resumes_mid_epoch_at_the_same_sample(tmp_path, shards):
    """4 preprocessed clips, global batch 2: 2 batches an epoch. 3 steps straight equal 1 step + resume
    (mid-epoch) + 2 steps, across the epoch boundary, with a DataLoader worker in the resumed run."""
    import yaml

    from lingen_model.training.config import load_train_config
    from lingen_model.training.trainer import Trainer

    shard_dir, ckpt = shards
    den = {"size": "tiny", "mixer": "mate", "overrides": {"width": 32, "depth": 2, "num_heads": 2, "headdim": 16,
                                                          "d_state": 8, "ffn_dim": 64, "chunk_size": 16,
                                                          "window": [2, 2, 2]}}

    def run(name, steps, workers=0):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"stage": "denoiser", "run_dir": str(tmp_path / name), "vae_checkpoint": str(ckpt),
                                       "steps": steps, "batch_size": 2, "log_every": 1, "caption_dropout": 0.5,
                                       "denoiser": den, "data": {"source": "shards", "path": str(shard_dir),
                                                                 "workers": workers}}))
        t = Trainer(load_train_config(cfg))
        t.train()
        return json.loads((tmp_path / name / "train_state.json").read_text())

    straight = run("straight", 3)
    assert straight["data"] == {"seed": 0, "epoch": 1, "batch": 1}
    assert run("resumed", 1)["data"] == {"seed": 0, "epoch": 0, "batch": 1}
    resumed = run("resumed", 3, workers=1)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert all(h["frames"] == 5 for h in straight["history"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stage": "vae", "run_dir": "x", "data": {"source": "shards", "path": "s"}}))
    with pytest.raises(ValueError, match="denoiser stage"):
        load_train_config(bad)
