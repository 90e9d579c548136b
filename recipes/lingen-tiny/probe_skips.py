"""Probe, not in the library (session 21, issue 14): what a judged jump looks like frame by frame.

Reads a clip (an mp4 written by ``lingen generate`` or ``lingen eval --save-dir``), judges it against its
prompt, and for every jump the judge counts prints the largest frame-to-frame step of the tracked object
within ±6 frames, its length against the clip's median step (frame widths, wrapped on the torus), its
sign along the named axis, and where the step falls in the VAE's 4-frame groups (latent frame j ≥ 1
decodes frames 4j − 3 … 4j). Example (docs/eval/README.md, "Session 21")::

    lingen generate "a green triangle moving right on a black background" --seed 4000014 --length 60s -o g.mp4
    python recipes/lingen-tiny/probe_skips.py g.mp4 "a green triangle moving right on a black background"
"""
import argparse

import numpy as np

from lingen_model.io.video import read_mp4
from lingen_model.shapes import judge

FT = 4  # lingen-tiny's VAE: 4 frames per latent frame after the first


def skips(frames: np.ndarray, prompt: str, fps: float) -> tuple[float, list[dict]]:
    """The largest frame-to-frame step around each jump the judge counts in a one-object clip.

    Args: frames uint8 T×H×W×3; prompt naming one object of the shapes world; fps frames per second.
    Returns: ``(median step, [per jump: time_s, frame (the step goes frame → frame + 1), step (frame
    widths, wrapped on the torus), ratio (to the median step), forward (along the named axis; None for a
    motion without one), latent (the latent frame whose 4-frame group holds frame + 1), position (1–4
    in that group)])``.
    """
    obj = judge.score_clip(frames, prompt, fps)["detected"]["objects"][0]
    labels, _ = judge.classify_pixels(judge._downsample(frames)[0])
    blobs = judge._Blobs(labels, max_rank=1)
    c = judge._COLOR_NAMES.index(obj["color"] or obj["target"]["color"])
    wrap = lambda d: (d + 0.5) % 1.0 - 0.5  # noqa: E731
    dx, dy = wrap(np.diff(blobs.cx[:, c, 0])), wrap(np.diff(blobs.cy[:, c, 0]))
    step = np.hypot(dx, dy)
    med = float(np.nanmedian(step))
    along = {"left": -dx, "right": dx, "up": -dy, "down": dy}.get(obj["target"]["motion"])
    out = []
    for js in obj["coherence"]["jump_times_s"]:
        k = int(round(js * fps))
        lo, hi = max(0, k - 6), min(len(step), k + 6)
        i = lo + int(np.nanargmax(step[lo:hi]))  # the step from frame i to frame i + 1
        j = (i + FT) // FT  # latent frame j ≥ 1 decodes frames FT·(j − 1) + 1 … FT·j
        out.append({"time_s": js, "frame": i, "step": float(step[i]), "ratio": float(step[i] / med),
                    "forward": None if along is None else bool(along[i] > 0), "latent": j,
                    "position": i + 1 - FT * (j - 1)})
    return med, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mp4")
    ap.add_argument("prompt")
    a = ap.parse_args()
    frames, fps = read_mp4(a.mp4)
    med, found = skips(frames, a.prompt, fps)
    print(f"{a.prompt}: {len(found)} jumps, median step {med:.3f} frame widths ({med * fps:.3f} per second)")
    for s in found:
        way = "" if s["forward"] is None else (" forward" if s["forward"] else " backward")
        print(f"  jump at {s['time_s']:6.2f} s: f{s['frame']}→f{s['frame'] + 1} {s['step']:.3f} "
              f"({s['ratio']:.1f}× median){way}; f{s['frame'] + 1} is frame {s['position']} of latent "
              f"frame {s['latent']}'s group")


if __name__ == "__main__":
    main()
