"""The whole Wan path against the fake Hub: a tiny random Wan 2.1 in diffusers layout is published,
``lingen download`` fetches it, ``lingen convert`` turns it into a LinGen, ``lingen generate``
writes an mp4 through our pipeline (UMT5 backend, Wan denoiser, streamed Wan VAE decode)."""
import json

import pytest

pytest.importorskip("diffusers")

from typer.testing import CliRunner  # noqa: E402

from fake_hub import FakeHub  # noqa: E402
from lingen_cli.app import app  # noqa: E402
from test_zoo import env  # noqa: E402,F401  (fixture: HF cache, LINGEN_HOME and endpoint on the fake Hub)
from wan_fixtures import save_tiny_wan  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        yield server


def test_download_convert_generate_mp4(hub, env, tmp_path):  # noqa: F811
    src = save_tiny_wan(tmp_path / "made")
    files = {str(p.relative_to(src)): p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()}
    repo = "Wan-AI/Wan2.1-T2V-tiny-random-Diffusers"
    commit = hub.add_repo(repo, files)

    r = runner.invoke(app, ["download", repo])
    assert r.exit_code == 0, r.output
    snap = env["cache"] / ("models--" + repo.replace("/", "--")) / "snapshots" / commit
    assert (snap / "transformer" / "diffusion_pytorch_model.safetensors").is_file()

    ckpt = tmp_path / "lingen-wan-tiny"
    r = runner.invoke(app, ["convert", str(snap), str(ckpt), "--window", "2,2,2", "--d-state", "8", "--headdim", "8",
                            "--review-size", "1"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["text_encoder"]["path"].startswith(str(snap))

    out = tmp_path / "clips"
    r = runner.invoke(app, ["generate", "a red circle moving to the left", "--model", str(ckpt), "--out", str(out),
                            "--res", "32x24", "--length", "9f", "--steps", "2", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    mp4s = sorted(out.glob("*.mp4"))
    assert len(mp4s) == 1 and mp4s[0].stat().st_size > 0
    record = json.loads(mp4s[0].with_suffix(".json").read_text())
    assert (record["num_frames"], record["width"], record["height"]) == (9, 32, 24)
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(mp4s[0]))
    meta = next(reader)
    assert tuple(meta["size"]) == (32, 24) and sum(1 for _ in reader) == 9


def test_pipeline_integrates_wan_models_in_float32():
    """A bf16 Wan-converted denoiser gets float32 latents and timesteps (Wan's pipeline does the same)."""
    import torch

    from lingen_model.generation.pipeline import LinGenPipeline
    from lingen_model.wan.denoiser import WanDenoiser, WanDenoiserConfig

    class FakeVAE:
        latent_channels, temporal_factor, spatial_factor = 4, 4, 4

    cfg = WanDenoiserConfig(in_channels=4, out_channels=4, width=24, depth=1, num_heads=2, ffn_dim=8, text_dim=8,
                            text_len=4, mixer="attention")
    pipe = LinGenPipeline(WanDenoiser(cfg).to(torch.bfloat16), FakeVAE(), None, {"native": {}}, dtype=torch.bfloat16)
    seen = []
    pipe.denoiser.register_forward_pre_hook(lambda m, args: seen.append((args[0].dtype, args[1].dtype)))
    noise = pipe.prepare_latents(5, 16, 16, seed=0)
    assert noise.dtype == torch.float32
    ctx, mask = torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool)
    z = pipe.denoise(noise, ctx, mask, steps=2, shift=5.0)
    assert z.dtype == torch.float32 and seen == [(torch.float32, torch.float32)] * 2
