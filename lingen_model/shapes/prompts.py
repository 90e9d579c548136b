"""The built-in evaluation prompt sets of ``lingen eval`` (canonical phrasing, every colour and motion)."""
from __future__ import annotations



from lingen_model.shapes.language import article
from lingen_model.shapes.world import BACKGROUNDS, BASIC_MOTIONS, COLORS, SHAPES

# --------------------------------------------------------------------------- eval prompts

_EVAL_MOTION_TEXT = {"left": "moving left", "right": "moving right", "up": "moving up", "down": "moving down",
                     "still": "standing still"}


def _eval_prompts() -> list[str]:
    """80 one-object prompts: every (colour, motion) pair twice, each time with another shape and
    background. The first 40 are the set of sessions 1-7 unchanged (their numbers still reproduce
    with ``--limit 40``); prompts 40-79 shift shape and background by one."""
    colors, bgs = list(COLORS), list(BACKGROUNDS)
    out = []
    for i in range(80):
        j, shift = i % 40, i // 40
        c, s, m = colors[j % 8], SHAPES[(j + shift) % 3], BASIC_MOTIONS[j % 5]
        b = bgs[(j // 8 + j + shift) % 3]
        out.append(f"{article(c)} {c} {s} {_EVAL_MOTION_TEXT[m]} on a {b} background")
    return out


EVAL_PROMPTS: list[str] = _eval_prompts()
"""Built-in evaluation prompts, one object each (80): every colour × basic motion (including
still) pair twice, shapes and backgrounds cycled, in canonical phrasing."""

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
