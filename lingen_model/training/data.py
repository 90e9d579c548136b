"""Training data: captioned video batches from the shapes world or from a folder of mp4s.

Both sources yield ``(video, captions)`` with video ``B×3×T×H×W`` float32 in [-1, 1]
(T = 1 for still images) and ``captions`` a list of B strings. Hybrid image/video
training (LinGen §4, as in most video diffusion recipes): with probability
``still_prob`` a batch is made of single frames.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class DataConfig:
    """Where training clips come from and their size.

    source: ``shapes`` (procedural world), ``folder`` (``*.mp4`` + same-named ``*.txt``) or
        ``shards`` (the output of ``lingen preprocess``: latents and text embeddings, read by
        ``lingen_model.training.shard_data``; frames/height/width/fps/crop then come from its manifest).
    path: the folder for ``folder``. height, width: pixels. fps: frames per second.
    frames: frames per clip (1 + 4k), or a list of such lengths: each batch draws one of
        them uniformly (multi-length training). still_prob: fraction of batches that are still images.
    max_objects: objects per shapes-world scene (1 or 2).
    entry_prob: shapes world: probability that a linear mover starts near the edge it
        comes from (``world.sample_scene``); 0 = anywhere, as before.
    crop: if set, batches are random crop×crop windows (pixels) of the H×W clips — cheaper
        steps for convolutional models (the VAE) at the same pixel scale.
    """

    source: str = field(default="shapes", metadata={"choices": ("shapes", "folder", "shards")})
    path: str | None = None
    height: int = field(default=128, metadata={"ge": 8, "le": 8192})
    width: int = field(default=128, metadata={"ge": 8, "le": 8192})
    fps: float = field(default=8.0, metadata={"gt": 0, "le": 240})
    frames: int | list[int] = 17
    still_prob: float = 0.2
    max_objects: int = field(default=2, metadata={"ge": 1, "le": 2})
    entry_prob: float = 0.0
    crop: int | None = None
    workers: int = field(default=0, metadata={"ge": 0, "le": 64})  # shards: DataLoader worker processes (0 = in process)

    def __post_init__(self) -> None:
        if self.source not in ("shapes", "folder", "shards"):
            raise ValueError(f"data.source must be 'shapes', 'folder' or 'shards', got {self.source!r}")
        if self.source in ("folder", "shards") and not self.path:
            raise ValueError(f"data.path is required for source '{self.source}'")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"data.workers must be a non-negative integer, got {self.workers!r}")
        if not self.lengths or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 or (f - 1) % 4
                                   for f in self.lengths):
            raise ValueError(f"data.frames must be 1 + 4k or a non-empty list of such lengths, got {self.frames}")
        if self.crop is not None and not (0 < self.crop <= min(self.height, self.width)):
            raise ValueError(f"data.crop must be in (0, min(height, width)], got {self.crop}")
        if not 0 <= self.still_prob <= 1:
            raise ValueError(f"data.still_prob must be in [0, 1], got {self.still_prob}")
        if isinstance(self.entry_prob, bool) or not isinstance(self.entry_prob, (int, float)) \
                or not 0 <= self.entry_prob <= 1:
            raise ValueError(f"data.entry_prob must be in [0, 1], got {self.entry_prob!r}")

    @property
    def lengths(self) -> list:
        """The clip lengths (frames) batches draw from: ``frames`` as a list."""
        return list(self.frames) if isinstance(self.frames, (list, tuple)) else [self.frames]

    def draw_frames(self, rng: random.Random) -> int:
        """Frames of the next batch: 1 with probability ``still_prob``, else one of ``lengths``, uniformly."""
        if rng.random() < self.still_prob:
            return 1
        lengths = self.lengths
        return lengths[0] if len(lengths) == 1 else rng.choice(lengths)  # one length: no extra draw


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 T×H×W×3 → float 3×T×H×W in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def shapes_batches(cfg: DataConfig, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Endless batches from the shapes world; clip ``i`` of the stream uses world seed ``seed·10⁹ + i``
    (disjoint streams for different ``seed`` values, e.g. one per DDP rank)."""
    from lingen_model.shapes.clips import make_clip

    rng = random.Random(seed)
    i = 0
    while True:
        frames = cfg.draw_frames(rng)
        clips, caps = [], []
        for _ in range(batch_size):
            # still images show objects standing still, so no caption names an unseen motion
            video, caption, _ = make_clip(seed * 1_000_000_000 + i, frames, cfg.height, cfg.width, cfg.fps,
                                          max_objects=cfg.max_objects, motions=("still",) if frames == 1 else None,
                                          entry_prob=cfg.entry_prob)
            i += 1
            clips.append(_to_tensor(video))
            caps.append(caption)
        yield torch.stack(clips), caps


def list_folder(path: str | Path) -> list[tuple[Path, str]]:
    """(mp4 path, caption) pairs of a folder: every ``X.mp4`` with an ``X.txt`` beside it.

    Raises ValueError when the folder is missing or holds no captioned mp4.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"data folder not found: {root}")
    pairs = []
    for mp4 in sorted(root.rglob("*.mp4")):
        txt = mp4.with_suffix(".txt")
        if txt.is_file():
            pairs.append((mp4, txt.read_text(encoding="utf-8").strip()))
    if not pairs:
        raise ValueError(f"no captioned videos (X.mp4 + X.txt) in {root}")
    return pairs


def _load_clip(path: Path, cfg: DataConfig, frames: int, rng: random.Random) -> torch.Tensor:
    """A random ``frames``-long window of an mp4, resampled to cfg.fps and resized/cropped to H×W."""
    from lingen_model.io.video import read_mp4  # imageio-ffmpeg reader

    video, fps = read_mp4(path)
    step = max(1, round(fps / cfg.fps))
    video = video[::step]
    if len(video) < frames:  # loop short clips
        video = np.concatenate([video] * (frames // len(video) + 1))
    start = rng.randrange(0, len(video) - frames + 1)
    x = _to_tensor(video[start:start + frames])  # 3×T×h×w
    h, w = x.shape[-2:]
    scale = max(cfg.height / h, cfg.width / w)
    x = F.interpolate(x, size=(max(cfg.height, round(h * scale)), max(cfg.width, round(w * scale))),
                      mode="bilinear", align_corners=False, antialias=True)
    top = (x.shape[-2] - cfg.height) // 2
    left = (x.shape[-1] - cfg.width) // 2
    return x[..., top:top + cfg.height, left:left + cfg.width].clamp(-1, 1)


def folder_batches(cfg: DataConfig, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Endless batches of random windows from the captioned mp4s of ``cfg.path``.

    A clip that does not decode (corrupt, empty, not a video) is skipped from then on, with one
    warning per clip on the ``lingen.data`` logger that counts them; ValueError when none is left.
    """
    import logging

    log = logging.getLogger("lingen.data")
    pairs = list_folder(cfg.path)
    rng = random.Random(seed)
    skipped = 0
    while True:
        frames = cfg.draw_frames(rng)
        clips, caps = [], []
        while len(clips) < batch_size:
            if not pairs:
                raise ValueError(f"no clip in {cfg.path} decodes ({skipped} skipped)")
            path, caption = rng.choice(pairs)
            try:
                clips.append(_load_clip(path, cfg, frames, rng))
                caps.append(caption)
            except Exception as e:  # noqa: BLE001 - any decoding failure of one file skips that file
                pairs.remove((path, caption))
                skipped += 1
                why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.warning(f"skipped {path} (does not decode: {why[:80]}); {skipped} clip(s) skipped so far")
        yield torch.stack(clips), caps


def batches(cfg: DataConfig, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Endless training batches from the configured source (randomly cropped if ``cfg.crop``)."""
    stream = shapes_batches(cfg, batch_size, seed) if cfg.source == "shapes" else folder_batches(cfg, batch_size, seed)
    if not cfg.crop:
        return stream
    rng = random.Random(seed + 1)

    def cropped():
        for video, caps in stream:
            top = rng.randrange(0, cfg.height - cfg.crop + 1)
            left = rng.randrange(0, cfg.width - cfg.crop + 1)
            yield video[..., top:top + cfg.crop, left:left + cfg.crop], caps

    return cropped()
