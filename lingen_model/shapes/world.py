"""The procedural "shapes world": captioned clips of simple moving objects (docs/design.md §9).

No dataset hub is reachable here, so the embedded default model trains on this world:
one or two objects (circle, square, triangle) in named colours on a plain or subtly
textured background, moving left / right / up / down, standing still, bouncing or
orbiting. Every clip is drawn from a seed, so the world is deterministic per seed and
infinite, and it renders at any size, frame rate and length. The caption is generated
from the same parameters with varied phrasing and synonyms, so that a model learns the
words rather than one template; :func:`~lingen_model.shapes.language.parse_prompt` reads those words back (the judge in
:mod:`lingen_model.shapes.judge` uses it).

Conventions (shared with the judge):

* Positions are fractions of the frame (``x`` of the width, ``y`` of the height, ``y``
  pointing down); pixel ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)`` pixels.
* ``size`` is the diameter of the disc with the same area as the object, as a fraction of
  ``min(H, W)``: all shapes of one size cover the same number of pixels.
* Linear motion (left/right/up/down) moves ``speed`` frame extents per second along its
  axis (frame widths for left/right, frame heights for up/down), so the motion looks the
  same at any fps, size and length (sampled speeds: ``SPEED_RANGE``, clearly visible in
  a 4 s clip at 8 fps, at most 1/32 of the frame per frame there). The frame is a
  **torus**: an object leaving one edge re-enters at the opposite edge (split across the
  seam while it crosses), so its whole area stays in view for a clip of any length. The
  judge therefore measures displacement modulo the frame ("unwrapped").
* ``bounce`` hops off a floor with a ``|sin|`` height profile (period ``BOUNCE_PERIOD_RANGE``)
  and ``orbit`` circles a centre (period ``ORBIT_PERIOD_RANGE``); both stay inside the
  frame and need about one period of clip to be recognisable.
* Anti-aliasing: coverage ``clip(0.5 - d, 0, 1)`` where ``d`` is the signed distance to the
  shape boundary in pixels (negative inside), i.e. a one-pixel soft edge. Circles use
  the exact distance; squares and triangles use the largest signed distance to their edge
  lines (exact inside and along the edges, slightly rounder AA within a pixel of a corner).
* Two-object scenes never overlap: both objects move along the same axis (or stay still,
  or bounce when the axis is vertical) in separate halves of the frame.

This module holds the vocabulary, the scene specs and scene sampling; rendering is in
:mod:`.render`, captions and the prompt parser in :mod:`.language`, clips in :mod:`.clips`, the
eval prompt sets in :mod:`.prompts`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------- vocabulary

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (222, 36, 36),
    "orange": (255, 128, 0),
    "yellow": (250, 230, 40),
    "green": (40, 190, 64),
    "cyan": (32, 212, 222),
    "blue": (44, 96, 240),
    "purple": (150, 62, 212),
    "white": (240, 240, 240),
}
"""Object colours, name → sRGB (uint8 range)."""

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "gray": (118, 118, 118),
    "dark blue": (16, 26, 74),
}
"""Background colours, name → sRGB (uint8 range). ``SceneSpec.texture`` adds a subtle,
static, smooth luminance texture (± ``TEXTURE_AMPLITUDE`` levels) on top."""

TEXTURE_AMPLITUDE = 8.0

LINEAR_MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
BASIC_MOTIONS: tuple[str, ...] = LINEAR_MOTIONS + ("still",)
MOTIONS: tuple[str, ...] = BASIC_MOTIONS + ("bounce", "orbit")
"""All motions. ``bounce``: hops up and down off a floor (``|sin|`` profile);
``orbit``: circles around a centre. :func:`sample_scene` uses ``BASIC_MOTIONS`` unless
told otherwise."""

SIZE_RANGE = (0.2, 0.32)          # single-object scenes
SIZE_RANGE_TWO = (0.2, 0.28)      # two-object scenes (each object keeps to half the frame)
SPEED_RANGE = (0.1, 0.25)         # frame extents per second
ENTRY_SPAN = 0.3                  # entry starts (``entry_prob``): trailing 30 % of the free span
BOUNCE_PERIOD_RANGE = (1.0, 2.0)  # seconds per hop
ORBIT_PERIOD_RANGE = (2.5, 5.0)   # seconds per revolution
ORBIT_RADIUS_RANGE = (0.12, 0.2)  # fraction of min(H, W)
_MARGIN = 0.02

# Half extents of each shape around its centroid per unit size, (x, y), as fractions of
# min(H, W); used only for placement (conservative for non-square frames).
_SQUARE_HALF = math.sqrt(math.pi) / 4.0                 # half side of the equal-area square
_TRIANGLE_SIDE = math.sqrt(math.pi / math.sqrt(3.0))    # side of the equal-area triangle
_TRIANGLE_INRADIUS = _TRIANGLE_SIDE / (2.0 * math.sqrt(3.0))
_HALF_EXTENT = {
    "circle": (0.5, 0.5),
    "square": (_SQUARE_HALF, _SQUARE_HALF),
    "triangle": (_TRIANGLE_SIDE / 2.0, 2.0 * _TRIANGLE_INRADIUS),  # apex is 2·r_in above
}


# --------------------------------------------------------------------------- specs


@dataclass
class ObjectSpec:
    """One object of a scene.

    Attributes:
        shape: one of ``SHAPES``.
        color: a key of ``COLORS``.
        motion: one of ``MOTIONS``.
        size: diameter of the equal-area disc, fraction of ``min(H, W)``.
        x0, y0: centroid at t = 0 (fractions of W and H). For ``orbit`` the orbit centre;
            for ``bounce`` the floor position (lowest point of the hop).
        speed: linear motions: frame extents per second along the motion axis.
        amplitude: ``bounce``: hop height (fraction of H); ``orbit``: radius (fraction of
            min(H, W)).
        period: ``bounce``: seconds per hop; ``orbit``: seconds per revolution.
        phase: ``bounce``/``orbit``: starting phase as a fraction of a period, in [0, 1).
        clockwise: ``orbit`` direction as seen on screen.
    """

    shape: str
    color: str
    motion: str
    size: float
    x0: float
    y0: float
    speed: float = 0.0
    amplitude: float = 0.0
    period: float = 0.0
    phase: float = 0.0
    clockwise: bool = False

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {tuple(COLORS)}, got {self.color!r}")
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, got {self.motion!r}")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"size must be in (0, 1] (fraction of min(H, W)), got {self.size}")
        if self.speed < 0 or self.amplitude < 0:
            raise ValueError("speed and amplitude must be >= 0")
        if self.motion in ("bounce", "orbit") and self.period <= 0:
            raise ValueError(f"motion {self.motion!r} needs period > 0 seconds, got {self.period}")


@dataclass
class SceneSpec:
    """A scene: objects (drawn in order, later on top) over a background.

    Attributes:
        objects: one or more ``ObjectSpec``.
        background: a key of ``BACKGROUNDS``.
        texture: add the subtle static texture to the background.
        texture_seed: seed of that texture (same seed → same pattern at any size).
    """

    objects: list[ObjectSpec]
    background: str
    texture: bool = False
    texture_seed: int = 0

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("a scene needs at least one object")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {tuple(BACKGROUNDS)}, got {self.background!r}")


@dataclass
class TargetObject:
    """What a prompt asks of one object; ``None`` means the prompt does not say."""

    color: str | None = None
    shape: str | None = None
    motion: str | None = None


@dataclass
class PromptTarget:
    """What :func:`parse_prompt` found in a prompt (a SceneSpec with unknowns left ``None``)."""

    objects: list[TargetObject] = field(default_factory=list)
    background: str | None = None
    texture: bool | None = None


# --------------------------------------------------------------------------- sampling


def _check_motions(motions) -> tuple[str, ...]:
    if motions is None:
        return BASIC_MOTIONS
    motions = tuple(motions)
    if not motions or any(m not in MOTIONS for m in motions):
        raise ValueError(f"motions must be a non-empty subset of {MOTIONS}, got {motions}")
    return motions


def _axis_group(motion: str) -> str | None:
    """Which axis a motion keeps to: 'h' (moves along x), 'v' (along y), None (either)."""
    if motion in ("left", "right"):
        return "h"
    if motion in ("up", "down", "bounce"):
        return "v"
    if motion == "still":
        return None
    return "orbit"


def _place(rng: np.random.Generator, shape: str, color: str, motion: str, size: float,
           xlim: tuple[float, float], ylim: tuple[float, float], entry_prob: float = 0.0) -> ObjectSpec:
    """Sample the motion parameters of one object kept inside the box xlim × ylim.

    With probability ``entry_prob`` a linear mover starts in the ``ENTRY_SPAN`` of its box
    that it moves away from ("moving right" starts on the left), see :func:`sample_scene`;
    ``entry_prob == 0`` draws nothing extra, so scenes are the same as without it."""
    hx, hy = (e * size + _MARGIN for e in _HALF_EXTENT[shape])
    lo_x, hi_x = xlim[0] + hx, xlim[1] - hx
    lo_y, hi_y = ylim[0] + hy, ylim[1] - hy
    if lo_x > hi_x or lo_y > hi_y:
        raise ValueError(f"object of size {size:.3f} does not fit in {xlim} × {ylim}")
    x0 = float(rng.uniform(lo_x, hi_x))
    y0 = float(rng.uniform(lo_y, hi_y))
    kw: dict = {}
    if motion in LINEAR_MOTIONS:
        kw["speed"] = float(rng.uniform(*SPEED_RANGE))
        if entry_prob > 0.0 and rng.random() < entry_prob:
            u = float(rng.uniform(0.0, ENTRY_SPAN))   # fraction of the free span, from the trailing edge
            if motion in ("left", "right"):
                x0 = lo_x + (hi_x - lo_x) * (u if motion == "right" else 1.0 - u)
            else:  # y points down: "up" starts near the bottom
                y0 = lo_y + (hi_y - lo_y) * (u if motion == "down" else 1.0 - u)
    elif motion == "bounce":
        y0 = float(hi_y)  # floor at the bottom of the box
        span = hi_y - lo_y
        kw["amplitude"] = float(rng.uniform(0.6, 1.0) * span)
        kw["period"] = float(rng.uniform(*BOUNCE_PERIOD_RANGE))
        kw["phase"] = float(rng.uniform(0.0, 1.0))
    elif motion == "orbit":
        radius = float(rng.uniform(*ORBIT_RADIUS_RANGE))
        lo_x, hi_x = lo_x + radius, hi_x - radius
        lo_y, hi_y = lo_y + radius, hi_y - radius
        if lo_x > hi_x or lo_y > hi_y:
            radius = max(0.0, min((xlim[1] - xlim[0]) / 2 - hx, (ylim[1] - ylim[0]) / 2 - hy))
            lo_x = hi_x = (xlim[0] + xlim[1]) / 2
            lo_y = hi_y = (ylim[0] + ylim[1]) / 2
        x0 = float(rng.uniform(lo_x, hi_x))
        y0 = float(rng.uniform(lo_y, hi_y))
        kw["amplitude"] = radius
        kw["period"] = float(rng.uniform(*ORBIT_PERIOD_RANGE))
        kw["phase"] = float(rng.uniform(0.0, 1.0))
        kw["clockwise"] = bool(rng.random() < 0.5)
    return ObjectSpec(shape=shape, color=color, motion=motion, size=size, x0=x0, y0=y0, **kw)


def layout_objects(rng: np.random.Generator, attrs: list[tuple[str, str, str]], entry_prob: float = 0.0) -> list[ObjectSpec]:
    """Sizes and positions for objects given as (shape, color, motion) triples.

    One object gets the whole frame. Two objects get separate halves: split top/bottom
    when the motions are horizontal (or still), left/right when vertical, so they never
    overlap. A vertical and a horizontal mover cannot be kept apart on a torus; they get
    diagonal quadrant starts and may cross.
    """
    if len(attrs) == 1:
        shape, color, motion = attrs[0]
        size = float(rng.uniform(*SIZE_RANGE))
        return [_place(rng, shape, color, motion, size, (0.0, 1.0), (0.0, 1.0), entry_prob)]
    if len(attrs) != 2:
        raise ValueError(f"scenes hold one or two objects, got {len(attrs)}")
    groups = {_axis_group(m) for _, _, m in attrs} - {None}
    if groups == {"v"}:
        split = "x"
    elif groups <= {"h"}:
        split = "y" if (groups or rng.random() < 0.5) else "x"
    else:
        split = "xy"
    order = rng.permutation(2)
    objs = []
    for slot, (shape, color, motion) in zip(order, attrs):
        size = float(rng.uniform(*SIZE_RANGE_TWO))
        half = ((0.0, 0.5), (0.5, 1.0))[slot]
        xlim = half if "x" in split else (0.0, 1.0)
        ylim = half if "y" in split else (0.0, 1.0)
        objs.append(_place(rng, shape, color, motion, size, xlim, ylim, entry_prob))
    return objs


def sample_scene(rng: np.random.Generator, max_objects: int = 2, motions=None,
                 multi_prob: float = 0.35, texture_prob: float = 0.3, entry_prob: float = 0.0) -> SceneSpec:
    """Draw a random scene.

    Args:
        rng: the random generator (all randomness comes from it).
        max_objects: 1 or 2.
        motions: motions to draw from (default ``BASIC_MOTIONS``; pass ``MOTIONS`` to add
            bounce and orbit). Two-object scenes use motions of one axis only (see
            :func:`layout_objects`); orbit is single-object only.
        multi_prob: probability of two objects when ``max_objects == 2``.
        texture_prob: probability of a textured background.
        entry_prob: probability that a linear mover starts near the edge it comes from
            (its first ``ENTRY_SPAN`` of travel room: "moving right" starts on the left,
            "moving up" near the bottom) instead of anywhere. Uniform starts make the
            mean clip of every direction the same (the object is equally likely anywhere
            in every frame), so a denoiser gets almost no gradient tying the direction
            word to the frames; entry starts make frame ``k``'s likely position depend on
            the direction. 0 (default) draws nothing extra: the same scenes as before.

    Returns:
        A ``SceneSpec``; two objects always have different colours.

    Raises:
        ValueError: bad ``max_objects``, ``motions`` or probabilities.
    """
    motions = _check_motions(motions)
    if not 0.0 <= entry_prob <= 1.0:
        raise ValueError(f"entry_prob must be a probability in [0, 1], got {entry_prob}")
    if max_objects not in (1, 2):
        raise ValueError(f"max_objects must be 1 or 2, got {max_objects}")
    if not (0.0 <= multi_prob <= 1.0 and 0.0 <= texture_prob <= 1.0):
        raise ValueError("multi_prob and texture_prob must be probabilities in [0, 1]")
    n = 2 if (max_objects == 2 and rng.random() < multi_prob) else 1
    if n == 2:
        pools = [p for p in (
            [m for m in motions if m in ("left", "right", "still")],
            [m for m in motions if m in ("up", "down", "still", "bounce")],
        ) if p]
        if not pools:
            n = 1
        else:
            pool = pools[int(rng.integers(len(pools)))]
            chosen = [pool[int(rng.integers(len(pool)))] for _ in range(2)]
    if n == 1:
        chosen = [motions[int(rng.integers(len(motions)))]]
    names = list(COLORS)
    colors = [names[i] for i in rng.choice(len(names), size=n, replace=False)]
    shapes = [SHAPES[int(rng.integers(len(SHAPES)))] for _ in range(n)]
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    texture = bool(rng.random() < texture_prob)
    texture_seed = int(rng.integers(2**31 - 1))
    objects = layout_objects(rng, list(zip(shapes, colors, chosen)), entry_prob)
    return SceneSpec(objects=objects, background=background, texture=texture, texture_seed=texture_seed)


