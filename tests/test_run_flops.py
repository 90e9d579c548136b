"""``estimate.run_flops`` (the time estimate ``lingen generate`` prints before long clips) against
the denoiser calls a real sampling run makes: a spy on the denoiser records each call's batch and
latent frames, and the FLOP model of those calls must sum to the estimate — with all frames at
once, staggered (whole clip and windowed), with direction guidance's contrast batch, with CFG 1,
and with TaylorSeer caching (full calls as the run reports them)."""
import pytest

from ckpt_utils import make_tiny_checkpoint
from lingen_model.bench.flops import denoiser_flops
from lingen_model.generation.estimate import run_flops
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return LinGenPipeline.from_pretrained(make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny"), device="cpu")


@pytest.mark.parametrize("fields", [
    dict(),
    dict(cfg_scale=1.0),
    dict(direction_guidance=4.0),
    dict(stagger=0.5),
    dict(stagger=0.3, stagger_context=1, direction_guidance=4.0),
    dict(stagger=0.5, stagger_context=0, cfg_scale=1.0),
    dict(cache="taylor", steps=6, direction_guidance=4.0),
    dict(cache="taylor", steps=6),
    dict(method="heun"),
    dict(stagger=0.3, stagger_context=1, direction_guidance=4.0, head=2),
])
def test_run_flops_is_the_sum_over_the_denoiser_calls_of_a_run(pipe, monkeypatch, fields):
    calls = []
    real = pipe.denoiser.forward

    def spy(latents, t, *args, **kw):
        calls.append((latents.shape[0], latents.shape[2]))
        return real(latents, t, *args, **kw)

    monkeypatch.setattr(pipe.denoiser, "forward", spy)
    req = pipe.resolve(GenerationRequest("a red circle moving left", num_frames=25, height=32, width=48, seed=1,
                                         **{"steps": 3, "cfg_scale": 3.0, **fields}))
    out = pipe.generate(req)
    cfg = pipe.denoiser.config
    h, w = req.height // pipe.vae.config.spatial_factor, req.width // pipe.vae.config.spatial_factor
    est = run_flops(cfg, req.num_frames, req.height, req.width, req.steps, cfg_batch=2 if req.cfg_scale != 1 else 1,
                    heun=req.method == "heun", vae_cfg=pipe.vae.config, cache=req.cache, stagger=req.stagger,
                    stagger_context=req.stagger_context, contrast=req.contrast_prompt is not None, head=req.head,
                    head_steps=req.head_steps, head_cache=req.head_cache)
    if req.cache == "none":
        want = sum(denoiser_flops(cfg, (cfg.in_channels, frames, h, w), batch=b).total for b, frames in calls)
        if req.stagger > 0:  # the windows really differ in size when a context is set
            assert len({f for _, f in calls}) > 1 or req.stagger_context is None
        if req.head:  # the head's calls (its 2 latent frames, the checkpoint's 2 short-clip steps) are counted
            assert sum(1 for _, f in calls if f == 2) >= req.head_steps
    else:  # TaylorSeer: cached calls are free; every full call at the batch of the run's full calls
        full_batch = (2 if req.cfg_scale != 1 else 1) + (req.contrast_prompt is not None)
        want = out.full_calls * denoiser_flops(cfg, (cfg.in_channels, 7, h, w), batch=full_batch).total
        assert 0 < out.full_calls < req.steps
    assert est == want
