"""Probe (session 29, issue 14): an object's speed, second by second, in a clip of one object of a named colour.

Tracks the centroid of the pixels the judge names with that colour (``judge.classify_pixels``) along one axis on the
torus (circular mean, so an object across the edge is one
position), and prints the median frame step, the frame steps around given times
(``|`` before the first frame of each 4-frame latent group) and the speed summed over each second, in frame extents
per second (docs/eval/README.md, "Session 29")::

    python recipes/lingen-tiny/probe_speed_track.py CLIP.mp4 red y 8.1,21.1

Arguments: the mp4, the object's colour (a key of ``world.COLORS``), the axis of the motion (``x`` or ``y``), times
in seconds (comma-separated; may be empty).
"""
import sys

import numpy as np

from lingen_model.io.video import read_mp4
from lingen_model.shapes.judge import _wrap, classify_pixels
from lingen_model.shapes.world import COLORS


def color_track(frames: np.ndarray, color: str, axis: str) -> np.ndarray:
    """uint8 T×H×W×3 frames → T positions in [0, 1) along ``axis`` (NaN where no pixel of ``color``)."""
    size = frames.shape[1] if axis == "y" else frames.shape[2]
    mask = classify_pixels(frames)[0] == list(COLORS).index(color)
    out = np.full(len(frames), np.nan)
    for f in range(len(frames)):
        yy, xx = np.nonzero(mask[f])
        c = yy if axis == "y" else xx
        if len(c):
            ang = c / size * 2 * np.pi
            out[f] = (np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) % (2 * np.pi)) / (2 * np.pi)
    return out


def main(path: str, color: str, axis: str, times: str) -> None:
    """Print the track of ``color`` along ``axis`` in the mp4 at ``path``: median frame step, the steps (% of the
    frame) around each time in ``times`` (seconds, comma-separated) and the speed of each second (frame extents per
    second). Raises what ``read_mp4`` raises for a missing or undecodable file, KeyError for an unknown colour."""
    frames, fps = read_mp4(path)
    steps = _wrap(np.diff(color_track(frames, color, axis)), 1.0)  # frame-to-frame steps on the torus
    print(f"{frames.shape[0]} frames at {fps} fps; median frame step {np.nanmedian(steps):.4f}")
    for t0 in [float(x) for x in times.split(",") if x]:
        f0 = int(round(t0 * fps))
        row = " ".join(("|" if (f - 1) % 4 == 3 else " ") + f"{steps[f] * 100:+5.1f}"
                       for f in range(max(0, f0 - 8), min(len(steps), f0 + 8)))
        print(f"{t0:7.2f} s, steps in % of the frame: {row}")
    per_s = int(round(fps))
    speed = [np.nansum(steps[i * per_s:(i + 1) * per_s]) for i in range(len(steps) // per_s)]
    print("speed per second:", " ".join(f"{v:.2f}" for v in speed))


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] not in COLORS or sys.argv[3] not in ("x", "y"):
        sys.exit(f"usage: probe_speed_track.py CLIP.mp4 {{{','.join(COLORS)}}} x|y [t1,t2,...]")
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
