"""Tally `lingen eval --json` verdicts by the prompt's motion word and shape (session 32, issue 14).

For each JSON file, one line per shape: how many clips passed a criterion (default: shape) out of how many,
for each motion of the prompt (left, right, up, down, still), and a second block with the mean unity and jumps a
minute per motion over all shapes. The motion and shape are read back from the prompt with the shapes world's own
parser (``lingen_model.shapes.language.parse_prompt``), so any phrasing the eval prompt sets use is read.

    python recipes/lingen-tiny/tally_by_motion.py docs/eval/tuning/4c-step17546-4s-*-80prompts.json [--criterion shape]

Raises SystemExit with a one-line message for a file that cannot be read as JSON or is not an eval JSON (no
``clips`` list).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lingen_model.shapes.language import parse_prompt
from lingen_model.shapes.world import BASIC_MOTIONS as MOTIONS, SHAPES


def one_object_keys(clips: list[dict]) -> list[tuple[str, str, dict]]:
    """(shape, motion, clip) for each one-object clip of an eval JSON, read from its prompt."""
    keys = []
    for clip in clips:
        spec = parse_prompt(clip["prompt"])
        if len(spec.objects) == 1:
            keys.append((spec.objects[0].shape, spec.objects[0].motion, clip))
    return keys


def read_eval_clips(path: Path) -> list[dict]:
    """The ``clips`` list of a ``lingen eval --json`` file. Raises SystemExit with a one-line message when the file
    cannot be read as JSON or has no ``clips`` list."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"{path}: cannot read as JSON ({exc})")
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list):
        sys.exit(f"{path}: not a `lingen eval --json` file (no 'clips' list)")
    return data["clips"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--criterion", default="shape")
    args = ap.parse_args(argv)
    for path in args.files:
        keys = one_object_keys(read_eval_clips(path))
        print(f"{path.name}: {args.criterion} passed / clips, by motion")
        for shape in SHAPES:
            cells = []
            for motion in MOTIONS:
                hits = [c for s, m, c in keys if (s, m) == (shape, motion)]
                if hits:
                    cells.append(f"{motion} {sum(bool(c['passed'][args.criterion]) for c in hits)}/{len(hits)}")
            print(f"  {shape:8} {'  '.join(cells)}")
        cells = []
        for motion in MOTIONS:
            hits = [c for _, m, c in keys if m == motion]
            if hits:
                cells.append(f"{motion} {sum(c['unity'] for c in hits) / len(hits):.2f}/"
                             f"{sum(c['jumps'] for c in hits) / len(hits):.1f}")
        cells = "  ".join(cells)
        print(f"  unity mean / jumps a minute, all shapes: {cells}")


if __name__ == "__main__":
    main()
