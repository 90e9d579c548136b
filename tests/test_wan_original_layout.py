"""``lingen convert`` on a transformer in the original Wan2.1 layout (``WanModel`` keys and config.json,
safetensors): the layout is detected from the keys and the converted checkpoint is identical to the one
converted from the diffusers layout. The original-layout copy is made here by renaming a tiny random
diffusers Wan's state dict with a table written out below from the documented original key names
(independent of ``lingen_model.wan.convert``'s own table)."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("diffusers")

from typer.testing import CliRunner  # noqa: E402

from lingen_cli.app import app  # noqa: E402
from wan_fixtures import save_tiny_wan  # noqa: E402

runner = CliRunner()
OPTS = ["--window", "1,2,2", "--d-state", "8", "--headdim", "8", "--review-size", "1", "--seed", "2"]

# diffusers name -> original Wan2.1 name (wan/modules/model.py), written out key by key.
TOP = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
    "scale_shift_table": "head.modulation",
}
BLOCK = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "norm2": "norm3",  # the affine LayerNorm before cross-attention is norm3 in the original
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
    "scale_shift_table": "modulation",
}


def to_original(state: dict) -> dict:
    out = {}
    for key, v in state.items():
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            name, _, suffix = rest.rpartition(".") if rest != "scale_shift_table" else (rest, "", "")
            out[f"blocks.{i}.{BLOCK[name]}" + (f".{suffix}" if suffix else "")] = v
        else:
            name, _, suffix = key.rpartition(".") if key != "scale_shift_table" else (key, "", "")
            out[TOP[name] + (f".{suffix}" if suffix else "")] = v
    return out


ORIGINAL_CONFIG = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": "t2v", "dim": 24,
                   "ffn_dim": 40, "num_heads": 2, "num_layers": 2, "in_dim": 4, "out_dim": 4, "text_len": 512,
                   "freq_dim": 32, "text_dim": 16, "eps": 1e-6, "patch_size": [1, 2, 2]}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(diffusers pipeline, the same with transformer/ in the original layout, an original root without vae/)."""
    d = tmp_path_factory.mktemp("wan-orig")
    diff = save_tiny_wan(d / "diffusers")
    state = load_file(str(diff / "transformer" / "diffusion_pytorch_model.safetensors"))
    orig = d / "original-in-pipeline"
    shutil.copytree(diff, orig)
    shutil.rmtree(orig / "transformer")
    root = d / "Wan2.1-T2V-tiny"  # what the original repository's root holds (its .pth files left out)
    for folder in (orig / "transformer", root):
        folder.mkdir()
        save_file(to_original(state), str(folder / "diffusion_pytorch_model.safetensors"))
        (folder / "config.json").write_text(json.dumps(ORIGINAL_CONFIG))
    return diff, orig, root


def _convert(*args):
    return runner.invoke(app, ["convert", *map(str, args), *OPTS])


def _same_checkpoint(a, b):
    ta, tb = load_file(str(a / "denoiser.safetensors")), load_file(str(b / "denoiser.safetensors"))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    ca, cb = (json.loads((p / "config.json").read_text()) for p in (a, b))
    assert ca["denoiser"] == cb["denoiser"] and ca["vae"] == cb["vae"]
    return ca, cb


def test_original_layout_converts_to_the_same_checkpoint(dirs, tmp_path):
    diff, orig, root = dirs
    assert set(to_original(load_file(str(diff / "transformer" / "diffusion_pytorch_model.safetensors")))) == set(
        load_file(str(orig / "transformer" / "diffusion_pytorch_model.safetensors")))
    assert _convert(diff, tmp_path / "a").exit_code == 0
    r = _convert(orig, tmp_path / "b")
    assert r.exit_code == 0, r.output
    ca, cb = _same_checkpoint(tmp_path / "a", tmp_path / "b")
    assert ca["source"]["format"] == "diffusers" and cb["source"]["format"] == "original"
    # --transformer: the original repository's root folder with the diffusers pipeline's VAE and UMT5
    r = _convert(diff, tmp_path / "c", "--transformer", root)
    assert r.exit_code == 0, r.output
    _, cc = _same_checkpoint(tmp_path / "a", tmp_path / "c")
    assert cc["source"]["format"] == "original" and cc["source"]["transformer_path"] == str(root.resolve())


def _error(src, out, *extra):
    r = _convert(src, out, *extra)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()
    return r.output


def test_original_layout_errors_are_one_line(dirs, tmp_path):
    diff, orig, root = dirs
    assert "--transformer" in _error(root, tmp_path / "o")  # original root: VAE/UMT5 are .pth, not read
    bad = tmp_path / "bad"
    bad.mkdir()
    state = load_file(str(root / "diffusion_pytorch_model.safetensors"))
    (bad / "config.json").write_text(json.dumps(ORIGINAL_CONFIG))
    save_file({f"model.{k}": v for k, v in state.items()}, str(bad / "diffusion_pytorch_model.safetensors"))
    assert "unknown transformer layout" in _error(diff, tmp_path / "o", "--transformer", bad)
    save_file({**state, "img_emb.proj.1.weight": torch.zeros(2)}, str(bad / "diffusion_pytorch_model.safetensors"))
    assert "img_emb.proj.1.weight" in _error(diff, tmp_path / "o", "--transformer", bad)
    save_file(state, str(bad / "diffusion_pytorch_model.safetensors"))
    (bad / "config.json").write_text(json.dumps({**ORIGINAL_CONFIG, "model_type": "i2v"}))
    assert "model_type='i2v'" in _error(diff, tmp_path / "o", "--transformer", bad)
    (bad / "config.json").write_text(json.dumps({k: v for k, v in ORIGINAL_CONFIG.items() if k != "num_heads"}))
    assert "lacks num_heads" in _error(diff, tmp_path / "o", "--transformer", bad)
    (bad / "config.json").write_text((diff / "transformer" / "config.json").read_text())
    assert "original layout but its config.json is not" in _error(diff, tmp_path / "o", "--transformer", bad)
