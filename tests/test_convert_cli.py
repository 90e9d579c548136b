"""``lingen convert``: a tiny random Wan (diffusers layout, save_pretrained) → a lingen checkpoint
that loads and equals diffusers with a full window; bad input → one line, exit 2, nothing written."""
import shutil

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from typer.testing import CliRunner  # noqa: E402

from lingen_cli.app import app  # noqa: E402
from wan_fixtures import save_tiny_wan  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_tiny_wan(tmp_path_factory.mktemp("wan") / "Wan-tiny")


def _from_dir(cls, folder):
    """A diffusers model from its saved folder (config + safetensors), without from_pretrained."""
    import json

    from safetensors.torch import load_file

    m = cls.from_config(json.loads((folder / "config.json").read_text()))
    m.load_state_dict(load_file(str(folder / "diffusion_pytorch_model.safetensors")))
    return m


def _run(*args):
    return runner.invoke(app, ["convert", *map(str, args)])


def test_convert_writes_checkpoint_equal_to_wan(wan_dir, tmp_path):
    from lingen_model.generation.checkpoint import load_checkpoint

    out = tmp_path / "lingen-wan"
    r = _run(wan_dir, out, "--window", "full", "--d-state", "8", "--headdim", "8", "--review-size", "1")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE", "NOTICE", "config.json", "denoiser.safetensors", "vae.safetensors"]
    assert "Apache" in (out / "LICENSE").read_text() and "output projection at zero" in (out / "NOTICE").read_text()
    denoiser, vae, cfg = load_checkpoint(out)
    assert cfg["denoiser"]["arch"] == "wan" and cfg["vae"]["arch"] == "wan" and cfg["text_encoder"]["backend"] == "umt5"
    assert cfg["sampling"]["shift"] == 5.0 and cfg["sampling"]["negative_prompt"].startswith("色调艳丽")
    assert all(not b.ma.mamba.out_proj.weight.any() for b in denoiser.blocks)
    ref = _from_dir(diffusers.WanTransformer3DModel, wan_dir / "transformer").eval()
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(1, 4, 3, 6, 4, generator=g), torch.rand(1, generator=g)
    ctx = torch.randn(1, 512, 16, generator=g)
    ctx[:, 7:] = 0
    with torch.no_grad():
        want = ref(x, 1000 * t, ctx, return_dict=False)[0]
        got = denoiser(x, t, ctx[:, :7], torch.ones(1, 7, dtype=torch.bool))
    assert (got - want).abs().max() <= 1e-5
    vref = _from_dir(diffusers.AutoencoderKLWan, wan_dir / "vae")
    assert all(torch.equal(v, vref.state_dict()[k]) for k, v in vae.model.state_dict().items())


def test_convert_options_reach_the_config(wan_dir, tmp_path):
    import json

    out = tmp_path / "w"
    r = _run(wan_dir, out, "--window", "2,4,4", "--d-state", "8", "--headdim", "8", "--review-size", "3", "--no-shift",
             "--dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    d = json.loads((out / "config.json").read_text())["denoiser"]
    assert (d["window"], d["review_size"], d["d_state"], d["shift_windows"]) == ([2, 4, 4], 3, 8, False)
    assert "2×4×4" in (out / "NOTICE").read_text()


def _broken(wan_dir, tmp_path, how):
    bad = tmp_path / "bad"
    shutil.copytree(wan_dir, bad)
    how(bad)
    return bad


def _bin_only(d):
    (d / "transformer" / "diffusion_pytorch_model.safetensors").rename(d / "transformer" / "diffusion_pytorch_model.bin")


def _wrong_shape(d):
    import json

    cfg = json.loads((d / "transformer" / "config.json").read_text())
    cfg["ffn_dim"] = 44
    (d / "transformer" / "config.json").write_text(json.dumps(cfg))


def _truncated(d):
    f = d / "transformer" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])


@pytest.mark.parametrize("how,needle", [
    (lambda d: shutil.rmtree(d / "transformer"), "diffusers layout"),
    (_bin_only, "pickle"),
    (_wrong_shape, "shape"),
    (_truncated, "corrupt"),
    (lambda d: shutil.rmtree(d / "vae"), "vae/"),
    (lambda d: (d / "transformer" / "config.json").write_text("{"), "JSON"),
])
def test_bad_input_one_line_exit_2_nothing_written(wan_dir, tmp_path, how, needle):
    bad = _broken(wan_dir, tmp_path, how)
    out = tmp_path / "out"
    r = _run(bad, out, "--d-state", "8", "--headdim", "8")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_not_a_directory_and_existing_output(wan_dir, tmp_path):
    r = _run(tmp_path / "nope", tmp_path / "o")
    assert r.exit_code == 2 and "no such directory" in r.output
    (tmp_path / "exists").mkdir()
    r = _run(wan_dir, tmp_path / "exists")
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = _run(wan_dir, tmp_path / "o", "--window", "3,3")
    assert r.exit_code == 2 and "--window" in r.output
