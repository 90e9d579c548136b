"""Checkpoint averaging (`average_checkpoints`) against the mean computed by hand."""
import json
import shutil

import pytest
import torch
from ckpt_utils import make_tiny_checkpoint
from safetensors.torch import load_file

from lingen_model.generation.checkpoint import (
    CheckpointError,
    average_checkpoints,
    load_checkpoint,
)


def _snapshots(tmp_path, seeds):
    """Tiny checkpoints with different denoisers and the VAE of the first (snapshots of one run)."""
    paths = []
    for i, seed in enumerate(seeds):
        p = make_tiny_checkpoint(tmp_path / f"s{i}", seed=seed)
        cfg = json.loads((p / "config.json").read_text())
        cfg["training"] = {"steps": 100 * (i + 1)}
        (p / "config.json").write_text(json.dumps(cfg))
        if i:
            shutil.copy(paths[0] / "vae.safetensors", p / "vae.safetensors")
        paths.append(p)
    return paths


def test_average_is_the_elementwise_mean_and_keeps_the_rest(tmp_path):
    paths = _snapshots(tmp_path, [1, 2, 3])
    out = average_checkpoints(paths, tmp_path / "avg")
    states = [load_file(str(p / "denoiser.safetensors")) for p in paths]
    avg = load_file(str(out / "denoiser.safetensors"))
    assert avg.keys() == states[0].keys()
    moved = 0
    for k, v in avg.items():
        ref = sum(s[k].double() for s in states) / 3
        torch.testing.assert_close(v.double(), ref, rtol=0, atol=1e-6)
        moved += int(not torch.equal(v, states[-1][k]))
    assert moved > 0  # the inputs differ, so the average is not the last snapshot
    cfg = json.loads((out / "config.json").read_text())
    last = json.loads((paths[-1] / "config.json").read_text())
    assert cfg["training"]["averaged_steps"] == [100, 200, 300]
    assert cfg["sampling"] == last["sampling"] and cfg["native"] == last["native"] and cfg["name"] == last["name"]
    assert load_file(str(out / "vae.safetensors")).keys() == load_file(str(paths[0] / "vae.safetensors")).keys()
    load_checkpoint(out)  # loads as a normal checkpoint


def test_average_of_one_is_the_same_weights_and_out_may_be_an_input(tmp_path):
    (p,) = _snapshots(tmp_path, [4])
    before = load_file(str(p / "denoiser.safetensors"))
    average_checkpoints([p], p)
    after = load_file(str(p / "denoiser.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_average_refuses_checkpoints_of_different_runs(tmp_path):
    a, b = _snapshots(tmp_path, [1, 2])
    other_vae = make_tiny_checkpoint(tmp_path / "other", seed=9)
    with pytest.raises(CheckpointError, match="VAE weights differ"):
        average_checkpoints([a, other_vae], tmp_path / "x")
    cfg = json.loads((b / "config.json").read_text())
    cfg["denoiser"]["chunk_size"] = 8  # same weights, another model
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="denoiser config differs"):
        average_checkpoints([a, b], tmp_path / "y")
    with pytest.raises(CheckpointError, match="at least one"):
        average_checkpoints([], tmp_path / "z")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
