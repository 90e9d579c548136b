"""The contrast caption of direction guidance: the prompt with its direction words swapped.

``opposite_direction("a red circle moving left")`` → ``"a red circle moving right"``. The sampler
then pushes the prediction along ``v(prompt) − v(contrast)`` (``flow.sample``'s contrast guidance),
the part of the conditioning that tells one direction of motion from the other: lingen-tiny reads
the axis of a motion from its caption but not its sign (docs/design.md §7, "Direction guidance").
"""
from __future__ import annotations

import re

#: Words that name a direction of motion, in pairs of opposites (each word maps to the other).
DIRECTION_PAIRS: tuple[tuple[str, str], ...] = (
    ("left", "right"), ("leftward", "rightward"), ("leftwards", "rightwards"),
    ("up", "down"), ("upward", "downward"), ("upwards", "downwards"),
    ("rising", "falling"), ("rises", "falls"), ("rise", "fall"),
    ("ascending", "descending"), ("ascends", "descends"),
)
_OPPOSITE = {**{a: b for a, b in DIRECTION_PAIRS}, **{b: a for a, b in DIRECTION_PAIRS}}
_WORD = re.compile(r"\b(" + "|".join(sorted(_OPPOSITE, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _swap(match: re.Match) -> str:
    word = match.group(0)
    other = _OPPOSITE[word.lower()]
    if word.isupper() and len(word) > 1:
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def opposite_direction(prompt: str) -> str | None:
    """The prompt with every direction word replaced by its opposite (:data:`DIRECTION_PAIRS`).

    Whole words only, case kept (``"Left"`` → ``"Right"``); "from left to right" becomes "from
    right to left", and a prompt with several movers reverses them all. Words are swapped without
    reading their sense, so "up" in "lit up" is swapped too.

    Args:
        prompt: the text prompt.

    Returns:
        The contrast caption, or None when the prompt has no direction word (then direction
        guidance has nothing to contrast and is skipped).

    Raises:
        TypeError: ``prompt`` is not a string.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    swapped, count = _WORD.subn(_swap, prompt)
    return swapped if count else None
