"""recipes/lingen-tiny/proto_speed.py (session 29 prototype, issue 14): the speed conditioning must leave the
denoiser exactly as it was while its last layer is zero or the speed is unknown (NaN), reach each sample's frames
(per-frame timesteps included) with that sample's speed only, and carry each clip's speed from the shapes world to
the trainer."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "lingen-tiny"


@pytest.fixture(scope="module")
def ps():
    spec = importlib.util.spec_from_file_location("proto_speed", RECIPES / "proto_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from lingen_model.models import denoiser as dm

    saved = (dm.Denoiser.__init__, dm.Denoiser.reset_parameters)
    dm.Denoiser.__init__ = mod.init
    dm.Denoiser.reset_parameters = mod.reset_parameters
    yield mod
    dm.Denoiser.__init__, dm.Denoiser.reset_parameters = saved
    mod.STATE["speed"] = None


def _model(ps, seed=0):
    from lingen_model.models.denoiser import build_denoiser

    torch.manual_seed(seed)
    m = build_denoiser("tiny", "mate", depth=2, width=64, num_heads=1, ffn_dim=128, headdim=32, d_state=16).double().eval()
    with torch.no_grad():  # adaLN-Zero starts blind to the timestep embedding: open it
        for lin in (m.t_block[1], m.final_mod[1], m.final_linear):
            lin.weight.normal_(0, 0.05)
    return m


def _inputs(b=2, t=3):
    g = torch.Generator().manual_seed(int(torch.randint(0, 10**6, ())))
    z = torch.randn(b, 8, t, 4, 4, generator=g, dtype=torch.float64)
    ctx = torch.randn(b, 5, 384, generator=g, dtype=torch.float64)
    return z, ctx, torch.ones(b, 5, dtype=torch.bool)


def _run(ps, m, speed, *args):
    ps.STATE["speed"] = speed
    try:
        with torch.no_grad():
            return m(*args)
    finally:
        ps.STATE["speed"] = None


def test_zero_last_layer_and_unknown_speed_change_nothing(ps):
    m = _model(ps)
    z, ctx, mask = _inputs()
    t = torch.rand(2, dtype=torch.float64)
    base = _run(ps, m, None, z, t, ctx, mask)
    torch.testing.assert_close(_run(ps, m, torch.tensor([0.2, 0.1]), z, t, ctx, mask), base, rtol=0, atol=0)
    with torch.no_grad():
        m.speed_embed[2].weight.normal_(0, 0.2)
    out = _run(ps, m, torch.tensor([0.2, math.nan]), z, t, ctx, mask)
    assert (out[0] - base[0]).abs().max() > 1e-3
    torch.testing.assert_close(out[1], base[1], rtol=0, atol=1e-12)


def test_each_sample_gets_its_own_speed_per_frame(ps):
    m = _model(ps, 1)
    with torch.no_grad():
        m.speed_embed[2].weight.normal_(0, 0.2)
    z, ctx, mask = _inputs(2, 3)
    t = torch.rand(2, 3, dtype=torch.float64)
    both = _run(ps, m, torch.tensor([0.12, 0.24]), z, t, ctx, mask)
    for i, s in enumerate((0.12, 0.24)):
        one = _run(ps, m, torch.tensor([s]), z[i:i + 1], t[i:i + 1], ctx[i:i + 1], mask[i:i + 1])
        torch.testing.assert_close(both[i:i + 1], one, rtol=0, atol=1e-10)


def test_caption_carries_the_scene_speed(ps):
    from lingen_model.shapes.world import LINEAR_MOTIONS

    seen = set()
    for seed in range(40):
        frames, text, scene = ps.make_clip(seed, 5, 32, 32, 8.0, max_objects=1, entry_prob=1.0)
        caption, _, value = text.partition(ps.MARK)
        obj = scene.objects[0]
        want = obj.speed if obj.motion in LINEAR_MOTIONS else 0.0
        assert abs(float(value) - want) < 1e-5 and ps.MARK not in caption
        seen.add(obj.motion in LINEAR_MOTIONS)
    assert seen == {True, False}


def test_split_captions_drops_at_the_rate_and_repeats(ps):
    caps = [f"a red circle moving left{ps.MARK}0.15000"] * 4000 + ["no speed"]
    plain, s = ps.split_captions(caps, step=12)
    assert plain[0] == "a red circle moving left" and plain[-1] == "no speed"
    assert math.isnan(float(s[-1]))
    dropped = torch.isnan(s[:-1]).double().mean().item()
    assert abs(dropped - ps.SPEED_DROP) < 0.03
    torch.testing.assert_close(ps.split_captions(caps, step=12)[1], s, equal_nan=True)
    assert torch.allclose(s[:-1][~torch.isnan(s[:-1])], torch.tensor(0.15, dtype=torch.float64))


def test_init_run_adds_a_zero_last_layer_to_both_files(ps, tmp_path):
    from safetensors.torch import load_file, save_file

    src = tmp_path / "state"
    src.mkdir()
    save_file({"t_embed.2.weight": torch.randn(16, 16)}, str(src / "denoiser.safetensors"))
    (src / "train_state.json").write_text("{}")
    ps.init_run(str(tmp_path / "run"), str(src))
    w = load_file(str(tmp_path / "run" / "denoiser.safetensors"))
    e = load_file(str(tmp_path / "run" / "denoiser_ema.safetensors"))
    assert w.keys() == e.keys() >= {"speed_embed.0.weight", "speed_embed.2.weight"}
    assert all(torch.equal(w[k], e[k]) for k in w)
    assert w["speed_embed.2.weight"].abs().max() == 0 and w["speed_embed.0.weight"].abs().max() > 0
    with pytest.raises(SystemExit):
        ps.init_run(str(tmp_path / "run"), str(src))
