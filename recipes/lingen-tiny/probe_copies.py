"""Probe, not in the library (session 20, issue 14): where the second copy of an object sits.

For the first N built-in prompts on the tuning seeds (3,000,003 + i), 4 s at lingen-tiny's defaults
(or ``--cfg-max-t``), it prints per clip the number of counting blobs of the named colour in every
frame (the judge's ``unity`` counts the frames where it is 1), and at the end a histogram of where the
second-largest blob of that colour sits relative to the largest one: (|dx|, |dy|) in tokens of the
8×8 token grid of a 128² frame, wrapped on the world's torus (so 4 is the farthest). ``--window
Tw,Hw,Ww`` replaces every TESA window at inference (e.g. ``4,8,8``: whole-frame spatial windows),
to ask whether the copies follow the 4×4-token windows. Example (docs/eval/README.md, "Session 20")::

    python recipes/lingen-tiny/probe_copies.py --n 40
    python recipes/lingen-tiny/probe_copies.py --n 40 --window 4,8,8
"""
import argparse
import collections

import numpy as np

from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from lingen_model.models.tesa import TESA
from lingen_model.shapes import judge, language
from lingen_model.shapes.prompts import EVAL_PROMPTS

TUNING_SEED_BASE = 3_000_003


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or directory (default: the embedded lingen-tiny)")
    ap.add_argument("--n", type=int, default=40, help="number of built-in prompts")
    ap.add_argument("--window", default=None, help="TESA window Tw,Hw,Ww at inference (default: the model's)")
    ap.add_argument("--cfg-max-t", type=float, default=None, help="CFG only at t <= this (default: the model's)")
    a = ap.parse_args()
    pipe = LinGenPipeline.from_pretrained(a.model, device="cpu")
    if a.window:
        window = tuple(int(v) for v in a.window.split(","))
        for m in pipe.denoiser.modules():
            if isinstance(m, TESA):
                m.window = window
    side = pipe.native["width"] // (pipe.vae.spatial_factor * pipe.denoiser.config.patch_size)  # tokens per side
    offsets, rows = collections.Counter(), []
    for i, prompt in enumerate(EVAL_PROMPTS[:a.n]):
        req = pipe.resolve(GenerationRequest(prompt, length="4s", seed=TUNING_SEED_BASE + i, cfg_max_t=a.cfg_max_t))
        frames = pipe.generate(req).frames
        labels, _ = judge.classify_pixels(judge._downsample(frames)[0])
        colour = judge._COLOR_NAMES.index(language.parse_prompt(prompt).objects[0].color)
        blobs = judge._Blobs(labels, max_rank=2)
        for t in np.flatnonzero(blobs.area[:, colour, 1] > 0):
            d = [(blobs.cx[t, colour, 1] - blobs.cx[t, colour, 0]) % 1.0, (blobs.cy[t, colour, 1] - blobs.cy[t, colour, 0]) % 1.0]
            offsets[tuple(int(round(min(v, 1 - v) * side)) for v in d)] += 1
        score = judge.score_clip(frames, prompt, req.fps)
        rows.append(score)
        counts = "".join(str(min(9, int(c))) for c in blobs.count[:, colour])
        print(f"{i:3d} unity {score['unity']:.2f} blobs per frame {counts}  {prompt}", flush=True)
    total = sum(offsets.values())
    print(f"second blob of the colour, (|dx|, |dy|) in tokens (of {side}), share of {total} frames:")
    print("  " + ", ".join(f"{k}: {v / total:.0%}" for k, v in sorted(offsets.items(), key=lambda kv: -kv[1])[:10]))
    far = sum(v for k, v in offsets.items() if max(k) >= 3 * side // 8)
    grid = np.arange(side)
    wrapped = np.minimum(grid, side - grid)  # |d| on the torus for a uniformly random second place
    uniform = 1 - np.mean(wrapped < 3 * side // 8) ** 2
    print(f"  at least {3 * side // 8} tokens away along some axis: {far / max(total, 1):.0%} "
          f"(a second place drawn uniformly: {uniform:.0%})")
    print(f"unity passed {sum(r['passed']['unity'] for r in rows)} / {len(rows)}, mean {np.mean([r['unity'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
