"""Where the misses are: `lingen eval --json` verdicts of several seed sets of the same prompts, by the scene the
prompt names (session 37, issue 14).

For runs of one prompt list with different seed bases (e.g. 4k's 80 tuning prompts at seed bases 3,000,003,
4,000,006 and 5,000,009), prints for each criterion:

* the pass rate by background, by colour, by shape and by motion of the prompt's one object (read with the shapes
  world's own parser, ``lingen_model.shapes.language.parse_prompt``), with the unity mean;
* how many prompts pass in 0, 1, …, R of the R runs, beside what R independent draws at the overall pass rate would
  give (binomial): more prompts at 0 and at R than that means the misses belong to the prompts, not to the seeds.

    python recipes/lingen-tiny/tally_by_scene.py docs/eval/tuning/selfscore/4k-4s-80prompts-seed*.json

Raises SystemExit with a one-line message when a file is not an eval JSON or the runs' prompts differ.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lingen_model.shapes.language import parse_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tally_by_motion import read_eval_clips  # noqa: E402  (the sibling tally)

CRITERIA = ("motion", "unity", "shape")


def load_runs(paths: list[Path]) -> list[list[dict]]:
    """The ``clips`` lists of the eval JSONs, checked to hold the same prompts in the same order."""
    runs = [read_eval_clips(path) for path in paths]
    if any([c["prompt"] for c in r] != [c["prompt"] for c in runs[0]] for r in runs):
        sys.exit("the runs do not hold the same prompts in the same order")
    return runs


def by_group(runs: list[list[dict]], criterion: str) -> dict[str, dict[str, tuple[int, int, float]]]:
    """{"background" | "colour" | "shape" | "motion": {value: (passed, clips, unity mean)}} over every run's
    one-object clips."""
    out: dict[str, dict[str, list]] = {k: {} for k in ("background", "colour", "shape", "motion")}
    for clips in runs:
        for clip in clips:
            target = parse_prompt(clip["prompt"])
            if len(target.objects) != 1:
                continue
            obj = target.objects[0]
            for key, value in (("background", target.background), ("colour", obj.color), ("shape", obj.shape),
                               ("motion", obj.motion)):
                cell = out[key].setdefault(str(value), [0, 0, 0.0])
                cell[0] += bool(clip["passed"][criterion])
                cell[1] += 1
                cell[2] += clip["unity"]
    return {k: {v: (c[0], c[1], c[2] / c[1]) for v, c in sorted(d.items())} for k, d in out.items()}


def spread(runs: list[list[dict]], criterion: str) -> tuple[list[int], list[float]]:
    """(prompts passing in k of the R runs for k = 0 … R, the binomial expectation at the overall pass rate)."""
    r, n = len(runs), len(runs[0])
    counts = [0] * (r + 1)
    for i in range(n):
        counts[sum(bool(run[i]["passed"][criterion]) for run in runs)] += 1
    p = sum(k * c for k, c in enumerate(counts)) / (r * n)
    return counts, [n * math.comb(r, k) * p ** k * (1 - p) ** (r - k) for k in range(r + 1)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args(argv)
    runs = load_runs(args.files)
    for criterion in CRITERIA:
        print(f"{criterion}: passed / clips (unity mean) over {len(runs)} runs of {len(runs[0])} prompts")
        for key, cells in by_group(runs, criterion).items():
            print(f"  {key:10} " + "  ".join(f"{v} {p}/{n} ({u:.2f})" for v, (p, n, u) in cells.items()))
        counts, expected = spread(runs, criterion)
        print(f"  prompts passing in 0 … {len(runs)} runs: {counts}; binomial: {[round(e, 1) for e in expected]}")


if __name__ == "__main__":
    main()
