"""The embedded `lingen-tiny` checkpoint as shipped: it loads offline, generates, and its VAE
reconstructs every frame of a clip longer than any clip its first training stage saw."""
from pathlib import Path

import numpy as np
import torch

WEIGHTS = Path(__file__).resolve().parents[1] / "lingen_model" / "weights" / "lingen-tiny"


def _object_error(video: np.ndarray, rec: np.ndarray) -> np.ndarray:
    """Mean |rec − video| (0–255) over the object pixels of each frame (pixels far from the background)."""
    bg = np.median(video.reshape(-1, 3), axis=0)
    obj = np.abs(video.astype(int) - bg).sum(-1) > 60
    err = np.abs(rec.astype(int) - video.astype(int)).mean(-1)
    return np.array([err[i][obj[i]].mean() if obj[i].any() else np.nan for i in range(len(video))])


def test_shipped_vae_reconstructs_late_frames_as_well_as_early_ones():
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import _to_tensor
    from lingen_model.training.trainer import load_vae

    vae = load_vae(WEIGHTS)
    early, late = [], []
    for s in range(3):
        video, _, _ = make_clip(7_000_000 + s, 33, 128, 128, 8, max_objects=1)
        with torch.no_grad():
            rec = np.asarray(vae.decode_uint8(vae.encode(_to_tensor(video)[None], chunk_frames=4), chunk_frames=4)[0])
        rec = rec.transpose(1, 2, 3, 0) if rec.shape[0] == 3 else rec
        e = _object_error(video, rec)
        early.append(np.nanmean(e[:5]))
        late.append(np.nanmean(e[5:]))
    # frames 5+ come from latent frames 2+, which the first VAE stage never trained on
    assert np.mean(late) < 25, (early, late)
    assert np.mean(late) < 1.6 * np.mean(early) + 5, (early, late)


def test_shipped_model_generates_offline(monkeypatch):
    from lingen_model.generation.pipeline import LinGenPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = LinGenPipeline.from_pretrained(None)
    frames = pipe("a red circle moving to the right", num_frames=5, steps=2, seed=0)
    assert frames.shape == (5, 128, 128, 3) and frames.dtype == np.uint8
    assert frames.std() > 0  # not a blank frame
    assert pipe.config["training"]["steps"] >= 3000


def test_shipped_model_gets_the_colour_right_at_cheap_settings():
    """The shipped weights still follow the text: 8 built-in prompts, tuning seeds 3,000,003 + i, 4 s
    (33 frames) at 16 steps with the default sampler settings. Measured when this test was written:
    4 of 8 colour passes on these seeds (6 of 8 on the test seeds); a model that ignores the prompt
    gets ~1 in 8 (8 colours). The threshold, 3 of 8, leaves one clip of margin below the measurement."""
    from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
    from lingen_model.shapes.judge import score_clip
    from lingen_model.shapes.prompts import EVAL_PROMPTS

    pipe = LinGenPipeline.from_pretrained(None, device="cpu")
    passes = []
    for i, prompt in enumerate(EVAL_PROMPTS[:8]):
        out = pipe.generate(GenerationRequest(prompt, num_frames=33, steps=16, seed=3_000_003 + i))
        passes.append(bool(score_clip(out.frames, prompt, pipe.native["fps"])["passed"]["color"]))
    assert sum(passes) >= 3, passes
