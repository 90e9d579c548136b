"""The built-in evaluation prompt sets of ``lingen eval`` (canonical phrasing, every colour and motion)."""
from __future__ import annotations



from lingen_model.shapes.language import article
from lingen_model.shapes.world import BACKGROUNDS, BASIC_MOTIONS, COLORS, SHAPES

# --------------------------------------------------------------------------- eval prompts

_EVAL_MOTION_TEXT = {"left": "moving left", "right": "moving right", "up": "moving up", "down": "moving down",
                     "still": "standing still"}


def _eval_prompts() -> list[str]:
    """40 one-object prompts: every (colour, motion) pair once, shapes and backgrounds cycled."""
    colors, bgs = list(COLORS), list(BACKGROUNDS)
    out = []
    for i in range(40):
        c, s, m = colors[i % 8], SHAPES[i % 3], BASIC_MOTIONS[i % 5]
        b = bgs[(i // 8 + i) % 3]
        out.append(f"{article(c)} {c} {s} {_EVAL_MOTION_TEXT[m]} on a {b} background")
    return out


EVAL_PROMPTS: list[str] = _eval_prompts()
"""Built-in evaluation prompts, one object each (40): all colours, shapes, basic
motions (including still) and backgrounds, in canonical phrasing."""

EVAL_PROMPTS_TWO: list[str] = [
    "a red circle moving left and a blue square moving right on a black background",
    "a yellow triangle moving up and a purple circle moving down on a gray background",
    "a green square and a white circle, both moving right on a dark blue background",
    "a cyan circle standing still and an orange triangle moving left on a black background",
    "a white square moving down and a red triangle moving up on a dark blue background",
    "an orange circle moving right and a green triangle standing still on a gray background",
    "a blue triangle and a yellow square, both moving down on a black background",
    "a purple square moving left and a cyan triangle moving left on a gray background",
]
"""Two-object evaluation prompts (motions of one axis per prompt, as the world draws them)."""
