"""Probe (session 38, issue 14): how strongly the VAE's latents draw each object colour on each background.

For fresh world clips (seeds 9,300,000 + i, 128×128, 9 frames, one object, one-speed movers), each clip's object
contrast is ``proto_contrast_weight.object_contrast``: the RMS, over the latent voxels the object touches and the
channels, of the normalised latents minus the background's per-channel median (units: the sampling noise's
standard deviation, 1). Prints the median per background × colour and, with ``--eval``, each scene's pass rates in
``lingen eval`` JSON files beside its contrast, and the rank correlation (Spearman) over the scenes.

    python recipes/lingen-tiny/probe_latent_contrast.py [--clips 480] [--eval A.json B.json ...]

Raises what ``load_vae`` raises for a missing or malformed VAE, ValueError for an eval JSON without clips.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from lingen_model.shapes.clips import make_clip, object_mask
from lingen_model.shapes.language import parse_prompt
from lingen_model.training.data import _to_tensor as frames_to_tensor  # uint8 T×H×W×3 → 3×T×H×W in [-1, 1]
from lingen_model.training.object_weight import latent_mask
from lingen_model.training.trainer import load_vae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proto_contrast_weight import object_contrast  # noqa: E402
from tally_by_motion import read_eval_clips  # noqa: E402

LINES = ("motion", "unity", "shape", "motion_consistency")


def encoded_world_clips(vae, clips: int, seed: int = 9_300_000, batch: int = 16):
    """Yield ``(latents B×C×T'×h×w, object voxels bool B×1×T'×h×w, scene specs)`` for ``clips`` world clips (seeds
    ``seed`` + i, 9 frames, 128×128 pixels, one object), encoded ``batch`` clips at a time by ``vae`` (normalised
    latents). Raises what ``vae.encode`` raises (e.g. RuntimeError for a VAE that does not take 3-channel video)."""
    for lo in range(0, clips, batch):
        drawn = [make_clip(seed + i, 9, 128, 128, 8.0, max_objects=1, entry_prob=1.0)
                 for i in range(lo, min(clips, lo + batch))]
        video = torch.stack([frames_to_tensor(f) for f, _, _ in drawn])
        masks = torch.stack([torch.from_numpy(object_mask(f, s)).float()[None] for f, _, s in drawn])
        with torch.no_grad():
            latents = vae.encode(video)
        yield latents, latent_mask(masks, vae.spatial_factor, vae.temporal_factor) > 0, [s for _, _, s in drawn]


def scene_contrast(vae, clips: int, seed: int = 9_300_000, batch: int = 16) -> dict[tuple[str, str], list[float]]:
    """(background, colour) → the object contrasts (normalised-latent units, noise std 1) of the clips of
    :func:`encoded_world_clips`; clips whose object leaves no latent voxel are left out. Raises what ``vae.encode``
    raises."""
    out: dict[tuple[str, str], list[float]] = {}
    for latents, objects, scenes in encoded_world_clips(vae, clips, seed, batch):
        for s, v in zip(scenes, object_contrast(latents, objects).tolist()):
            if np.isfinite(v):
                out.setdefault((s.background, s.objects[0].color), []).append(v)
    return out


def spearman(x, y) -> float:
    """Spearman's rank correlation (unitless, in [-1, 1]) of two equal-length sequences (average ranks for ties); NaN
    when either is constant. Raises ValueError (numpy's) for sequences of different lengths."""
    def ranks(a):
        a = np.asarray(a, float)
        order = a.argsort()
        r = np.empty(len(a))
        r[order] = np.arange(len(a))
        for v in np.unique(a):  # ties share their mean rank
            r[a == v] = r[a == v].mean()
        return r
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="lingen_model/weights/lingen-tiny")
    ap.add_argument("--clips", type=int, default=480)
    ap.add_argument("--eval", nargs="*", type=Path, default=[])
    a = ap.parse_args()
    contrast = {k: float(np.median(v)) for k, v in scene_contrast(load_vae(a.vae), a.clips).items()}
    backgrounds = sorted({b for b, _ in contrast})
    colours = sorted({c for _, c in contrast})
    print(f"median object contrast of {a.clips} world clips (normalised latents; noise std 1)")
    print("background  " + " ".join(f"{c:>7s}" for c in colours))
    for b in backgrounds:
        print(f"{b:11s} " + " ".join(f"{contrast.get((b, c), float('nan')):7.2f}" for c in colours))
    if not a.eval:
        return
    by_scene: dict[tuple[str, str], list[dict]] = {}
    for clip in (c for path in a.eval for c in read_eval_clips(path)):
        target = parse_prompt(clip["prompt"])  # the world's own reading of the prompt
        if len(target.objects) == 1 and target.background is not None:
            by_scene.setdefault((target.background, target.objects[0].color), []).append(clip)
    scenes = sorted((k for k in by_scene if k in contrast), key=contrast.get)
    print(f"\n{'scene':22s} contrast   n  " + "  ".join(f"{x[:11]:>11s}" for x in LINES))
    for k in scenes:
        cl = by_scene[k]
        print(f"{k[0] + ' / ' + k[1]:22s} {contrast[k]:8.2f} {len(cl):3d}  "
              + "  ".join(f"{sum(c['passed'][x] for c in cl):5d} of {len(cl):3d}" for x in LINES))
    x = [contrast[k] for k in scenes]
    print("Spearman over scenes: " + ", ".join(
        f"{ln} {spearman(x, [np.mean([c['passed'][ln] for c in by_scene[k]]) for k in scenes]):+.2f}" for ln in LINES))


if __name__ == "__main__":
    main()
