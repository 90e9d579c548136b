"""Training state through the trainer's public outputs (run-dir files, logged losses, weights): a
resumed run is bit-for-bit the uninterrupted run, for both stages, through ``lingen train``.
(Data parallelism — two ranks equal one process on the global batch, resharding — and the
weights/EMA/moments of a resumed FSDP2 run are tested in tests/test_distributed_train.py.)"""
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from lingen_cli.app import app

runner = CliRunner()
TINY_VAE = {"latent_channels": 4, "base_channels": 8, "channel_mult": [1, 1, 2, 2]}
TINY_DENOISER = {"size": "tiny", "mixer": "mate", "overrides": {"width": 32, "depth": 2, "num_heads": 2, "headdim": 16,
                                                                "d_state": 8, "ffn_dim": 64, "chunk_size": 16,
                                                                "window": [2, 2, 2]}}
DATA = {"source": "shapes", "height": 32, "width": 32, "fps": 8, "frames": 5, "still_prob": 0.3}
HERE = Path(__file__).resolve().parent


def write_cfg(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def train(cfg_path, *extra):
    r = runner.invoke(app, ["train", str(cfg_path), "-q", *map(str, extra)])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae")
    train(write_cfg(d / "vae.yaml", stage="vae", run_dir=str(d / "run"), steps=1, batch_size=1, data=DATA, vae=TINY_VAE))
    return d / "run"


def _state(run: Path, prefix: str) -> dict[str, dict[str, torch.Tensor]]:
    """The single-file tensors a run dir holds (the VAE stage writes ``vae_ema``; the rest of the
    state is a distributed checkpoint, compared in test_distributed_train.py)."""
    names = (prefix, f"{prefix}_ema", "optimizer")
    return {f: load_file(str(run / f"{f}.safetensors")) for f in names if (run / f"{f}.safetensors").is_file()}


def _history(run: Path) -> list[dict]:
    return json.loads((run / "train_state.json").read_text())["history"]


@pytest.mark.parametrize("stage", ["vae", "denoiser"])
def test_resume_is_bit_identical_to_the_uninterrupted_run(vae_dir, tmp_path, stage):
    """Run A trains 4 steps; run B trains 2, stops, and resumes to 4. B's weights, EMA and Adam moments
    equal A's bit for bit and B logs the same losses at steps 3 and 4. (warmup_steps = 2: the first
    two learning rates do not depend on the total step count, which differs for B's first leg.)"""
    prefix = "vae" if stage == "vae" else "denoiser"
    extra = {"vae": TINY_VAE} if stage == "vae" else {"vae_checkpoint": str(vae_dir), "denoiser": TINY_DENOISER}
    common = dict(stage=stage, steps=4, batch_size=2, warmup_steps=2, log_every=1, save_every_steps=100,
                  ema_decay=0.9, data=DATA, **extra)
    a = tmp_path / "a"
    train(write_cfg(tmp_path / "a.yaml", run_dir=str(a), **common))
    b = tmp_path / "b"
    cfg_b = write_cfg(tmp_path / "b.yaml", run_dir=str(b), **common)
    train(cfg_b, "--steps", 2)
    at_two = _state(b, prefix)
    r = train(cfg_b)
    assert "resumed" in r.output and "at step 2" in r.output
    ha, hb = _history(a), _history(b)
    assert [h["step"] for h in hb] == [1, 2, 3, 4]
    assert [h["loss"] for h in hb] == [h["loss"] for h in ha]  # exact: same data, noise and weights
    sa, sb = _state(a, prefix), _state(b, prefix)
    for f in sa:
        assert sa[f].keys() == sb[f].keys()
        bad = [k for k in sa[f] if not torch.equal(sa[f][k], sb[f][k])]
        assert not bad, (f, bad[:3])
    # the resumed leg changed what it trains (so the comparison above is not of untouched files)
    for f in at_two:
        moved = [k for k in at_two[f] if at_two[f][k].is_floating_point() and not torch.equal(at_two[f][k], sb[f][k])]
        assert len(moved) > len(at_two[f]) // 2, f
