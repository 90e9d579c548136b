"""Does a push away from the wrong shape round the 4 s circles? (session 23, issue 14; a probe, not in the library)

For the prompts naming SHAPE among the first ``limit`` built-in prompts (tuning seeds 3,000,003 + i, 4 s,
the model's defaults otherwise), each clip is sampled with contrast guidance whose contrast caption is the
prompt with only its shape word swapped (``proto_shape_contrast.py``, ``SHAPES_ONLY``: circle ↔ square,
triangle → circle), at each weight w given, and the judge scores the shape. The contrast runs through the
direction-guidance slot, so direction guidance is off in every row (w = 0 is the plain run without it):
only the shape push differs between rows.

    python recipes/lingen-tiny/probe_shape_contrast.py 0,0.5,1 [limit 40] [shape circle]

Prints one line per clip and weight, then the shape pass count and means per weight.
"""
import os
import sys
from pathlib import Path

os.environ["SHAPES_ONLY"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import proto_shape_contrast as proto  # noqa: E402
from lingen_model.generation import pipeline as pl  # noqa: E402
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline  # noqa: E402
from lingen_model.geometry import frames_for_length  # noqa: E402
from lingen_model.shapes.judge import score_clip  # noqa: E402
from lingen_model.shapes.prompts import EVAL_PROMPTS  # noqa: E402


def main() -> None:
    pl.opposite_direction = proto.opposite_direction_and_shape
    weights = [float(x) for x in sys.argv[1].split(",")]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    word = sys.argv[3] if len(sys.argv) > 3 else "circle"
    pipe = LinGenPipeline.from_pretrained(None, device="cpu")
    idx = [i for i in range(limit) if word in EVAL_PROMPTS[i]]
    fps = pipe.native["fps"]
    frames = frames_for_length("4s", fps)[0]
    for w in weights:
        scores = []
        for i in idx:
            req = pipe.resolve(GenerationRequest(EVAL_PROMPTS[i], num_frames=frames, seed=3_000_003 + i,
                                                      direction_guidance=w))
            s = score_clip(pipe.generate(req).frames, EVAL_PROMPTS[i], fps)
            scores.append(s)
            print(f"w {w} | {EVAL_PROMPTS[i]} | contrast {req.contrast_prompt!r}: shape {s['shape']:.2f} "
                  f"unity {s['unity']:.2f} motion {s['motion']:.2f}", flush=True)
        n = len(scores)
        print(f"w {w}: shape passed {sum(s['shape'] >= 0.5 for s in scores)}/{n} "
              f"mean {sum(s['shape'] for s in scores) / n:.2f} unity mean {sum(s['unity'] for s in scores) / n:.2f} "
              f"motion passed {sum(s['motion'] >= 0.5 for s in scores)}", flush=True)


if __name__ == "__main__":
    main()
