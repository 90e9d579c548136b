"""Contact sheets: one PNG showing a clip's frames at a fixed interval, for looking at a long
clip at a glance instead of scrubbing through it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lingen_model.io.files import atomic_path


def sheet_interval(num_frames: int, fps: float) -> float:
    """Seconds between the frames of a sheet: 0.5 s for clips up to 8 s, else 2 s."""
    return 0.5 if num_frames / fps <= 8.0 else 2.0


def sheet_indices(num_frames: int, fps: float, every_s: float) -> np.ndarray:
    """Frame indices at times 0, every_s, 2·every_s, … within the clip (the nearest frame to each).

    Raises:
        ValueError: num_frames < 1, or fps / every_s not positive.
    """
    if num_frames < 1 or not fps > 0 or not every_s > 0:
        raise ValueError(f"need num_frames >= 1 and positive fps / interval, got {num_frames}, {fps}, {every_s}")
    duration = (num_frames - 1) / fps
    times = np.arange(0.0, duration + 1e-9, every_s)
    return np.unique(np.minimum(np.rint(times * fps).astype(np.int64), num_frames - 1))


LABEL_BAND = 14  # pixels above each row of frames for the time labels
TITLE_BAND = 16  # pixels at the top for the title


def tile(frames: np.ndarray, indices: np.ndarray, cols: int, gap: int = 2, band: int = LABEL_BAND,
         top: int = 0, fill: int = 255) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Frames ``indices`` of a uint8 ``T×H×W×3`` clip in a grid, row by row.

    Frames are ``gap`` pixels apart side by side; each row has a ``band``-pixel strip above it
    (for labels) and the sheet a ``top``-pixel strip (for a title). Empty space is ``fill``.

    Returns:
        ``(image, corners)``: uint8 image, and the (y, x) of each frame's top-left pixel.
    """
    _, h, w, _ = frames.shape
    rows = -(-len(indices) // cols)
    out = np.full((top + rows * (h + band), cols * w + (cols - 1) * gap, 3), fill, dtype=np.uint8)
    corners = []
    for k, i in enumerate(indices):
        r, c = divmod(k, cols)
        y, x = top + r * (h + band) + band, c * (w + gap)
        out[y:y + h, x:x + w] = frames[i]
        corners.append((y, x))
    return out, corners


def write_contact_sheet(frames: np.ndarray, path: str | Path, fps: float, every_s: float | None = None,
                        title: str | None = None) -> Path:
    """Write a PNG contact sheet of a uint8 ``T×H×W×3`` clip, atomically: one frame every
    ``every_s`` seconds (default :func:`sheet_interval`), up to 8 per row, at their own pixel
    size (frames are copied pixel for pixel), each labelled with its time above it.

    Raises:
        ValueError: frames not uint8 T×H×W×3, or a bad fps / interval.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array T×H×W×3, got {getattr(frames, 'shape', None)}")
    every_s = sheet_interval(len(frames), fps) if every_s is None else every_s
    idx = sheet_indices(len(frames), fps, every_s)
    top = TITLE_BAND if title else 0
    img, corners = tile(frames, idx, min(8, len(idx)), top=top)
    w = frames.shape[2]
    dpi = 100
    fig = Figure(figsize=(img.shape[1] / dpi, img.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    for i, (y, x) in zip(idx, corners):
        ax.text(x + w / 2, y - 2, f"{i / fps:.1f} s", ha="center", va="bottom", fontsize=7)
    if title:
        ax.text(2, 2, title, ha="left", va="top", fontsize=7)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
