"""Probe: does guidance away from the opposite direction fix the sign of the motion?

The 4 s failures of the shipped model are mostly the right axis with the wrong sign ("moving
left" drifts right). This probe adds one guidance term to CFG, with the caption whose direction
word is swapped as its negative:

    v = v_u + g·(v_c − v_u) + w·(v_c − v_opp)       (only while t ≥ t_min)

(negative-prompt composition as in Liu et al. 2022, "Compositional Visual Generation", §3), and
scores the clips with the shapes-world judge, prompt by prompt, beside plain CFG.

    python recipes/lingen-tiny/probe_dirguide.py --weight 3 --limit 40 --json out.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

import torch

from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from lingen_model.shapes.judge import score_clip, summarize
from lingen_model.shapes.prompts import EVAL_PROMPTS

SWAP = {"left": "right", "right": "left", "up": "down", "down": "up"}


def opposite(prompt: str) -> str | None:
    """The prompt with its direction word swapped, or None when it names no linear direction."""
    words = re.findall(r"\b(left|right|up|down)\b", prompt)
    if len(words) != 1:
        return None
    return re.sub(r"\b(left|right|up|down)\b", lambda m: SWAP[m.group(1)], prompt)


class DirectionGuided(torch.nn.Module):
    """Wraps a denoiser called with the CFG batch [uncond; cond] (2B) and returns
    [v_u; v_c + (w/g)·(v_c − v_opp)], so that the sampler's v_u + g·(v_c − v_u) gains w·(v_c − v_opp)."""

    def __init__(self, inner, opp_ctx, opp_mask, weight: float, cfg: float, t_min: float):
        super().__init__()
        self.inner, self.opp_ctx, self.opp_mask = inner, opp_ctx, opp_mask
        self.weight, self.cfg, self.t_min = weight, cfg, t_min

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, z, t, ctx, mask, **kw):
        b = z.shape[0] // 2
        if self.weight == 0 or float(t.max()) < self.t_min:
            return self.inner(z, t, ctx, mask, **kw)
        length = max(ctx.shape[1], self.opp_ctx.shape[1])
        pad = lambda c, m: (torch.nn.functional.pad(c, (0, 0, 0, length - c.shape[1])),
                            torch.nn.functional.pad(m, (0, length - m.shape[1]), value=False))
        c, m = pad(ctx, mask)
        oc, om = pad(self.opp_ctx.expand(b, -1, -1), self.opp_mask.expand(b, -1))
        v = self.inner(torch.cat([z, z[b:]]), torch.cat([t, t[b:]]), torch.cat([c, oc]), torch.cat([m, om]), **kw)
        v_u, v_c, v_o = v[:b], v[b:2 * b], v[2 * b:]
        return torch.cat([v_u, v_c + (self.weight / self.cfg) * (v_c - v_o)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--weight", type=float, default=3.0)
    ap.add_argument("--t-min", type=float, default=0.0)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--seed-base", type=int, default=3_000_003)
    ap.add_argument("--cache", default="none")
    ap.add_argument("--stagger", type=float, default=0.0)
    ap.add_argument("--movers-only", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    pipe = LinGenPipeline.from_pretrained(args.model, device="cpu")
    base = pipe.denoiser
    fps = pipe.native["fps"]
    rows = []
    for i, prompt in enumerate(EVAL_PROMPTS[:args.limit]):
        opp = opposite(prompt)
        if args.movers_only and opp is None:
            continue
        req = pipe.resolve(GenerationRequest(prompt, num_frames=33, seed=args.seed_base + i, cache=args.cache,
                                             stagger=args.stagger))
        t0 = time.time()
        if opp is not None and args.weight != 0:
            oc, om = pipe.encode_prompt([opp])
            pipe.denoiser = DirectionGuided(base, oc, om, args.weight, req.cfg_scale, args.t_min)
        try:
            frames = pipe.generate(req).frames
        finally:
            pipe.denoiser = base
        s = score_clip(frames, prompt, fps)
        rows.append({"prompt": prompt, "seed": args.seed_base + i,
                     **{k: v for k, v in s.items() if k in ("color", "shape", "motion", "persistence", "flicker",
                                                            "unity", "motion_consistency", "jumps", "passed", "detected")}})
        obj = s["detected"]["objects"][0]
        print(f"[{i}] {prompt}: motion {obj['motion']} pass {s['passed']} ({time.time() - t0:.1f}s)", flush=True)
    summary = summarize(rows)
    print(json.dumps({k: summary[k] for k in summary if not isinstance(summary[k], (list, dict))}, indent=1))
    print(json.dumps(summary.get("passed", summary), indent=1)[:2000])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "clips": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
