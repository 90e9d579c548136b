"""What reaches the sampler: LinGenPipeline's defaults (from the checkpoint's config.json) and every
option of ``lingen generate`` and of a JSONL batch line, seen by a spy on the sampler the pipeline
calls (``lingen_model.generation.flow.sample``, imported into ``lingen_model.generation.pipeline``). The spy calls the real
sampler, so the videos are the real ones."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ckpt_utils import make_tiny_checkpoint
from lingen_cli.app import app
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import LinGenPipeline

runner = CliRunner()

# make_tiny_checkpoint: native 8 fps, 64×64 pixels, sampling {"steps": 2, "cfg_scale": 3.0};
# VAE ×8 spatial, ×4 temporal, 4 latent channels; denoiser patch 2.
NATIVE_FPS, NATIVE_SIZE, CKPT_STEPS, CKPT_CFG = 8, 64, 2, 3.0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def spy(monkeypatch):
    """Records every call of the sampler and of the text encoder's ``encode`` (prompt lists)."""
    calls = {"sample": [], "encode": []}
    real_sample = pipeline_mod.sample

    def sample_spy(velocity_fn, noise, steps, **kw):
        calls["sample"].append({"noise_shape": tuple(noise.shape), "steps": steps, **kw})
        return real_sample(velocity_fn, noise, steps, **kw)

    real_encode = LinGenPipeline.encode_prompt

    def encode_spy(self, prompts):
        calls["encode"].append(list(prompts))
        return real_encode(self, prompts)

    monkeypatch.setattr(pipeline_mod, "sample", sample_spy)
    monkeypatch.setattr(LinGenPipeline, "encode_prompt", encode_spy)
    return calls


@pytest.fixture(scope="module")
def pipe(ckpt):
    return LinGenPipeline.from_pretrained(ckpt, device="cpu")


def test_pipeline_defaults_are_the_checkpoints(pipe, spy):
    frames = pipe("a red circle", seed=0)
    # 4 s at the native 8 fps: 1 + 4·8 = 33 frames (1 + 4k, k = 8), native 64×64
    assert frames.shape == (33, NATIVE_SIZE, NATIVE_SIZE, 3)
    (call,) = spy["sample"]
    assert call["noise_shape"] == (1, 4, 9, 8, 8)  # 1 + 32/4 latent frames of 64/8 pixels
    assert call["steps"] == CKPT_STEPS and call["cfg_scale"] == CKPT_CFG and call["method"] == "euler"
    # no shift in the checkpoint: from the token count, 9·4·4 = 144 < 256 tokens → the base shift 1.0
    assert call["shift"] == 1.0
    assert spy["encode"] == [["a red circle", ""]]  # the default negative prompt is ""
    assert call["uncond_context"] is not None and call["uncond_context"].shape[0] == 1


@pytest.mark.parametrize("fps,frames", [(6, 25), (5, 21), (2, 9), (0.5, 1)])
def test_default_length_is_four_seconds_at_the_given_fps(pipe, spy, fps, frames):
    out = pipe("a blue square", fps=fps, steps=1, cfg_scale=1.0, height=16, width=16, seed=0)
    assert out.shape[0] == frames
    assert spy["sample"][0]["noise_shape"][2] == 1 + (frames - 1) // 4


def test_explicit_settings_reach_the_sampler(pipe, spy):
    pipe("a green triangle", num_frames=5, height=32, width=48, steps=3, cfg_scale=7.5, shift=1.7, method="heun",
         negative_prompt="blurry", seed=1)
    (call,) = spy["sample"]
    assert (call["steps"], call["cfg_scale"], call["shift"], call["method"]) == (3, 7.5, 1.7, "heun")
    assert call["noise_shape"] == (1, 4, 2, 4, 6)
    assert spy["encode"] == [["a green triangle", "blurry"]]


def test_cfg_one_encodes_no_negative_prompt(pipe, spy):
    pipe("a green triangle", num_frames=1, height=16, width=16, steps=1, cfg_scale=1.0, negative_prompt="x", seed=1)
    (call,) = spy["sample"]
    assert call["cfg_scale"] == 1.0 and call["uncond_context"] is None
    assert spy["encode"] == [["a green triangle"]]


def _with_sampling(ckpt, directory, sampling: dict) -> LinGenPipeline:
    """A copy of the tiny checkpoint in ``directory`` whose config.json has these sampling defaults."""
    import shutil

    shutil.copytree(ckpt, directory)
    cfg = json.loads((directory / "config.json").read_text())
    cfg["sampling"] = sampling
    (directory / "config.json").write_text(json.dumps(cfg))
    return LinGenPipeline.from_pretrained(directory, device="cpu")


def test_checkpoint_shift_is_used(ckpt, tmp_path, spy):
    p = _with_sampling(ckpt, tmp_path / "shifted", {"steps": 1, "cfg_scale": 2.0, "shift": 2.5})
    p("a red circle", num_frames=1, height=16, width=16, seed=0)
    p("a red circle", num_frames=1, height=16, width=16, seed=0, shift=4.0)
    assert [(c["steps"], c["cfg_scale"], c["shift"]) for c in spy["sample"]] == [(1, 2.0, 2.5), (1, 2.0, 4.0)]


def test_stagger_reaches_the_sampler_and_turns_the_models_step_caching_off(ckpt, tmp_path, spy):
    from lingen_model.errors import InputError

    p = _with_sampling(ckpt, tmp_path / "cached", {"steps": 2, "cfg_scale": 2.0, "cache": "taylor"})
    out = p.generate(p.resolve(pipeline_mod.GenerationRequest("a red circle", num_frames=9, height=16, width=16,
                                                              stagger=0.25)))
    (call,) = spy["sample"]
    assert call["stagger"] == 0.25 and call["cache"] == "none" and call["steps"] == 2
    assert out.request.cache == "none" and any("caching" in n for n in out.request.notes)
    assert out.full_calls == 3 and out.request.to_dict()["stagger"] == 0.25  # ⌈2·(1 + 0.25·2)⌉ for 3 latent frames
    p("a red circle", num_frames=9, height=16, width=16)
    assert spy["sample"][1]["stagger"] == 0.0 and spy["sample"][1]["cache"] != "none"
    p("a red circle", num_frames=17, height=16, width=16, stagger=0.3, stagger_context=1)
    assert (spy["sample"][2]["stagger"], spy["sample"][2]["stagger_context"]) == (0.3, 1)
    for bad, why in (({"stagger": 0.1, "cache": "delta"}, "caching"), ({"stagger": 0.1, "method": "heun"}, "euler"),
                     ({"stagger": -0.1}, "stagger"), ({"stagger": 2.0}, "stagger"),
                     ({"stagger_context": 2}, "needs stagger"), ({"stagger": 0.1, "stagger_context": -1}, "stagger_context")):
        with pytest.raises(InputError, match=why):
            p.resolve(pipeline_mod.GenerationRequest("a red circle", **bad))


LONG = {"steps": 2, "cfg_scale": 2.0, "cache": "taylor", "direction_guidance": 3.0,
        "long_clip": {"from_seconds": 2.0, "stagger": 0.25, "stagger_context": 1, "steps": 3, "cache": "none",
                      "shift": 4.0}}


def test_long_clip_profile_applies_from_its_length_and_explicit_settings_win(ckpt, tmp_path, spy):
    """A checkpoint's ``sampling.long_clip`` replaces the defaults for clips of at least ``from_seconds``
    (span (frames − 1)/fps; 17 frames at 8 fps = 2 s); shorter clips keep the plain defaults; given
    settings win key by key; ``stagger=0`` or a step cache skip the whole profile."""
    R = pipeline_mod.GenerationRequest
    p = _with_sampling(ckpt, tmp_path / "long", LONG)
    plain = dict(stagger=0.0, stagger_context=None, steps=2, cache="taylor", direction_guidance=3.0, shift=None)
    profile = dict(stagger=0.25, stagger_context=1, steps=3, cache="none", direction_guidance=3.0, shift=4.0)
    cases = [  # (request fields, expected settings)
        (dict(num_frames=13), plain),  # 1.5 s < 2 s
        (dict(num_frames=17), profile),  # exactly 2 s
        (dict(num_frames=33), profile),
        (dict(num_frames=17, fps=16.0), plain),  # 1 s at 16 fps
        (dict(num_frames=17, steps=5), {**profile, "steps": 5}),
        (dict(num_frames=17, shift=2.5), {**profile, "shift": 2.5}),
        (dict(num_frames=17, stagger=0.5), {**profile, "stagger": 0.5}),
        (dict(num_frames=17, stagger_context=0), {**profile, "stagger_context": 0}),
        (dict(num_frames=17, cache="none"), profile),
        (dict(num_frames=17, direction_guidance=0.0), {**profile, "direction_guidance": 0.0}),
        (dict(num_frames=17, stagger=0.0), plain),
        (dict(num_frames=17, cache="taylor"), plain),
        (dict(num_frames=17, cache="delta"), {**plain, "cache": "delta"}),
    ]
    for fields, want in cases:
        req = p.resolve(R("a red circle moving left", height=16, width=16, **fields))
        got = {k: getattr(req, k) for k in want}
        assert got == want, fields
        # a note when the profile applies and supplies any of stagger, stagger_context, steps, shift
        left = any(k not in fields for k in ("stagger", "stagger_context", "steps", "shift"))
        assert any("long-clip" in n for n in req.notes) == (want["stagger"] > 0 and left), fields
    # the profile's settings reach the sampler, and the clip is the staggered one
    out = p.generate(p.resolve(R("a red circle", num_frames=17, height=16, width=16)))
    call = spy["sample"][-1]
    assert (call["stagger"], call["stagger_context"], call["steps"], call["cache"], call["shift"]) == (0.25, 1, 3, "none", 4.0)
    assert out.full_calls == 6  # ⌈3·(1 + 0.25·4)⌉ for 5 latent frames
    assert out.request.to_dict()["stagger"] == 0.25


@pytest.mark.parametrize("bad", [[], {"from_seconds": 0}, {"from_seconds": -1}, {"from_seconds": "8"},
                                 {"from_seconds": float("nan")}, {"from_seconds": True}, {"stagger": 0.1}])
def test_a_malformed_long_clip_profile_is_refused(ckpt, tmp_path, bad):
    from lingen_model.errors import InputError

    p = _with_sampling(ckpt, tmp_path / "bad", {"steps": 2, "cfg_scale": 2.0, "long_clip": bad})
    with pytest.raises(InputError, match="long_clip"):
        p.resolve(pipeline_mod.GenerationRequest("a red circle", num_frames=1, height=16, width=16))


# ---------------------------------------------------------------- lingen generate → pipeline → sampler


def _generate(*args):
    r = runner.invoke(app, ["generate", *map(str, args)])
    assert r.exit_code == 0, r.output
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def test_cli_defaults_reach_the_sampler(ckpt, tmp_path, spy):
    (rec,) = _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 3, "--json")
    (call,) = spy["sample"]
    assert call["noise_shape"] == (1, 4, 9, 8, 8)  # --length 4s at 8 fps → 33 frames
    assert (call["steps"], call["cfg_scale"], call["method"]) == (CKPT_STEPS, CKPT_CFG, "euler")
    assert spy["encode"] == [["a red circle", ""]]
    assert (rec["num_frames"], rec["steps"], rec["cfg_scale"], rec["sampler"]) == (33, 2, 3.0, "euler")


def test_cli_options_reach_the_sampler(ckpt, pipe, tmp_path, spy):
    (rec,) = _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 3, "--json", "--cfg", 6.5,
                       "--steps", 3, "--sampler", "heun", "--length", "1s", "--fps", 4, "--res", "32x48")
    (call,) = spy["sample"]
    assert (call["steps"], call["cfg_scale"], call["method"]) == (3, 6.5, "heun")
    assert call["noise_shape"] == (1, 4, 2, 6, 4)  # 1 s at 4 fps = 5 frames; 32 wide × 48 high
    assert (rec["num_frames"], rec["width"], rec["height"], rec["steps"], rec["cfg_scale"], rec["sampler"]) == \
        (5, 32, 48, 3, 6.5, "heun")
    _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 3, "--json", "--cfg", 1, "--length", "1f")
    assert spy["sample"][1]["cfg_scale"] == 1.0 and spy["sample"][1]["uncond_context"] is None
    (rec,) = _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 4, "--json", "--stagger", 0.2,
                       "--length", "2s")
    assert spy["sample"][2]["stagger"] == 0.2 and rec["stagger"] == 0.2
    r = runner.invoke(app, ["generate", "a red circle", "--model", str(ckpt), "--out", str(tmp_path), "--stagger", "-1"])
    assert r.exit_code != 0 and "stagger" in r.output and "Traceback" not in r.output
    (rec,) = _generate("a red circle moving up", "--model", ckpt, "--out", tmp_path, "--seed", 5, "--json",
                       "--direction-guidance", 2.5, "--length", "1s")
    assert spy["sample"][3]["contrast_scale"] == 2.5 and spy["encode"][3][2] == "a red circle moving down"
    assert (rec["direction_guidance"], rec["contrast_prompt"]) == (2.5, "a red circle moving down")
    r = runner.invoke(app, ["generate", "a red circle", "--model", str(ckpt), "--out", str(tmp_path),
                            "--direction-guidance", "-2"])
    assert r.exit_code == 2 and "direction_guidance" in r.output and "Traceback" not in r.output
    (rec,) = _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 6, "--json", "--shift", 3,
                       "--length", "1s")
    assert spy["sample"][4]["shift"] == 3.0 and rec["shift"] == 3.0
    (rec,) = _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 7, "--json", "--length", "1s")
    tokens = int(np.prod(pipe.denoiser.token_grid(spy["sample"][5]["noise_shape"])))  # no --shift: from the token count
    assert spy["sample"][5]["shift"] == pipeline_mod.shift_for_tokens(tokens) != 3.0 and rec["shift"] is None
    for bad in ("0", "-1", "nan"):
        r = runner.invoke(app, ["generate", "a red circle", "--model", str(ckpt), "--out", str(tmp_path), "--shift", bad])
        assert r.exit_code == 2 and "shift" in r.output and "Traceback" not in r.output, (bad, r.output)


def test_jsonl_lines_override_the_command_line(ckpt, tmp_path, spy):
    pf = tmp_path / "p.jsonl"
    pf.write_text("\n".join([
        json.dumps({"prompt": "a red square", "cfg": 1.5, "steps": 1, "negative_prompt": "ugly", "length": "5f",
                    "seed": 4}),
        json.dumps({"prompt": "a blue circle", "length": "9f", "fps": 4, "res": "16"}),
        "a white triangle",
    ]) + "\n")
    recs = _generate("--prompts", pf, "--model", ckpt, "--out", tmp_path / "o", "--seed", 9, "--json",
                     "--cfg", 4, "--steps", 3, "--sampler", "heun", "--length", "1f")
    got = [(c["steps"], c["cfg_scale"], c["method"], c["noise_shape"]) for c in spy["sample"]]
    assert got == [(1, 1.5, "heun", (1, 4, 2, 8, 8)),     # its own cfg, steps, length; CLI sampler
                   (3, 4.0, "heun", (1, 4, 3, 2, 2)),     # CLI cfg/steps; its length 9f, res 16
                   (3, 4.0, "heun", (1, 4, 1, 8, 8))]     # all from the command line (1 frame)
    assert spy["encode"] == [["a red square", "ugly"], ["a blue circle", ""], ["a white triangle", ""]]
    assert [r["seed"] for r in recs] == [4, 9, 9]  # a line's seed, else the command line's


def test_direction_guidance_encodes_the_swapped_prompt_and_passes_it_as_the_contrast(pipe, spy):
    from lingen_model.generation.pipeline import GenerationRequest

    req = pipe.resolve(GenerationRequest("a red circle moving left", num_frames=5, height=16, width=16, steps=1,
                                         direction_guidance=7.5))
    assert req.contrast_prompt == "a red circle moving right" and req.to_dict()["direction_guidance"] == 7.5
    pipe.generate(req)
    (call,) = spy["sample"]
    assert spy["encode"] == [["a red circle moving left", "", "a red circle moving right"]]
    assert call["contrast_scale"] == 7.5 and call["contrast_context"].shape[0] == 1
    assert call["uncond_context"].shape[0] == 1  # the negative prompt's row, not the contrast's


def test_direction_guidance_without_cfg_and_without_a_direction_word(pipe, spy):
    pipe("a red circle moving up", num_frames=1, height=16, width=16, steps=1, cfg_scale=1.0, seed=0)
    from lingen_model.generation.pipeline import GenerationRequest

    out = pipe.generate(pipe.resolve(GenerationRequest("a red circle moving up", num_frames=1, height=16, width=16,
                                                       steps=1, cfg_scale=1.0, direction_guidance=3.0)))
    still = pipe.generate(pipe.resolve(GenerationRequest("a red circle standing still", num_frames=1, height=16,
                                                         width=16, steps=1, direction_guidance=3.0)))
    assert spy["encode"][1] == ["a red circle moving up", "a red circle moving down"]
    assert spy["sample"][1]["uncond_context"] is None and spy["sample"][1]["contrast_context"] is not None
    assert still.request.contrast_prompt is None and spy["sample"][2]["contrast_context"] is None
    assert spy["encode"][2] == ["a red circle standing still", ""]
    assert out.frames.shape == (1, 16, 16, 3)


def test_direction_guidance_default_comes_from_the_checkpoint_and_zero_changes_nothing(ckpt, tmp_path, spy):
    import numpy as np

    from lingen_model.errors import InputError
    from lingen_model.generation.pipeline import GenerationRequest

    p = _with_sampling(ckpt, tmp_path / "guided", {"steps": 2, "cfg_scale": 3.0, "direction_guidance": 4.0})
    base = LinGenPipeline.from_pretrained(ckpt, device="cpu")
    kw = dict(num_frames=5, height=16, width=16, seed=3)
    assert p.resolve(GenerationRequest("a box moving left", **kw)).direction_guidance == 4.0
    off = p.generate(p.resolve(GenerationRequest("a box moving left", direction_guidance=0.0, **kw)))
    plain = base.generate(base.resolve(GenerationRequest("a box moving left", **kw)))
    on = p.generate(p.resolve(GenerationRequest("a box moving left", **kw)))
    assert np.array_equal(off.frames, plain.frames)  # 0 = exactly the sampler without the term
    assert spy["sample"][0]["contrast_context"] is None
    assert spy["sample"][2]["contrast_scale"] == 4.0 and spy["sample"][2]["contrast_context"] is not None
    assert not np.array_equal(on.frames, plain.frames)
    for bad in (-1.0, float("nan"), 1e9):
        with pytest.raises(InputError, match="direction_guidance"):
            p.resolve(GenerationRequest("a box moving left", direction_guidance=bad, **kw))


def test_cfg_max_t_comes_from_the_checkpoint_reaches_the_sampler_and_one_changes_nothing(ckpt, tmp_path, spy):
    from lingen_model.errors import InputError
    from lingen_model.generation.pipeline import GenerationRequest

    p = _with_sampling(ckpt, tmp_path / "interval", {"steps": 3, "cfg_scale": 3.0, "cfg_max_t": 0.5})
    base = _with_sampling(ckpt, tmp_path / "plain", {"steps": 3, "cfg_scale": 3.0})
    kw = dict(num_frames=5, height=16, width=16, seed=3)
    req = p.resolve(GenerationRequest("a box", **kw))
    assert req.cfg_max_t == 0.5 and req.to_dict()["cfg_max_t"] == 0.5
    assert "cfg_max_t" not in base.resolve(GenerationRequest("a box", **kw)).to_dict()  # earlier cache keys kept
    limited = p.generate(req)
    everywhere = p.generate(p.resolve(GenerationRequest("a box", cfg_max_t=1.0, **kw)))
    plain = base.generate(base.resolve(GenerationRequest("a box", **kw)))
    assert [c["cfg_max_t"] for c in spy["sample"]] == [0.5, 1.0, 1.0]
    assert np.array_equal(everywhere.frames, plain.frames)  # 1 = the sampler as before
    assert not np.array_equal(limited.frames, plain.frames)
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(InputError, match="cfg_max_t"):
            p.resolve(GenerationRequest("a box", cfg_max_t=bad, **kw))
    (rec,) = _generate("a red circle", "--model", ckpt, "--out", tmp_path, "--seed", 3, "--json", "--cfg-max-t", 0.25,
                       "--length", "1s")
    assert spy["sample"][-1]["cfg_max_t"] == 0.25 and rec["cfg_max_t"] == 0.25
    r = runner.invoke(app, ["generate", "a red circle", "--model", str(ckpt), "--out", str(tmp_path), "--cfg-max-t", "2"])
    assert r.exit_code == 2 and "cfg_max_t" in r.output and "Traceback" not in r.output
