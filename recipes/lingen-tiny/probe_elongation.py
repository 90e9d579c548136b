"""Probe (session 33, issue 14): is a failing circle stretched, and along which axis?

Session 32 found that 4 s circles fail the judge's shape test mostly when they move right, left or up, and seldom
when they move down (`tally_by_motion.py`). The judge's shape test uses moment invariants of the whitened blob
(`lingen_model.shapes.judge._moment_invariants`), so a stretched circle is read as a circle; what fails it is a
corner-like fourth-order moment (a rounded square). This probe measures, per clip saved by
``lingen eval --save-dir D --json F``, the named object's largest blob in each frame (the judge's own colour labels,
confusable hues merged): its stretch ``sqrt(l_max / l_min)`` of the pixel covariance, the log2 ratio of its
horizontal to vertical variance (> 0: wider than tall), and its area in pixels of the judge's working size. It
prints medians per (shape, motion), split by the judge's shape verdict, so a smear along the motion shows as
log2 ratio > 0 for left/right and < 0 for up/down.

    python recipes/lingen-tiny/probe_elongation.py runs/p33/4k-dg10.json runs/p33/clips-4k-dg10

Raises SystemExit with a one-line message when the JSON is not an eval JSON or a clip file is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from lingen_model.io.video import read_mp4
from lingen_model.shapes import judge, world
from lingen_model.shapes.language import parse_prompt


def blob_geometry(frames: np.ndarray, color: str) -> np.ndarray:
    """Per frame with the named colour: (stretch, log2 var_x / var_y, area px) of its largest blob.

    Method: second moments of the blob's pixel coordinates (plus a pixel's own variance 1/12, as the judge's
    ``_moment_invariants``), on the torus, after the judge's own downsampling, colour labels and hue merging.

    Args:
        frames: uint8 T×H×W×3 (pixels).
        color: a ``world.COLORS`` name.

    Returns:
        float64 N×3 for the N frames where the colour has a blob of at least 4 pixels: stretch
        ``sqrt(l_max / l_min)`` (1 = round, unitless), ``log2(var_x / var_y)`` (> 0: wider than tall) and area in
        pixels at the judge's working size (frames downsampled to ~64 px on the short side).

    Raises:
        ValueError: ``color`` is not a world colour.
    """
    small, _ = judge._downsample(frames)
    labels = judge.merge_confusable(judge.classify_pixels(small)[0])
    T, h, w = labels.shape
    target = list(world.COLORS).index(color)
    comp = judge.connected_components(np.where(labels == target, 0, -1).astype(np.int8))
    rows = []
    for t in range(T):
        roots = comp[t].reshape(-1)
        pix = np.flatnonzero(roots >= 0)
        if pix.size < 4:
            continue
        ids, counts = np.unique(roots[pix], return_counts=True)
        sel = pix[roots[pix] == ids[counts.argmax()]]
        yy, xx = np.divmod(sel, w)
        dx = judge._wrap(xx - xx[0], w)  # offsets on the torus around the blob's first pixel (np.cov centres them)
        dy = judge._wrap(yy - yy[0], h)
        cov = np.cov(np.stack([dx, dy])) + np.eye(2) / 12.0
        ev = np.linalg.eigvalsh(cov)
        rows.append((np.sqrt(ev[1] / max(ev[0], 1e-9)), np.log2(cov[0, 0] / cov[1, 1]), sel.size))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file", type=Path)
    ap.add_argument("save_dir", type=Path)
    ap.add_argument("--shape", default="circle", help="only prompts naming this shape (default: circle)")
    args = ap.parse_args(argv)
    try:
        clips = json.loads(args.json_file.read_text())["clips"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(f"{args.json_file}: not a readable `lingen eval --json` file ({exc})")
    cells: dict[tuple[str, bool], list[np.ndarray]] = defaultdict(list)
    for i, clip in enumerate(clips):
        spec = parse_prompt(clip["prompt"])
        if len(spec.objects) != 1 or spec.objects[0].shape != args.shape:
            continue
        found = sorted(args.save_dir.glob(f"{i:03d}-*.mp4"))
        if not found:
            sys.exit(f"{args.save_dir}: no clip {i:03d}-*.mp4 for {clip['prompt']!r}")
        frames, _ = read_mp4(found[0])
        geo = blob_geometry(frames, spec.objects[0].color)
        if len(geo):
            cells[(spec.objects[0].motion, bool(clip["passed"]["shape"]))].append(np.median(geo, axis=0))
    print(f"{args.json_file.name}: {args.shape}s, medians over clips of per-clip medians over frames")
    print(f"  {'motion':6} {'shape':5} {'n':>3} {'stretch':>8} {'log2 wx/wy':>10} {'area px':>8}")
    for motion in world.BASIC_MOTIONS:
        for ok in (True, False):
            rows = cells.get((motion, ok))
            if rows:
                m = np.median(np.stack(rows), axis=0)
                print(f"  {motion:6} {'pass' if ok else 'fail':5} {len(rows):3d} {m[0]:8.2f} {m[1]:10.2f} {m[2]:8.0f}")


if __name__ == "__main__":
    main()
