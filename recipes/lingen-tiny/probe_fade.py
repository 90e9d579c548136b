"""Probe (session 35, issue 14): does a faded object fade over the clip, or is it missing from the first frame?

For each prompt and seed, both models sample the same 4 s clip (33 frames, the model's defaults) and the object's
contrast is read per frame as the 99.5th percentile of ``|pixel − frame median|`` (summed over RGB, 0–765): about
the object's brightest pixels against the background. Prints the mean profile at frames 0, 8, 16, 24, 32 and the
mean contrast of every clip.

    python recipes/lingen-tiny/probe_fade.py recipes/lingen-tiny/state-4k runs/lingen-tiny-4n/export

Measured (session 35, the four prompts below × seeds 11, 12): 4k's profile is flat near 356, 4n's flat near 245,
and 4n's per-clip means are 3, 19 and 65 for three of the eight clips (4k: 617, 167, 186): the faded objects are
missing from the first frame on, not lost on the way — the layout, not the detail.

Raises what ``LinGenPipeline.from_pretrained`` raises for a missing model.
"""
import argparse

import numpy as np

PROMPTS = ("a blue square moving up on a dark blue background", "a white square moving left on a dark blue background",
           "a green circle moving left on a gray background", "a red circle standing still on a black background")


def deviation_map(frames: np.ndarray) -> np.ndarray:
    """``|pixel − frame median|`` summed over RGB (0–765) of a T×H×W×3 uint8 clip, float64 T×H×W: where the frame
    differs from its background colour. Raises ValueError for another shape."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be T×H×W×3, got {frames.shape}")
    f = frames.astype(np.float64)
    median = np.median(f.reshape(f.shape[0], -1, 3), axis=1)[:, None, None, :]
    return np.abs(f - median).sum(-1)


def object_contrast(frames: np.ndarray) -> np.ndarray:
    """Per-frame contrast of a T×H×W×3 uint8 clip: the 99.5th percentile over pixels of :func:`deviation_map`
    (0–765), shape ``[T]``. Raises ValueError for another shape."""
    d = deviation_map(frames)
    return np.percentile(d.reshape(d.shape[0], -1), 99.5, axis=1)


def main() -> None:
    from lingen_model.generation.pipeline import LinGenPipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    a = ap.parse_args()
    for name in a.models:
        pipe = LinGenPipeline.from_pretrained(name, device="cpu")
        prof = np.array([object_contrast(pipe(p, num_frames=33, seed=s)) for p in PROMPTS for s in a.seeds])
        print(f"{name}: profile at frames 0, 8, 16, 24, 32: {prof.mean(0)[[0, 8, 16, 24, 32]].round(0)}; "
              f"per clip: {prof.mean(1).round(0)}")


if __name__ == "__main__":
    main()
