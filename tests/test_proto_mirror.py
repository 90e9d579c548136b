"""recipes/lingen-tiny/proto_mirror.py (session 34 prototype, issue 14): sampling made mirror-equivariant by frame
averaging. Checked against the plain formula: one Euler step from t = 1 must land on
``noise − ½ [v(noise, p) + M v(M noise, mirror p)]`` with ``v`` the denoiser called row by row; with CFG, direction
guidance and step caching the two rows the sampler carries must stay mirror images of each other."""
import pytest
import torch

from ckpt_utils import make_tiny_checkpoint
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import LinGenPipeline
from support.recipes import load_recipe


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return LinGenPipeline.from_pretrained(make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny"), device="cpu")


@pytest.fixture
def mirror(monkeypatch):
    mod = load_recipe("proto_mirror")
    monkeypatch.setattr(LinGenPipeline, "generate", LinGenPipeline.generate)  # restored after the test
    monkeypatch.setattr(LinGenPipeline, "denoise", LinGenPipeline.denoise)
    return mod


@pytest.mark.parametrize("prompt,expected", [
    ("a red circle moving left", "a red circle moving right"),
    ("a cube moving from left to right", "a cube moving from right to left"),
    ("Rightward: a BLUE square heading LEFTWARDS", "Leftward: a BLUE square heading RIGHTWARDS"),
    ("a green triangle moving up", "a green triangle moving up"),  # vertical prompts are their own mirror
    ("a bright circle", "a bright circle"),  # "bright" holds "right" but is not the word
])
def test_mirror_prompt_swaps_the_horizontal_words_only(mirror, prompt, expected):
    assert mirror.mirror_prompt(prompt) == expected
    assert mirror.mirror_prompt(expected) == prompt


@pytest.mark.parametrize("prompt,expected", [
    ("a red ball orbiting clockwise", "a red ball orbiting counterclockwise"),
    ("Clockwise, a box loops around", "Counterclockwise, a box loops around"),
    ("a square orbiting anticlockwise, moving left", "a square orbiting clockwise, moving right"),
])
def test_mirror_prompt_reverses_the_sense_of_rotation(mirror, prompt, expected):
    assert mirror.mirror_prompt(prompt) == expected


def test_pair_average_is_the_two_element_group_mean():
    mod = load_recipe("proto_mirror")
    v = torch.randn(6, 3, 2, 4, 5, dtype=torch.float64)
    out = mod.pair_average(v)
    for i in range(0, 6, 2):
        mean = (v[i] + v[i + 1].flip(-1)) / 2
        torch.testing.assert_close(out[i], mean)
        torch.testing.assert_close(out[i + 1], mean.flip(-1))
    plain = mod.pair_average(v, average=False)  # above MIRROR_MAX_T: the first row's own velocity, mirrored
    torch.testing.assert_close(plain[0::2], v[0::2])
    torch.testing.assert_close(plain[1::2], v[0::2].flip(-1))
    with pytest.raises(ValueError, match="pairs"):
        mod.pair_average(v[:3])


def test_one_euler_step_is_the_frame_average_of_the_denoiser(pipe, mirror):
    mirror.install()
    noise = pipe.prepare_latents(5, 32, 48, seed=7)
    p, m = "a red circle moving right", "a red circle moving left"
    pipe._mirror_texts = (m, None)
    ctx, mask = pipe.encode_prompt([p])
    with torch.no_grad():
        z = pipe.denoise(noise, ctx, mask, steps=1, cfg_scale=1.0, shift=1.0)
        mctx, mmask = pipe.encode_prompt([m])
        t = torch.ones(1)
        v = pipe.denoiser(noise, t, ctx, mask)
        v_m = pipe.denoiser(noise.flip(-1), t, mctx, mmask)
    del pipe._mirror_texts
    assert z.shape == noise.shape
    torch.testing.assert_close(z, noise - 0.5 * (v + v_m.flip(-1)), rtol=1e-5, atol=1e-5)
    assert (v - v_m.flip(-1)).abs().max() > 1e-3  # the tiny denoiser is not equivariant itself: the check has teeth


def test_rows_stay_mirrored_with_cfg_contrast_and_cache(pipe, mirror, monkeypatch):
    mirror.install()
    seen = []
    real_sample = pipeline_mod.sample

    def spy(velocity_fn, noise, steps, **kw):
        out = real_sample(velocity_fn, noise, steps, **kw)
        seen.append((noise, out, kw))
        return out

    monkeypatch.setattr(pipeline_mod, "sample", spy)
    req = pipeline_mod.GenerationRequest(prompt="a red circle moving right", num_frames=9, height=32, width=32,
                                         steps=4, cfg_scale=3.0, seed=3, cache="taylor", direction_guidance=5.0)
    frames = pipe.generate(req).frames
    assert frames.shape == (9, 32, 32, 3)
    (noise, out, kw), = seen
    assert noise.shape[0] == 2 and torch.equal(noise[1], noise[0].flip(-1))
    assert kw["contrast_context"].shape[0] == 2 and kw["context"].shape[0] == 2
    torch.testing.assert_close(out[1], out[0].flip(-1), rtol=1e-5, atol=1e-5)
