"""Probe: does guidance away from the opposite direction fix the sign of the motion?

Scores the linear movers of the built-in prompt set (prompt i keeps seed ``seed_base + i``, so the
clips are those of ``lingen eval`` on the same prompts) with direction guidance of weight w
(``--direction-guidance``, docs/design.md §7), prompt by prompt. ``lingen eval`` scores every prompt;
this runs only those with a direction word (stills are untouched by the guidance).

    python recipes/lingen-tiny/probe_dirguide.py --weight 3 --limit 40 --json out.json

The first look of session 13 (w = 3, 20, 50) ran an earlier form of this script that wrapped the
denoiser and encoded the swapped prompt on its own (commit 3052c27); the library now encodes it in
one batch with the prompt, which can move single clips.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from lingen_model.generation.contrast import opposite_direction
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from lingen_model.shapes.judge import score_clip, summarize
from lingen_model.shapes.prompts import EVAL_PROMPTS

KEEP = ("color", "shape", "motion", "persistence", "flicker", "unity", "motion_consistency", "jumps", "passed",
        "detected")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--weight", type=float, default=3.0)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--seed-base", type=int, default=3_000_003)
    ap.add_argument("--cache", default="none")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    rows = []
    for i, prompt in enumerate(EVAL_PROMPTS[:args.limit]):
        if opposite_direction(prompt) is None:
            continue
        t0 = time.time()
        req = pipe.resolve(GenerationRequest(prompt, num_frames=33, seed=args.seed_base + i, cache=args.cache,
                                             direction_guidance=args.weight))
        s = score_clip(pipe.generate(req).frames, prompt, pipe.native["fps"])
        rows.append({"prompt": prompt, "seed": args.seed_base + i, **{k: v for k, v in s.items() if k in KEEP}})
        print(f"[{i}] {prompt}: motion {s['detected']['objects'][0]['motion']} pass {s['passed']} "
              f"({time.time() - t0:.1f}s)", flush=True)
    summary = summarize(rows)
    print(json.dumps(summary["passed"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "clips": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
