"""recipes/lingen-tiny/proto_dg_schedule.py (session 37 prototype, issue 14): with both factors 1 the 4 s sampler must
give the library's clip bit for bit; with both 0 the push must vanish (the clip of direction guidance 0); with the
factors apart the clip must change; the pipeline must be unpatched after the test."""
import numpy as np
import pytest

from ckpt_utils import make_tiny_checkpoint
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from support.recipes import load_recipe


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_mod, "sample", pipeline_mod.sample)
    return LinGenPipeline.from_pretrained(make_tiny_checkpoint(tmp_path / "ckpt"), device="cpu")


def test_the_factors_scale_the_push(pipe):
    p = load_recipe("proto_dg_schedule")
    kw = dict(num_frames=9, cache="taylor", steps=6, seed=5)
    plain = pipe.generate(GenerationRequest("a red circle moving left", direction_guidance=4.0, **kw)).frames
    off = pipe.generate(GenerationRequest("a red circle moving left", direction_guidance=0.0, **kw)).frames
    assert not (plain == off).all()
    sample = pipeline_mod.sample
    runs = {}
    for factors in ((1.0, 1.0), (0.0, 0.0), (3.0, 1.0)):
        pipeline_mod.sample = sample
        p.install(0.5, *factors)
        runs[factors] = pipe.generate(GenerationRequest("a red circle moving left", direction_guidance=4.0, **kw)).frames
    assert (runs[(1.0, 1.0)] == plain).all()
    assert np.abs(runs[(0.0, 0.0)].astype(int) - off).max() <= 1  # the prompts' padding differs by the contrast row
    assert not (runs[(3.0, 1.0)] == plain).all()
