"""The head first (issue 14, docs/design.md §7): the first N latent frames sampled as a short clip, then held at
t = 0 while the staircase samples the rest. Checked against the written-out schedule, against an Euler staircase
run by hand, and, end to end, against the session-18 prototype (``recipes/lingen-tiny/proto_headfirst.py``) that
the tuning numbers were measured with."""
import json

import pytest
import torch
from typer.testing import CliRunner

from ckpt_utils import make_tiny_checkpoint
from lingen_cli.app import app
from lingen_model.errors import InputError
from lingen_model.generation import flow
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from support.recipes import load_recipe

runner = CliRunner()


def test_staggered_times_hold_the_fixed_frames_at_zero():
    for fixed in (0, 1, 3):
        t = flow.staggered_times(5, 2.0, 0.25, 6, fixed)
        rest = flow.staggered_times(5, 2.0, 0.25, 6 - fixed)
        assert t.shape == (rest.shape[0], 6)
        assert torch.equal(t[:, :fixed], torch.zeros(rest.shape[0], fixed, dtype=torch.float64))
        assert torch.equal(t[:, fixed:], rest)
    assert flow.staggered_times(5, 2.0, 0.25, 6, 2).shape[0] == flow.staggered_steps(5, 0.25, 4) + 1
    for bad in (-1, 6, 2.0, True):
        with pytest.raises(ValueError, match="fixed"):
            flow.staggered_times(5, 2.0, 0.25, 6, bad)


def _mixing_velocity(weights):
    """A velocity in which every latent frame sees every other (a fixed random mix over frames) and its own time."""
    def f(z, t, c, m):
        mixed = torch.einsum("bcthw,ts->bcshw", z, weights[: z.shape[2], : z.shape[2]])
        return torch.tanh(mixed) * (1 + t.reshape(t.shape[0], 1, -1, 1, 1)) + c.mean((1, 2)).view(-1, 1, 1, 1, 1)
    return f


def test_sample_with_fixed_frames_is_the_staircase_run_by_hand():
    """float64, no guidance: the held frames come back as they went in; the others follow Euler over the rows of
    staggered_times(fixed=N), the held frames in the network's input at t = 0."""
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 2, 6, 3, 3, generator=g, dtype=torch.float64)
    ctx, mask = torch.randn(1, 4, 8, generator=g, dtype=torch.float64), torch.ones(1, 4, dtype=torch.bool)
    f = _mixing_velocity(torch.randn(6, 6, generator=g, dtype=torch.float64) / 3)
    out = flow.sample(f, noise, 4, shift=1.5, context=ctx, context_mask=mask, stagger=0.3, fixed_frames=2)
    times = flow.staggered_times(4, 1.5, 0.3, 6, 2)
    z = noise.clone()
    for i in range(times.shape[0] - 1):
        v = f(z, times[i][None], ctx, mask)
        z = z + (times[i + 1] - times[i]).view(1, 1, -1, 1, 1) * v
    torch.testing.assert_close(out, z, rtol=0, atol=1e-12)
    assert torch.equal(out[:, :, :2], noise[:, :, :2])
    with pytest.raises(ValueError, match="fixed_frames"):
        flow.sample(f, noise, 4, context=ctx, context_mask=mask, fixed_frames=2)  # no stagger
    with pytest.raises(ValueError, match="fixed_frames"):
        flow.sample(f, noise, 4, context=ctx, context_mask=mask, stagger=0.3, fixed_frames=6)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny checkpoint whose short-clip settings are the prototype's head settings (30 steps, TaylorSeer), with
    a long-clip profile from 1.5 s that samples a head of 2 latent frames first."""
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("head") / "ckpt")
    cfg = json.loads((path / "config.json").read_text())
    cfg["sampling"] = {"steps": 30, "cfg_scale": 3.0, "cache": "taylor", "cfg_max_t": 0.84, "direction_guidance": 2.0,
                       "long_clip": {"from_seconds": 1.5, "stagger": 0.2, "stagger_context": 1, "steps": 4,
                                     "cache": "none", "shift": 3, "head": 2}}
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_the_library_head_is_the_prototypes(ckpt, monkeypatch):
    """The same clip, bit for bit, from GenerationRequest(head=2) and from the prototype (HEAD=2) patched in."""
    pipe = LinGenPipeline.from_pretrained(ckpt, device="cpu")
    kw = dict(prompt="a red circle moving left", num_frames=17, seed=4, stagger=0.2, stagger_context=1, steps=4,
              shift=3.0)
    ours = pipe.generate(GenerationRequest(**kw, head=2))
    assert ours.request.head == 2 and ours.request.head_steps == 30 and ours.request.head_cache == "taylor"
    proto = load_recipe("proto_headfirst")
    proto.HEAD = 2
    monkeypatch.setattr(flow, "staggered_times", proto.staggered_times)
    monkeypatch.setattr(pipeline_mod, "sample", proto.sample)
    theirs = pipe.generate(GenerationRequest(**kw, head=0))
    monkeypatch.undo()
    assert (ours.frames == theirs.frames).all()
    plain = pipe.generate(GenerationRequest(**kw, head=0))  # the head changes the clip
    assert not (plain.frames == ours.frames).all()
    # calls: the head's full calls (TaylorSeer: fewer than its 30 steps) plus the staircase over the other 3 frames
    assert flow.staggered_steps(4, 0.2, 3) < ours.full_calls < flow.staggered_steps(4, 0.2, 3) + 30
    assert plain.full_calls == flow.staggered_steps(4, 0.2, 5)


def test_resolve_takes_the_head_from_the_long_clip_profile_where_it_fits(ckpt):
    pipe = LinGenPipeline.from_pretrained(ckpt, device="cpu")
    long = pipe.resolve(GenerationRequest(prompt="a cat", num_frames=17))  # 2 s: the profile, head 2 of 5 frames
    assert (long.head, long.head_steps, long.head_cache, long.stagger) == (2, 30, "taylor", 0.2)
    assert long.to_dict()["head"] == 2
    short = pipe.resolve(GenerationRequest(prompt="a cat", num_frames=9))  # 1 s: no profile, no head
    assert short.head == 0 and "head" not in short.to_dict() and "head_steps" not in short.to_dict()
    assert pipe.resolve(GenerationRequest(prompt="a cat", num_frames=17, stagger=0)).head == 0  # profile off
    assert pipe.resolve(GenerationRequest(prompt="a cat", num_frames=17, head=0)).head == 0
    assert pipe.resolve(GenerationRequest(prompt="a cat", num_frames=9, stagger=0.2, head=1)).head == 1
    with pytest.raises(InputError, match="stagger"):
        pipe.resolve(GenerationRequest(prompt="a cat", num_frames=9, head=1))
    with pytest.raises(InputError, match="fewer latent frames than the clip's 5"):
        pipe.resolve(GenerationRequest(prompt="a cat", num_frames=17, head=5))
    with pytest.raises(InputError, match="head"):
        pipe.resolve(GenerationRequest(prompt="a cat", num_frames=17, head=-1))


def test_cli_head_option(ckpt, tmp_path):
    out = tmp_path / "a.mp4"
    r = runner.invoke(app, ["generate", "a red square moving up", "-m", str(ckpt), "--length", "17f",
                            "--stagger", "0.2", "--head", "2", "--steps", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["head"] == 2
    bad = runner.invoke(app, ["generate", "a red square", "-m", str(ckpt), "--length", "9f", "--head", "1",
                              "-o", str(tmp_path / "b.mp4")])
    assert bad.exit_code != 0 and "head needs stagger" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "b.mp4").exists()
