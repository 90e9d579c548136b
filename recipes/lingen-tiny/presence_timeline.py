"""Where in a clip the named object is missing: one character per second (session 25, issue 14; a probe, not in
the library)

    python recipes/lingen-tiny/presence_timeline.py SAVE_DIR EVAL_JSON

SAVE_DIR is a ``lingen eval --save-dir`` folder (clips ``NNN-<prompt>.mp4``, NNN the prompt's index) and
EVAL_JSON the ``--json`` file of the same run (it gives each index its full prompt). For each one-colour
clip the line shows the clip's persistence (the share of frames where a counting blob of the named colour is
present, as ``lingen eval`` scores it: ``lingen_model.shapes.judge``) and, per second of video, ``#`` where
the colour is present in more than 90 % of that second's frames, ``+`` above 50 %, ``.`` above 0 and a blank
where it is absent. An empty start shows as blanks on the left; an object lost mid-clip as blanks inside.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lingen_model.io.video import read_mp4
from lingen_model.shapes import judge, language


def seconds_present(frames: np.ndarray, prompt: str, fps: float) -> list[float]:
    """Persistence of each whole second of a clip: ``lingen_model.shapes.judge.score_clip`` on frames
    ``[i·fps, (i + 1)·fps)`` (the judge finds the object frame by frame, so a second scores as it does inside
    the clip). ``frames``: uint8 T×H×W×3; ``fps``: frames per second. Returns floats in [0, 1], one per whole
    second (trailing frames short of a second are left out). Raises ValueError as ``score_clip`` does (bad
    frames or fps, a prompt naming nothing of the shapes world)."""
    return [judge.score_clip(frames[int(i * fps):int((i + 1) * fps)], prompt, fps)["persistence"]
            for i in range(int(len(frames) / fps))]


def timeline(shares: list[float]) -> str:
    """One character per second for the shares of ``seconds_present``: ``#`` > 0.9, ``+`` > 0.5, ``.`` > 0, blank."""
    return "".join("#" if p > 0.9 else "+" if p > 0.5 else "." if p > 0 else " " for p in shares)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("save_dir", type=Path)
    ap.add_argument("eval_json", type=Path)
    args = ap.parse_args()
    clips = json.loads(args.eval_json.read_text())["clips"]
    for mp4 in sorted(args.save_dir.glob("*.mp4")):
        index = int(mp4.name[:3])
        if index >= len(clips):
            continue
        prompt = clips[index]["prompt"]
        objects = language.parse_prompt(prompt).objects
        if len(objects) != 1 or objects[0].color is None:
            continue
        frames, fps = read_mp4(mp4)
        persistence = judge.score_clip(frames, prompt, fps)["persistence"]
        print(f"{prompt[:48]:48s} {persistence:.2f} |{timeline(seconds_present(frames, prompt, fps))}|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
