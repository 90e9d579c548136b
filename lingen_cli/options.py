"""Parsing of user-facing values: lengths (``4s``, ``2.5s``, ``97f``, ``1m``), resolutions
(``512``, ``512x288``, ``768p``), seeds and dtypes. Every parser raises ``CLIError`` with a
one-line message on bad input."""
from __future__ import annotations

import math
import re
import secrets

from lingen_cli.common import CLIError

_LEN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?|f|frames?|m|min|mins|minutes?)?\s*$", re.I)
_RES = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+)|(p))?\s*$", re.I)
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def parse_length(text: str) -> tuple[str, float]:
    """``'4s'`` → ('s', 4.0); ``'97f'`` → ('f', 97); ``'1m'`` → ('s', 60.0); a bare number is seconds.

    Raises CLIError for unparsable text or a length ≤ 0.
    """
    m = _LEN.match(str(text))
    if not m:
        raise CLIError(f"cannot read length {text!r}: use seconds (4s, 2.5s, 1m) or frames (97f)")
    value, unit = float(m.group(1)), (m.group(2) or "s").lower()
    if not math.isfinite(value) or value <= 0:
        raise CLIError(f"length must be > 0, got {text!r}")
    if unit.startswith("f"):
        if value != int(value):
            raise CLIError(f"a frame count must be a whole number, got {text!r}")
        return "f", value
    if unit.startswith("m"):
        return "s", value * 60.0
    return "s", value


def frames_for_length(text: str, fps: float, temporal_factor: int = 4) -> tuple[int, str | None]:
    """Frame count for a length at ``fps``: ``N s`` spans N seconds, i.e. 1 + N·fps frames (the
    convention of Wan2.1's 81 frames = 5 s at 16 fps), rounded to the nearest valid
    1 + k·temporal_factor. Returns (frames, note); the note says how a request was rounded
    (None if exact). Raises CLIError for unparsable or non-positive lengths.
    """
    unit, value = parse_length(text)
    wanted = value if unit == "f" else 1 + value * fps
    k = max(0, round((wanted - 1) / temporal_factor))
    frames = 1 + temporal_factor * k
    note = None
    if abs(frames - wanted) > 1e-6:
        note = (f"length {text} = {wanted:g} frames at {fps:g} fps; using {frames} frames "
                f"({(frames - 1) / fps:.3g} s; the VAE needs 1 + {temporal_factor}·k frames)")
    return frames, note


def parse_resolution(text: str, native: tuple[int, int] | None = None, stride: int = 16) -> tuple[int, int]:
    """``'512'`` → (512, 512) square; ``'512x288'`` → width 512, height 288; ``'768p'`` → height 768
    with the native aspect ratio (width rounded to ``stride``). Returns (width, height) in pixels.

    Raises CLIError for unparsable text, zero sizes, or sizes not divisible by ``stride``.
    """
    m = _RES.match(str(text))
    if not m:
        raise CLIError(f"cannot read resolution {text!r}: use 512, 512x288 or 768p")
    a = int(m.group(1))
    if m.group(2):
        w, h = a, int(m.group(2))
    elif m.group(3):
        nw, nh = native or (1, 1)
        h = a
        w = max(stride, int(round(a * nw / nh / stride)) * stride)
    else:
        w = h = a
    if w <= 0 or h <= 0:
        raise CLIError(f"resolution must be positive, got {text!r}")
    if w % stride or h % stride:
        raise CLIError(f"resolution {w}x{h} is not divisible by {stride} (VAE factor × patch size)")
    return w, h


def resolve_seed(seed: int) -> int:
    """``-1`` → a fresh random seed in [0, 2³¹); other negatives → CLIError; else the seed itself."""
    if seed == -1:
        return secrets.randbelow(2**31)
    if seed < 0 or seed >= 2**63:
        raise CLIError(f"seed must be -1 (random) or in [0, 2^63), got {seed}")
    return int(seed)


def slugify(text: str, max_len: int = 48) -> str:
    """File-name-safe slug of a prompt: lower-case words joined by '-' (``clip`` if nothing is left)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    return slug or "clip"
