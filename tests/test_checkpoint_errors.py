"""A checkpoint that does not fit together is refused with the documented one-line error, by the
loader (CheckpointError), by LinGenPipeline.from_pretrained and by ``lingen generate`` (exit 2)."""
import json
import shutil

import pytest
from typer.testing import CliRunner

from ckpt_utils import make_tiny_checkpoint
from lingen_cli.app import app
from lingen_model import build_denoiser
from lingen_model.generation.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.models.vae import CausalVideoVAE, VAEConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _copy(ckpt, tmp_path, name, **denoiser_changes):
    out = tmp_path / name
    shutil.copytree(ckpt, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["denoiser"].update(denoiser_changes)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def _cli_error(path, tmp_path):
    r = runner.invoke(app, ["generate", "a red circle", "--model", str(path), "--out", str(tmp_path / "o"),
                            "--length", "1f", "--steps", "1"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    (line,) = [l for l in r.output.splitlines() if l.startswith("error:")]
    return line


@pytest.mark.parametrize("change,needle", [
    ({"depth": 3}, r"denoiser.safetensors does not match its config: missing \d+ tensor\(s\) e\.g\. blocks\.2\."),
    ({"depth": 1}, r"denoiser.safetensors does not match its config: unexpected \d+ tensor\(s\) e\.g\. blocks\.1\."),
    ({"ffn_dim": 48}, r"denoiser.safetensors does not match its config: \d+ tensor\(s\) of another shape e\.g\. "
                      r"blocks\.0\.ffn\.w13\.weight \(128, 32\) in the file, \(96, 32\) for the config"),
])
def test_tensors_that_do_not_match_config_json(ckpt, tmp_path, change, needle):
    bad = _copy(ckpt, tmp_path, "bad", **change)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(bad)
    assert "does not match its config" in _cli_error(bad, tmp_path)


def test_missing_weights_file(ckpt, tmp_path):
    for name, what in (("denoiser.safetensors", "denoiser"), ("vae.safetensors", "VAE")):
        bad = tmp_path / name
        shutil.copytree(ckpt, bad)
        (bad / name).unlink()
        with pytest.raises(CheckpointError, match=f"^{what} weights missing: .*{name}$"):
            load_checkpoint(bad)
        assert f"{what} weights missing" in _cli_error(bad, tmp_path)


def test_vae_latent_channels_differ_from_denoiser_in_channels(ckpt, tmp_path):
    bad = tmp_path / "vae8"
    shutil.copytree(ckpt, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vae"]["latent_channels"] = 8
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="denoiser in_channels 4 != VAE latent_channels 8"):
        load_checkpoint(bad)
    assert "in_channels 4 != VAE latent_channels 8" in _cli_error(bad, tmp_path)


def test_text_encoder_width_differs_from_text_dim(tmp_path):
    """Weights that match a denoiser with text_dim 24, but the checkpoint names the 384-wide MiniLM."""
    denoiser = build_denoiser("tiny", width=32, depth=1, num_heads=2, headdim=16, d_state=8, ffn_dim=64,
                              in_channels=4, chunk_size=16, window=(2, 2, 2), text_dim=24)
    vae = CausalVideoVAE(VAEConfig(latent_channels=4, base_channels=8, channel_mult=(1, 1, 2, 2)))
    path = save_checkpoint(tmp_path / "t24", denoiser, vae, {"backend": "minilm"}, {"fps": 8, "height": 64, "width": 64})
    load_checkpoint(path)  # the files themselves are consistent
    with pytest.raises(CheckpointError, match="text encoder width 384 != denoiser text_dim 24"):
        LinGenPipeline.from_pretrained(path, device="cpu")
    assert "text encoder width 384 != denoiser text_dim 24" in _cli_error(path, tmp_path)
