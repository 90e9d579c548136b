"""Rendering the shapes world: trajectories, anti-aliased shapes on a torus, backgrounds (conventions in
:mod:`lingen_model.shapes.world`)."""
from __future__ import annotations

import math

import numpy as np

from lingen_model.shapes.world import BACKGROUNDS, COLORS, LINEAR_MOTIONS, ObjectSpec, SceneSpec, TEXTURE_AMPLITUDE, _SQUARE_HALF, _TRIANGLE_INRADIUS

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


def check_clip_size(num_frames: int, height: int, width: int, fps: float) -> None:
    """Check a clip size for rendering: frames ≥ 1, height and width ≥ 8 pixels (integers), fps > 0 (frames/s).

    Raises:
        ValueError: naming the bad value.
    """
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
    check_clip_size(num_frames, height, width, fps)
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


