"""Probe (session 36, issue 14): in the first sampling steps, where is the object the model predicts?

Session 35 found that the mirror-trained stage 4n fades objects because some clips hold almost none from the first
frame (``probe_fade.py``): the layout fails, not the detail. One explanation is that a model pushed towards mirror
symmetry hedges between an object and its mirror image, predicting two half-strength objects at mirrored places
that cancel into nothing. This probe follows the prediction of the clean clip through sampling.

For each model, prompt and seed the clip is sampled with the model's defaults while every conditional denoiser
output is recorded; at the chosen steps the predicted clean latent ``x̂₀ = z_t − t · v(z_t, t, p)`` (rectified flow,
``z_t = (1 − t) x + t ε``) is decoded by the VAE, and in pixels two numbers are read per frame:

- ``contrast``: ``probe_fade.object_contrast``, the 99.5th percentile of ``|pixel − frame median|`` summed over RGB
  (0–765): how much object there is;
- ``mirror``: ``Σ D · M D / Σ D²`` over the frame, ``D`` the deviation map ``|pixel − frame median|`` (summed over
  RGB) and ``M`` the left–right flip: 1 for a deviation map that is its own mirror image (an object centred, or two
  alike at mirrored places), near 0 for one object away from the centre line.

Both are averaged over the clip's frames. Prints one row a clip and step.

    python recipes/lingen-tiny/probe_layout.py recipes/lingen-tiny/state-4k runs/lingen-tiny-4n/export

Measured (session 36, ``probe_fade``'s four prompts × seeds 11, 12; docs/eval/README.md, "Session 36"): no mirrored
twin. 4n's white square (seed 11) is drawn at steps 1–2 as strongly as 4k's (contrast 365 / 366 against 367 / 408,
mirror 0.54 / 0.20), then erased between t 0.95 and 0.78 (205 at step 4 with mirror 0.04, one object off the centre
line; 63 at step 8; 3 in the final clip), while 4k's grows to 617. The green circles on gray hold no object in either
model's prediction down to t 0.78 (contrast 1–4) and are drawn later, strongly by 4k (final 167 / 186), faintly by
4n (19 / 65). The fading happens at middle and low noise, not in the layout steps above t 0.84.

Raises what ``LinGenPipeline.from_pretrained`` raises for a missing model.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_fade import PROMPTS, deviation_map, object_contrast  # noqa: E402  (the sibling probe)

#: Sampling steps (0-based) whose predicted clean clip is decoded: the layout is decided in the first few.
STEPS = (0, 1, 2, 4, 8)


def mirror_score(frames: np.ndarray) -> np.ndarray:
    """Per-frame mirror symmetry of a T×H×W×3 uint8 clip's deviation from its median colour, shape ``[T]``:
    ``Σ D · flip(D) / Σ D²`` with ``D`` = ``probe_fade.deviation_map`` and ``flip`` the reversal of the width axis
    (1: symmetric about the vertical centre line; 0 for a frame without deviation). Raises ValueError for another
    shape."""
    d = deviation_map(frames)
    num = (d * d[:, :, ::-1]).sum((1, 2))
    den = (d * d).sum((1, 2))
    return np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)


class _Recorder:
    """Wraps a denoiser; keeps ``(z, t, v)`` of the conditional row of every call with a guided batch (rows
    [unconditional, conditional]: ``flow.sample``'s order), i.e. one record a sampling step. Every other attribute
    is the denoiser's."""

    def __init__(self, denoiser):
        self._denoiser, self.records = denoiser, []

    def __call__(self, z, t, *args, **kwargs):
        v = self._denoiser(z, t, *args, **kwargs)
        if z.shape[0] >= 2:
            self.records.append((z[1:2].clone(), float(t.flatten()[1 if t.numel() > 1 else 0]), v[1:2].clone()))
        return v

    def __getattr__(self, name):
        return getattr(self._denoiser, name)


def predicted_clips(pipe, prompt: str, seed: int, steps=STEPS) -> tuple[list[tuple[int, float, np.ndarray]], np.ndarray]:
    """Sample ``prompt`` (33 frames, the model's defaults) and decode the predicted clean clip at ``steps``.

    Returns ([(step, t, T×H×W×3 uint8 frames of x̂₀)], the final clip's frames). Needs CFG on (the defaults of
    lingen-tiny); raises ValueError when no guided call was recorded."""
    inner = pipe.denoiser
    rec = _Recorder(inner)
    pipe.denoiser = rec
    try:
        final = pipe(prompt, num_frames=33, seed=seed)
    finally:
        pipe.denoiser = inner
    if not rec.records:
        raise ValueError("no guided denoiser call was recorded (CFG off?)")
    out = []
    for k in steps:
        if k < len(rec.records):
            z, t, v = rec.records[k]
            x0 = (z.float() - t * v.float())
            out.append((k, t, pipe.decode(x0)))
    return out, final


def main() -> None:
    from lingen_model.generation.pipeline import LinGenPipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    for name in a.models:
        pipe = LinGenPipeline.from_pretrained(name, device="cpu")
        print(f"== {name}")
        for p in PROMPTS:
            for s in a.seeds:
                snaps, final = predicted_clips(pipe, p, s)
                cells = [f"step {k} (t {t:.2f}): {object_contrast(f).mean():5.0f} / {mirror_score(f).mean():.2f}"
                         for k, t, f in snaps]
                print(f"{p[:40]:40s} seed {s}: " + " | ".join(cells)
                      + f" | final: {object_contrast(final).mean():5.0f} / {mirror_score(final).mean():.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
