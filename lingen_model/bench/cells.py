"""Benchmark cells: (resolution, length) points parsed like ``lingen generate`` options, with the latent each maps to."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from lingen_model.errors import InputError
from lingen_model.geometry import SPATIAL_FACTOR, TEMPORAL_FACTOR, latent_grid

# ----------------------------------------------------------------------------- cells


@dataclass
class Cell:
    """One (resolution, length) point: pixels, frames and the latent it maps to.

    Attributes: width, height (pixels); frames; fps (frames/s); label (length as asked);
    latent (T', H', W') latent voxels; note (how the length was rounded, or None).
    """

    width: int
    height: int
    frames: int
    fps: float
    label: str
    latent: tuple[int, int, int]
    note: Optional[str] = None

    @property
    def seconds(self) -> float:
        """Clip length in seconds (frames / fps)."""
        return self.frames / self.fps

    @property
    def res_label(self) -> str:
        """``WxH`` (or ``S`` for a square)."""
        return str(self.width) if self.width == self.height else f"{self.width}x{self.height}"


def parse_cells(res: str, lengths: str, fps: float, stride: int = SPATIAL_FACTOR * 2) -> list[Cell]:
    """Cells for comma-separated resolutions (``512``, ``512x288``, named sizes of presets/sizes.yaml)
    and lengths (``4s``, ``60s``, ``97f``, named lengths) at ``fps``; lengths are rounded to the
    nearest 1 + 4k frames (the VAE's grid). Same parsers as ``generate`` (:mod:`lingen_model.geometry`).

    Raises:
        InputError: an unreadable resolution or length, a size not divisible by ``stride``
            (VAE factor × patch), a non-positive fps, or an empty list.
    """
    from lingen_model.geometry import frames_for_length, parse_resolution

    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"fps must be > 0, got {fps}")
    sizes = _named_sizes()
    res_items = [r.strip() for r in str(res).split(",") if r.strip()]
    len_items = [x.strip() for x in str(lengths).split(",") if x.strip()]
    if not res_items or not len_items:
        raise InputError("--res and --length need at least one value each (e.g. --res 512 --length 4s,17s)")
    cells = []
    for r in res_items:
        w, h = parse_resolution(sizes["resolutions"].get(r, r), stride=stride)
        for item in len_items:
            frames, note = frames_for_length(sizes["lengths"].get(item, item), fps, TEMPORAL_FACTOR)
            cells.append(Cell(w, h, frames, fps, item, latent_grid(frames, h, w), note))
    return cells


def _named_sizes() -> dict[str, dict[str, str]]:
    try:
        from lingen_model.presets import load_sizes

        return load_sizes()
    except Exception:  # presets are a convenience here; plain values still parse
        return {"resolutions": {}, "lengths": {}}


@dataclass
class BenchSettings:
    """Everything a run depends on (stored in the JSON). Units: seconds, tokens, frames/s."""

    model: str = "tiny"
    compare: str = "dit"
    device: str = "cpu"
    dtype: str = "float32"
    steps: int = 50
    repeats: int = 3
    warmup: int = 1
    batch: int = 1
    text_len: int = 64
    threads: Optional[int] = None
    cell_timeout: Optional[float] = 1200.0
    flops_only: bool = False
    overrides: dict = field(default_factory=dict)
