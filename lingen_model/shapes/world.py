"""The procedural "shapes world": captioned clips of simple moving objects (docs/design.md §9).

No dataset hub is reachable here, so the embedded default model trains on this world:
one or two objects (circle, square, triangle) in named colours on a plain or subtly
textured background, moving left / right / up / down, standing still, bouncing or
orbiting. Every clip is drawn from a seed, so the world is deterministic per seed and
infinite, and it renders at any size, frame rate and length. The caption is generated
from the same parameters with varied phrasing and synonyms, so that a model learns the
words rather than one template; :func:`parse_prompt` reads those words back (the judge in
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
"""
from __future__ import annotations

import math
import re
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


def _layout(rng: np.random.Generator, attrs: list[tuple[str, str, str]], entry_prob: float = 0.0) -> list[ObjectSpec]:
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
            :func:`_layout`); orbit is single-object only.
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
    objects = _layout(rng, list(zip(shapes, colors, chosen)), entry_prob)
    return SceneSpec(objects=objects, background=background, texture=texture, texture_seed=texture_seed)


# --------------------------------------------------------------------------- rendering


def trajectory(obj: ObjectSpec, times: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroid of ``obj`` at ``times`` (seconds), in pixels.

    Returns ``(cx, cy)``, float64 arrays shaped like ``times``; linear motions are wrapped
    into ``[0, W)`` × ``[0, H)`` (the frame is a torus).
    """
    t = np.asarray(times, dtype=np.float64)
    m = min(height, width)
    if obj.motion in LINEAR_MOTIONS:
        sx = {"left": -1.0, "right": 1.0}.get(obj.motion, 0.0)
        sy = {"up": -1.0, "down": 1.0}.get(obj.motion, 0.0)
        cx = np.mod(obj.x0 + sx * obj.speed * t, 1.0) * width
        cy = np.mod(obj.y0 + sy * obj.speed * t, 1.0) * height
    elif obj.motion == "bounce":
        cx = np.full_like(t, obj.x0 * width)
        cy = (obj.y0 - obj.amplitude * np.abs(np.sin(np.pi * (t / obj.period + obj.phase)))) * height
    elif obj.motion == "orbit":
        sign = 1.0 if obj.clockwise else -1.0   # y points down: increasing angle is clockwise
        ang = 2.0 * np.pi * (obj.phase + sign * t / obj.period)
        cx = obj.x0 * width + obj.amplitude * m * np.cos(ang)
        cy = obj.y0 * height + obj.amplitude * m * np.sin(ang)
    else:  # still
        cx = np.full_like(t, obj.x0 * width)
        cy = np.full_like(t, obj.y0 * height)
    return cx, cy


def signed_distance(shape: str, size_px: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Signed distance to a shape's boundary, in pixels (negative inside).

    Args:
        shape: one of ``SHAPES`` (square axis-aligned, triangle equilateral with its apex up).
        size_px: the shape's ``size`` in pixels (diameter of the equal-area disc).
        dx, dy: float arrays (broadcastable) of pixel offsets from the shape's centroid
            (y pointing down).

    Returns:
        Array of the broadcast shape. Exact for the circle; for the square and triangle
        the largest signed distance to the edge lines (exact inside and beside the edges,
        an underestimate within the corner wedges outside) — the usual polygon SDF
        shortcut (Quilez, "2D distance functions").
    """
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - 0.5 * size_px
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - _SQUARE_HALF * size_px
    # Equilateral triangle, apex up, centroid at the origin: three edge half-planes.
    s = math.sqrt(3.0) / 2.0
    d = np.maximum(dy, np.maximum(s * dx - 0.5 * dy, -s * dx - 0.5 * dy))
    return d - _TRIANGLE_INRADIUS * size_px


def _texture(seed: int, height: int, width: int) -> np.ndarray:
    """Smooth static luminance texture in [-1, 1], H×W float32 (bilinear 7×7 value noise)."""
    grid = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(8, 8))

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = (np.arange(n) + 0.5) / n * 7.0
        i0 = np.minimum(np.floor(u).astype(int), 6)
        return i0, i0 + 1, (u - i0)

    y0, y1, fy = axis(height)
    x0, x1, fx = axis(width)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bot = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).astype(np.float32)


def background_image(scene: SceneSpec, height: int, width: int) -> np.ndarray:
    """The scene's background, H×W×3 float32 in [0, 255]."""
    bg = np.empty((height, width, 3), dtype=np.float32)
    bg[:] = np.asarray(BACKGROUNDS[scene.background], dtype=np.float32)
    if scene.texture:
        bg += TEXTURE_AMPLITUDE * _texture(scene.texture_seed, height, width)[:, :, None]
    return np.clip(bg, 0.0, 255.0)


def _check_size(num_frames: int, height: int, width: int, fps: float) -> None:
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames}")
    if int(height) != height or int(width) != width or height < 8 or width < 8:
        raise ValueError(f"height and width must be integers >= 8 pixels, got {height}×{width}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")


def render(scene: SceneSpec, num_frames: int, height: int, width: int, fps: float) -> np.ndarray:
    """Render a scene.

    Args:
        scene: what to draw.
        num_frames: T ≥ 1; frame ``k`` shows time ``k / fps`` seconds.
        height, width: frame size in pixels (≥ 8).
        fps: frames per second (> 0).

    Returns:
        uint8 array T×H×W×3 (sRGB). Objects are anti-aliased by signed-distance coverage
        and composited in order over the background; linear motions wrap around the frame.

    Raises:
        ValueError: bad sizes or fps.
    """
    _check_size(num_frames, height, width, fps)
    T, H, W = int(num_frames), int(height), int(width)
    bg = background_image(scene, H, W)
    out = np.empty((T, H, W, 3), dtype=np.uint8)
    xs = np.arange(W, dtype=np.float64) + 0.5
    ys = np.arange(H, dtype=np.float64) + 0.5
    m = min(H, W)
    times = np.arange(T, dtype=np.float64) / float(fps)
    cols = [np.asarray(COLORS[o.color], dtype=np.float32) for o in scene.objects]
    trajs = [trajectory(o, times, H, W) for o in scene.objects]
    chunk = max(1, (1 << 20) // (H * W))
    for start in range(0, T, chunk):
        stop = min(T, start + chunk)
        img = np.broadcast_to(bg, (stop - start, H, W, 3)).copy()
        for obj, col, (cx, cy) in zip(scene.objects, cols, trajs):
            # Offsets on the torus, in [-W/2, W/2) and [-H/2, H/2).
            dx = np.mod(xs[None, :] - cx[start:stop, None] + W / 2.0, W) - W / 2.0
            dy = np.mod(ys[None, :] - cy[start:stop, None] + H / 2.0, H) - H / 2.0
            sd = signed_distance(obj.shape, obj.size * m,
                                  dx[:, None, :].astype(np.float32), dy[:, :, None].astype(np.float32))
            alpha = np.clip(0.5 - sd, 0.0, 1.0)[..., None]
            img += alpha * (col - img)
        out[start:stop] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- captions

_COLOR_SYNONYMS = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "emerald"),
    "cyan": ("cyan", "aqua", "turquoise"),
    "blue": ("blue", "azure", "cobalt"),
    "purple": ("purple", "violet"),
    "white": ("white", "bright white"),
}
_SHAPE_SYNONYMS = {
    "circle": ("circle", "ball", "disc", "disk", "dot"),
    "square": ("square", "box", "block", "tile"),
    "triangle": ("triangle", "triangular shape"),
}
_BACKGROUND_SYNONYMS = {
    "black": ("black",),
    "gray": ("gray", "grey"),
    "dark blue": ("dark blue", "navy", "navy blue", "midnight blue"),
}
_MOTION_ING = {
    "left": ("moving left", "moving to the left", "drifting left", "sliding to the left", "heading left",
             "going leftward", "travelling leftwards", "gliding left", "moving from right to left",
             "crossing from right to left"),
    "right": ("moving right", "moving to the right", "drifting right", "sliding to the right", "heading right",
              "going rightward", "travelling rightwards", "gliding right", "moving from left to right",
              "crossing from left to right"),
    "up": ("moving up", "moving upward", "rising", "drifting upwards", "floating up", "climbing", "going up",
           "heading up", "moving from bottom to top", "ascending"),
    "down": ("moving down", "moving downward", "falling", "sinking", "drifting down", "dropping", "descending",
             "going down", "heading down", "moving from top to bottom"),
    "still": ("standing still", "staying still", "not moving", "sitting still", "resting", "motionless",
              "stationary", "at rest", "static", "holding still"),
    "bounce": ("bouncing", "bouncing up and down", "hopping", "bobbing up and down", "hopping up and down"),
    "orbit": ("orbiting", "circling around", "moving in a loop", "looping around", "orbiting the centre"),
}
_MOTION_3RD = {
    "left": ("moves left", "moves to the left", "drifts left", "slides to the left", "heads left",
             "glides leftward", "travels from right to left"),
    "right": ("moves right", "moves to the right", "drifts right", "slides to the right", "heads right",
              "glides rightward", "travels from left to right"),
    "up": ("moves up", "rises", "drifts upward", "floats up", "climbs", "goes up", "ascends"),
    "down": ("moves down", "falls", "sinks", "drifts downward", "drops", "goes down", "descends"),
    "still": ("stands still", "stays still", "does not move", "sits still", "rests", "stays motionless"),
    "bounce": ("bounces", "bounces up and down", "hops", "bobs up and down"),
    "orbit": ("orbits", "loops around", "goes around in a loop", "orbits the centre"),
}
_STILL_ADJ = ("static", "motionless", "stationary", "still")


def _pick(rng: np.random.Generator, options, canonical_prob: float = 0.0):
    """First option with probability ``canonical_prob``, else a uniform pick."""
    if canonical_prob and rng.random() < canonical_prob:
        return options[0]
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng: np.random.Generator, obj: ObjectSpec, allow_still_adj: bool) -> tuple[str, bool]:
    """'a small red ball' (and whether a still-adjective already carries the motion)."""
    words = []
    if obj.size < 0.23 and rng.random() < 0.3:
        words.append(_pick(rng, ("small", "little")))
    elif obj.size > 0.28 and rng.random() < 0.3:
        words.append(_pick(rng, ("big", "large")))
    used_adj = False
    if allow_still_adj and obj.motion == "still" and rng.random() < 0.3:
        words.append(_pick(rng, _STILL_ADJ))
        used_adj = True
    words.append(_pick(rng, _COLOR_SYNONYMS[obj.color], 0.6))
    words.append(_pick(rng, _SHAPE_SYNONYMS[obj.shape], 0.5))
    if rng.random() < 0.85:
        words.insert(0, _article(words[0]))
    return " ".join(words), used_adj


def _motion_phrase(rng: np.random.Generator, obj: ObjectSpec, third_person: bool) -> str:
    phrase = _pick(rng, (_MOTION_3RD if third_person else _MOTION_ING)[obj.motion])
    if obj.motion == "orbit" and rng.random() < 0.5:
        phrase += " clockwise" if obj.clockwise else _pick(rng, (" counterclockwise", " anticlockwise"))
    return phrase


def _background_phrase(rng: np.random.Generator, scene: SceneSpec) -> str:
    name = _pick(rng, _BACKGROUND_SYNONYMS[scene.background], 0.6)
    if scene.texture and rng.random() < 0.7:
        name = _pick(rng, ("textured", "grainy", "mottled", "speckled")) + " " + name
    elif not scene.texture and rng.random() < 0.2:
        name = _pick(rng, ("plain", "solid", "flat")) + " " + name
    form = int(rng.integers(4))
    if form == 0:
        return f"on {_article(name)} {name} background"
    if form == 1:
        return f"against {_article(name)} {name} backdrop"
    if form == 2:
        return f"over {_article(name)} {name} background"
    return f"on {name}"


def caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A caption for ``scene`` with varied phrasing and synonyms.

    Examples: "a red circle moving to the left on a gray background",
    "crimson ball drifting left", "On navy, a static white box.",
    "a red circle and a blue square, both moving left". Objects are named in scene
    order; :func:`parse_prompt` recovers colours, shapes, motions and background.

    Raises:
        ValueError: more than two objects.
    """
    if len(scene.objects) > 2:
        raise ValueError(f"captions cover one or two objects, got {len(scene.objects)}")
    with_bg = rng.random() < 0.75
    bg = _background_phrase(rng, scene) if with_bg else ""
    lead_bg = with_bg and rng.random() < 0.25
    third = rng.random() < 0.3
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        np_, adj = _noun_phrase(rng, obj, allow_still_adj=True)
        if adj:
            body = np_
        elif third:
            body = f"{np_} {_motion_phrase(rng, obj, True)}"
        else:
            body = f"{np_} {_motion_phrase(rng, obj, False)}"
    else:
        a, b = scene.objects
        if a.motion == b.motion and rng.random() < 0.6:
            np_a, _ = _noun_phrase(rng, a, allow_still_adj=False)
            np_b, _ = _noun_phrase(rng, b, allow_still_adj=False)
            both = "both " if rng.random() < 0.5 else ""
            body = f"{np_a} and {np_b}, {both}{_motion_phrase(rng, a, False)}"
        else:
            np_a, adj_a = _noun_phrase(rng, a, allow_still_adj=True)
            np_b, adj_b = _noun_phrase(rng, b, allow_still_adj=True)
            part_a = np_a if adj_a else f"{np_a} {_motion_phrase(rng, a, third)}"
            part_b = np_b if adj_b else f"{np_b} {_motion_phrase(rng, b, third)}"
            joiner = " while " if (third and not (adj_a or adj_b) and rng.random() < 0.5) else " and "
            body = part_a + joiner + part_b
    if not with_bg:
        text = body
    elif lead_bg:
        text = f"{bg[0].upper()}{bg[1:]}, {body}"
    else:
        text = f"{body} {bg}"
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text += "."
    return text


# --------------------------------------------------------------------------- clips


def make_clip(seed: int, num_frames: int, height: int, width: int, fps: float, still_prob: float = 0.0,
              max_objects: int = 2, motions=None, entry_prob: float = 0.0) -> tuple[np.ndarray, str, SceneSpec]:
    """One captioned training clip, deterministic per ``seed``.

    Args:
        seed: any int ≥ 0; same seed and arguments → same frames and caption.
        num_frames, height, width, fps: as in :func:`render`.
        still_prob: probability that every object of the clip stands still (e.g. for
            image-like warm-up data), on top of ``still`` in ``motions``.
        max_objects, motions, entry_prob: as in :func:`sample_scene`.

    Returns:
        ``(frames uint8 T×H×W×3, caption str, scene SceneSpec)``.

    Raises:
        ValueError: bad seed, sizes, fps or probabilities.
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= still_prob <= 1.0:
        raise ValueError(f"still_prob must be in [0, 1], got {still_prob}")
    _check_size(num_frames, height, width, fps)
    rng = np.random.default_rng(int(seed))
    force_still = rng.random() < still_prob
    scene = sample_scene(rng, max_objects=max_objects, motions=("still",) if force_still else motions,
                         entry_prob=entry_prob)
    text = caption(scene, rng)
    return render(scene, num_frames, height, width, fps), text, scene


# --------------------------------------------------------------------------- parsing

_COLOR_WORDS = {w: c for c, ws in _COLOR_SYNONYMS.items() for w in ws if " " not in w}
_COLOR_WORDS.update({"gold": "yellow", "violet": "purple", "magenta": "purple", "lime": "green"})
_SHAPE_WORDS = {
    **{w: "circle" for w in ("circle", "circles", "ball", "balls", "disc", "discs", "disk", "disks", "dot", "dots",
                             "sphere", "circular")},
    **{w: "square" for w in ("square", "squares", "box", "boxes", "block", "blocks", "tile", "tiles", "cube")},
    **{w: "triangle" for w in ("triangle", "triangles", "triangular")},
}
_BG_WORDS = {"black": "black", "gray": "gray", "grey": "gray", "darkblue": "dark blue"}
_TEXTURE_WORDS = {"textured": True, "grainy": True, "mottled": True, "speckled": True, "noisy": True,
                  "patterned": True, "plain": False, "solid": False, "flat": False, "uniform": False}
_DIRECTION_WORDS = {
    **{w: "left" for w in ("left", "leftward", "leftwards")},
    **{w: "right" for w in ("right", "rightward", "rightwards")},
    **{w: "up" for w in ("up", "upward", "upwards", "rising", "rises", "rise", "climbing", "climbs", "ascending",
                         "ascends", "top")},
    **{w: "down" for w in ("down", "downward", "downwards", "falling", "falls", "fall", "sinking", "sinks",
                           "dropping", "drops", "descending", "descends", "bottom")},
    **{w: "still" for w in ("still", "static", "stationary", "motionless", "resting", "rests", "rest",
                            "immobile", "unmoving")},
}
_SPECIAL_WORDS = {
    **{w: "bounce" for w in ("bouncing", "bounces", "bounce", "bouncy", "hopping", "hops", "hop", "bobbing",
                             "bobs")},
    **{w: "orbit" for w in ("orbiting", "orbits", "orbit", "circling", "looping", "loops", "loop")},
}
_BG_NOUNS = {"background", "backdrop", "bg", "canvas", "backgrounds"}
_NEGATIONS = {"not", "t", "never", "no"}
_MOVE_WORDS = {"move", "moves", "moving", "motion"}
_FILLERS = {"a", "an", "the", "one", "single", "small", "little", "tiny", "big", "large", "huge", "bright",
            "pure", "shiny", "solid", "plain"}


def _tokens(text: str) -> list[str]:
    text = text.lower()
    text = re.sub(r"\b(?:dark|navy|midnight)[\s-]+blue\b", " darkblue ", text)
    text = re.sub(r"\bnavy\b", " darkblue ", text)
    return re.findall(r"[a-z]+", text)


def parse_prompt(text: str) -> PromptTarget:
    """Read colours, shapes, motions and background out of a prompt by keyword.

    Synonyms of the captions are understood (ball/disc → circle, box/block → square,
    "drifting left" / "from right to left" → left, "falling" → down, "not moving" /
    "static" → still, "bouncing" → bounce, "orbiting" / "circling" → orbit, navy →
    dark blue, grey → gray); unknown words are ignored. Each colour word (or a shape word
    with no colour before it) starts an object; motion words after it, up to the next
    object, belong to it, the last direction word winning ("from right to left" → left),
    and a still-adjective right before an object ("a static red ball") belongs to that
    object. An object with no motion word takes the motion of its neighbour ("a red
    circle and a blue square moving left" → both left). "dark blue"/"navy" is the
    background unless a shape word follows (then it is the object colour blue); an object
    colour right before "background"/"backdrop" names no object.

    Args:
        text: the prompt.

    Returns:
        A :class:`PromptTarget`; attributes the prompt does not name are ``None``.

    Raises:
        ValueError: the prompt names no colour, shape or motion of the shapes world.
    """
    if not isinstance(text, str):
        raise ValueError(f"prompt must be a string, got {type(text).__name__}")
    toks = _tokens(text)
    n = len(toks)
    # Per-token motion reading (negated "move" words count as still).
    motion_at: dict[int, str] = {}
    for i, tok in enumerate(toks):
        if tok in _SPECIAL_WORDS:
            motion_at[i] = _SPECIAL_WORDS[tok]
        elif tok in _DIRECTION_WORDS:
            # "top"/"bottom" are directions only as "to (the) top/bottom"
            if tok in ("top", "bottom") and not (toks[i - 1:i] == ["to"] or toks[max(0, i - 2):i] == ["to", "the"]):
                continue
            motion_at[i] = _DIRECTION_WORDS[tok]
        elif tok in _MOVE_WORDS and i > 0 and (toks[i - 1] in _NEGATIONS or (i > 1 and toks[i - 2] in _NEGATIONS)):
            motion_at[i] = "still"
    # Objects: colour words start one; a shape word joins the open object when only a few
    # non-motion words separate them, otherwise starts its own.
    objects: list[dict] = []
    background, texture = None, None
    for i, tok in enumerate(toks):
        colour = _COLOR_WORDS.get(tok)
        if tok == "darkblue":
            nxt = [t for t in toks[i + 1:i + 4] if t not in _FILLERS]
            if nxt and nxt[0] in _SHAPE_WORDS:
                colour = "blue"
            elif background is None:
                background = "dark blue"
        elif tok in _BG_WORDS and background is None:
            background = _BG_WORDS[tok]
        if tok in _TEXTURE_WORDS and texture is None:
            # "solid"/"flat"/"plain" only speak of texture near a background word
            near = toks[i + 1:i + 3]
            if _TEXTURE_WORDS[tok] or any(t in _BG_WORDS or t in ("background", "backdrop") for t in near):
                texture = _TEXTURE_WORDS[tok]
        if colour is not None and any(t in _BG_NOUNS for t in toks[i + 1:i + 3]):
            colour = None  # "on a white background": a background colour outside the world
        if colour is not None:
            objects.append({"color": colour, "shape": None, "start": i})
        elif tok in _SHAPE_WORDS:
            shape = _SHAPE_WORDS[tok]
            if objects and objects[-1]["shape"] is None and i - objects[-1]["start"] <= 4 and not any(
                    j in motion_at or toks[j] in _COLOR_WORDS for j in range(objects[-1]["start"] + 1, i)):
                objects[-1]["shape"] = shape
            else:
                objects.append({"color": None, "shape": shape, "start": i})
    if not objects and not motion_at:
        raise ValueError(f"prompt names no colour, shape or motion of the shapes world: {text!r}")
    if not objects:
        objects.append({"color": None, "shape": None, "start": 0})
    # Motion words → objects.
    starts = [o["start"] for o in objects] + [n]
    found: list[list[tuple[int, str]]] = [[] for _ in objects]
    for i, mot in sorted(motion_at.items()):
        k = max([j for j in range(len(objects)) if starts[j] <= i] or [0])
        # a motion word followed only by fillers and then the next object's start modifies that object
        if k + 1 < len(objects) and all(toks[j] in _FILLERS for j in range(i + 1, starts[k + 1])):
            k += 1
        found[k].append((i, mot))
    motions: list[str | None] = []
    for items in found:
        special = [m for _, m in items if m in ("bounce", "orbit")]
        motions.append(special[0] if special else (items[-1][1] if items else None))
    for k in range(len(motions)):
        if motions[k] is None:
            later = [m for m in motions[k + 1:] if m is not None]
            earlier = [m for m in motions[:k] if m is not None]
            motions[k] = later[0] if later else (earlier[-1] if earlier else None)
    return PromptTarget(
        objects=[TargetObject(color=o["color"], shape=o["shape"], motion=m) for o, m in zip(objects, motions)],
        background=background, texture=texture)


def scene_from_prompt(text: str, rng: np.random.Generator) -> SceneSpec:
    """A ground-truth scene for a prompt: named attributes kept, the rest drawn from ``rng``.

    Useful as a reference render for a prompt (e.g. to check the judge). Two objects
    with a horizontal and a vertical mover may cross (see :func:`_layout`).

    Raises:
        ValueError: the prompt is not parseable, or names more than two objects.
    """
    target = parse_prompt(text)
    if len(target.objects) > 2:
        raise ValueError(f"scenes hold one or two objects; the prompt names {len(target.objects)}")
    used = {o.color for o in target.objects if o.color}
    attrs = []
    for o in target.objects:
        color = o.color
        if color is None:
            free = [c for c in COLORS if c not in used]
            color = free[int(rng.integers(len(free)))]
            used.add(color)
        shape = o.shape or SHAPES[int(rng.integers(len(SHAPES)))]
        motion = o.motion or BASIC_MOTIONS[int(rng.integers(len(BASIC_MOTIONS)))]
        attrs.append((shape, color, motion))
    background = target.background or list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    texture = bool(target.texture) if target.texture is not None else False
    return SceneSpec(objects=_layout(rng, attrs), background=background, texture=texture,
                     texture_seed=int(rng.integers(2**31 - 1)))


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
        out.append(f"{_article(c)} {c} {s} {_EVAL_MOTION_TEXT[m]} on a {b} background")
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
