"""recipes/lingen-tiny/proto_multicontrast.py (session 37 prototype, issue 14): the other-direction captions must be
the opposite first, then the perpendicular ones; a mixture that is all opposite must sample the library's clip bit
for bit; a mixture with the perpendicular captions must change it; a prompt without a direction word must sample as
before; the pipeline must be unpatched after the test."""
import pytest

from ckpt_utils import make_tiny_checkpoint
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from support.recipes import load_recipe


def test_other_directions_lists_the_opposite_first():
    p = load_recipe("proto_multicontrast")
    assert p.other_directions("a red circle moving left", still=False) == [
        "a red circle moving right", "a red circle moving up", "a red circle moving down"]
    assert p.other_directions("A Square moving Up on gray", still=True) == [
        "A Square moving Down on gray", "A Square moving Left on gray", "A Square moving Right on gray",
        "A Square standing still on gray"]
    assert p.other_directions("a red circle standing still") is None
    assert p.other_directions("a circle moving left, a square moving up") is None  # two directions: library's


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_mod.LinGenPipeline, "generate", pipeline_mod.LinGenPipeline.generate)
    monkeypatch.setattr(pipeline_mod, "sample", pipeline_mod.sample)
    return LinGenPipeline.from_pretrained(make_tiny_checkpoint(tmp_path / "ckpt"), device="cpu")


def test_the_mixture_reduces_to_the_library_and_changes_with_the_other_captions(pipe, monkeypatch):
    p = load_recipe("proto_multicontrast")
    kw = dict(num_frames=9, direction_guidance=4.0, cache="taylor", steps=6)
    plain = pipe.generate(GenerationRequest("a red circle moving left", seed=3, **kw)).frames
    still = pipe.generate(GenerationRequest("a red circle", seed=3, **kw)).frames
    generate, sample = pipeline_mod.LinGenPipeline.generate, pipeline_mod.sample
    p.install(weights=(1.0, 0.0, 0.0))
    assert (pipe.generate(GenerationRequest("a red circle moving left", seed=3, **kw)).frames == plain).all()
    monkeypatch.setattr(pipeline_mod.LinGenPipeline, "generate", generate)
    monkeypatch.setattr(pipeline_mod, "sample", sample)
    p.install(weights=(0.5, 0.25, 0.25))
    mixed = pipe.generate(GenerationRequest("a red circle moving left", seed=3, **kw)).frames
    assert not (mixed == plain).all()
    assert (pipe.generate(GenerationRequest("a red circle", seed=3, **kw)).frames == still).all()
    with pytest.raises(ValueError, match="sum to 1"):
        p.install(weights=(0.5, 0.25))
