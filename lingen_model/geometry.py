"""Clip geometry in one place: lengths (seconds ↔ frames), resolutions, and the frame ↔ latent grid.

The VAE compresses time by ``temporal_factor`` (4) with a causal first frame, so a clip has
``1 + 4k`` frames and ``1 + k`` latent frames (as in Wan2.1: 81 frames = 5 s at 16 fps), and space
by ``spatial_factor`` (8); the denoiser then patches the latent (patch 2), so height and width
must be multiples of ``spatial_factor × patch`` pixels. A length of ``N s`` spans N seconds, i.e.
``1 + N·fps`` frames, rounded to the nearest valid count. See docs/design.md, "Clip geometry".

Every function raises :class:`lingen_model.errors.InputError` (a ``ValueError``) with a one-line
message on bad input.
"""
from __future__ import annotations

import math
import re

from lingen_model.errors import InputError

#: Defaults of the shipped VAE: temporal ×4 (frames = 1 + 4k), spatial ×8.
TEMPORAL_FACTOR, SPATIAL_FACTOR = 4, 8
#: Length of a clip when none is asked for (seconds).
DEFAULT_LENGTH_S = 4.0

_LEN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?|f|frames?|m|min|mins|minutes?)?\s*$", re.I)
_RES = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+)|(p))?\s*$", re.I)


def latent_frames(num_frames: int, temporal_factor: int = TEMPORAL_FACTOR) -> int:
    """Latent frames for a clip of ``num_frames = 1 + ft·k`` frames: ``1 + k``.

    Raises:
        InputError: unless ``num_frames`` is an integer ``1 + ft·k`` with ``k >= 0``.
    """
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1 \
            or (num_frames - 1) % temporal_factor:
        raise InputError(f"frame count must be 1 + {temporal_factor}·k (1, {1 + temporal_factor}, "
                         f"{1 + 2 * temporal_factor}, ...), got {num_frames!r}")
    return 1 + (int(num_frames) - 1) // temporal_factor


def pixel_frames(t_latent: int, temporal_factor: int = TEMPORAL_FACTOR) -> int:
    """Video frames decoded from ``t_latent`` latent frames: ``1 + ft·(t_latent − 1)``.

    Raises:
        InputError: if ``t_latent`` is not an integer ≥ 1.
    """
    if isinstance(t_latent, bool) or int(t_latent) != t_latent or t_latent < 1:
        raise InputError(f"latent frame count must be an integer >= 1, got {t_latent!r}")
    return 1 + temporal_factor * (int(t_latent) - 1)


def latent_grid(num_frames: int, height: int, width: int, spatial_factor: int = SPATIAL_FACTOR,
                temporal_factor: int = TEMPORAL_FACTOR) -> tuple[int, int, int]:
    """Latent grid (T', H', W') of a clip of ``num_frames`` × ``height`` × ``width`` pixels:
    T' = 1 + (frames − 1)/ft, H' = height/fs, W' = width/fs.

    Raises:
        InputError: unless frames = 1 + ft·k ≥ 1 and height/width are positive multiples of ``spatial_factor``.
    """
    t = latent_frames(num_frames, temporal_factor)
    if height < spatial_factor or width < spatial_factor or height % spatial_factor or width % spatial_factor:
        raise InputError(f"width and height must be positive multiples of {spatial_factor} pixels, got {width}x{height}")
    return (t, height // spatial_factor, width // spatial_factor)


def frames_for_seconds(seconds: float, fps: float, temporal_factor: int = TEMPORAL_FACTOR) -> int:
    """Valid frame count nearest to ``1 + seconds·fps`` (at least 1).

    Raises:
        InputError: ``seconds`` < 0 or ``fps`` ≤ 0 or either not finite.
    """
    if not (math.isfinite(seconds) and math.isfinite(fps)) or seconds < 0 or fps <= 0:
        raise InputError(f"need seconds >= 0 and fps > 0, got {seconds!r} s at {fps!r} fps")
    k = max(0, round(seconds * fps / temporal_factor))
    return 1 + temporal_factor * k


def parse_length(text: str) -> tuple[str, float]:
    """``'4s'`` → ('s', 4.0); ``'97f'`` → ('f', 97); ``'1m'`` → ('s', 60.0); a bare number is seconds.

    Raises:
        InputError: unparsable text or a length ≤ 0.
    """
    m = _LEN.match(str(text))
    if not m:
        raise InputError(f"cannot read length {text!r}: use seconds (4s, 2.5s, 1m) or frames (97f)")
    value, unit = float(m.group(1)), (m.group(2) or "s").lower()
    if not math.isfinite(value) or value > 1e9:
        raise InputError(f"length {str(text)[:20]}{'…' if len(str(text)) > 20 else ''} is too large")
    if value <= 0:
        raise InputError(f"length must be > 0, got {text!r}")
    if unit.startswith("f"):
        if value != int(value):
            raise InputError(f"a frame count must be a whole number, got {text!r}")
        return "f", value
    if unit.startswith("m"):
        return "s", value * 60.0
    return "s", value


def frames_for_length(text: str, fps: float, temporal_factor: int = TEMPORAL_FACTOR) -> tuple[int, str | None]:
    """Frame count for a length at ``fps`` (``N s`` = ``1 + N·fps`` frames), rounded to the nearest
    valid ``1 + k·temporal_factor``. Returns (frames, note); the note says how a request was
    rounded (None if exact).

    Raises:
        InputError: unparsable or non-positive length.
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
    with the native (width, height) aspect ratio, width rounded to ``stride``. Returns (width, height) in pixels.

    Raises:
        InputError: unparsable text, zero sizes, or sizes not divisible by ``stride`` (VAE factor × patch).
    """
    m = _RES.match(str(text))
    if not m:
        raise InputError(f"cannot read resolution {text!r}: use 512, 512x288 or 768p")
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
        raise InputError(f"resolution must be positive, got {text!r}")
    if w % stride or h % stride:
        raise InputError(f"resolution {w}x{h} is not divisible by {stride} (VAE factor × patch size)")
    return w, h
