"""recipes/lingen-tiny/proto_rerank.py (session 36 prototype, issue 14): the diffusion-classifier margin must prefer
the caption that explains a clip, and the patched pipeline must keep the candidate with the lowest margin, sample
as before without a contrast caption, and leave the pipeline unpatched after the test."""
import pytest
import torch

from ckpt_utils import make_tiny_checkpoint
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from support.recipes import load_recipe


def _believer(a, b):
    """A toy denoiser that believes the clean clip is ``a`` under a caption whose tokens are positive and ``b``
    under one whose tokens are negative: the exact rectified-flow velocity (z − x)/t of that belief."""
    def f(z, t, c, m):
        x = a if float(c.sum()) > 0 else b
        return (z - x) / t.view(-1, 1, 1, 1, 1)
    return f


def test_the_margin_prefers_the_caption_that_explains_the_clip():
    probe = load_recipe("proto_rerank")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 2, 3, 4, 4, generator=g), torch.randn(1, 2, 3, 4, 4, generator=g)
    f = _believer(a, b)
    p, px = torch.ones(1, 3, 8), -torch.ones(1, 3, 8)
    m = torch.ones(1, 3, dtype=torch.bool)
    assert probe.direction_margin(f, a, p, m, px, m) < -0.1   # the prompt explains a exactly
    assert probe.direction_margin(f, b, p, m, px, m) > 0.1    # its contrast explains b
    assert probe.direction_margin(f, a, p, m, px, m) == pytest.approx(-probe.direction_margin(f, a, px, m, p, m))


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_mod.LinGenPipeline, "generate", pipeline_mod.LinGenPipeline.generate)
    monkeypatch.setattr(pipeline_mod.LinGenPipeline, "denoise", pipeline_mod.LinGenPipeline.denoise)
    return LinGenPipeline.from_pretrained(make_tiny_checkpoint(tmp_path / "ckpt"), device="cpu")


def test_the_patched_pipeline_keeps_the_candidate_with_the_lowest_margin(pipe, monkeypatch):
    """Candidate j is the clip of seed + 1,000,003·j (the same noise as an unpatched request with that seed); with
    the margins forced, the lowest one's clip comes back; a prompt without a direction word samples as before."""
    probe = load_recipe("proto_rerank")
    kw = dict(num_frames=9, direction_guidance=2.0)
    clips = [pipe.generate(pipe.resolve(GenerationRequest("a red circle moving left", seed=7 + 1_000_003 * j, **kw)))
             .frames for j in range(3)]
    still = pipe.generate(pipe.resolve(GenerationRequest("a red circle", seed=7, **kw))).frames
    assert not (clips[0] == clips[1]).all()
    probe.install(k=3)
    for forced, want in (([0.5, -1.0, 0.2], 1), ([-1.0, 0.0, 1.0], 0), ([0.3, 0.2, 0.1], 2)):
        seq = iter(forced)
        monkeypatch.setattr(probe, "direction_margin", lambda *a, **k: next(seq))
        out = pipe.generate(GenerationRequest("a red circle moving left", seed=7, **kw)).frames
        assert (out == clips[want]).all()
        assert next(seq, None) is None  # one margin a candidate
    monkeypatch.setattr(probe, "direction_margin", lambda *a, **k: pytest.fail("no direction: nothing to score"))
    assert (pipe.generate(GenerationRequest("a red circle", seed=7, **kw)).frames == still).all()
    with pytest.raises(ValueError, match="RERANK_K"):
        probe.install(k=0)
