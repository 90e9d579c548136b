"""Resumable training batches, split across data-parallel ranks by global sample index.

:class:`ShardedBatches` yields the same batches as :func:`lingen_model.training.data.batches` when it
runs on one process, and on ``world`` processes each rank gets rows ``rank·b … rank·b + b − 1``
of the global batch of ``world·b`` clips that one process would draw with batch size
``world·b``. Its position (``state_dict``: the Python RNG states and the clip counter) is
plain JSON and does not depend on the world size, so a run can resume on another number of
ranks at the same sample. Same contract as ``torch.utils.data.distributed.DistributedSampler``
(disjoint contiguous slices of one global order), written for endless procedural streams.
"""
from __future__ import annotations

import logging

import random
from typing import Any

import torch

from lingen_model.training.data import DataConfig, _load_clip, _to_tensor, list_folder


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: random.Random, state: list) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


class ShardedBatches:
    """Endless ``(video B×3×T×H×W, captions)`` batches of one rank; resumable.

    Args:
        cfg: the data config (shapes world or folder of mp4s).
        batch_size: clips per rank per batch (b).
        seed: stream seed (the world seed of clip ``i`` is ``seed·10⁹ + i``, as in ``data.shapes_batches``).
        rank, world: this rank and the number of data-parallel ranks.
        object_masks: shapes world only: yield ``(video, captions, masks)``, with masks
            B×1×T×H×W float32, 1 where an object is (:func:`lingen_model.shapes.clips.object_mask`),
            cropped like the video; for an object-weighted loss (``TrainConfig.object_weight``).

    The shapes world makes only this rank's clips. A folder stream reads every clip of the
    global batch on every rank (a window's start is drawn from the decoded clip's length,
    so skipping a peer's clip would shift the random stream); only this rank's rows are kept.

    Raises:
        ValueError: bad rank/world, ``object_masks`` for a folder, or (folder) a missing or empty folder.
    """

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 object_masks: bool = False):
        if not (0 <= rank < world) or batch_size < 1:
            raise ValueError(f"need 0 <= rank < world and batch_size >= 1, got rank {rank}, world {world}, "
                             f"batch_size {batch_size}")
        if object_masks and cfg.source != "shapes":
            raise ValueError(f"object masks come from the shapes world, not from source '{cfg.source}'")
        self.object_masks = object_masks
        self.cfg, self.batch_size, self.seed, self.rank, self.world = cfg, batch_size, seed, rank, world
        self.rng = random.Random(seed)
        self.crop_rng = random.Random(seed + 1)
        self.index = 0  # clips of the global stream consumed so far (shapes world)
        self.batches = 0  # global batches drawn so far
        self._pairs = list_folder(cfg.path) if cfg.source == "folder" else None
        self.skipped = 0  # folder clips that did not decode

    def __iter__(self) -> "ShardedBatches":
        return self

    def __next__(self) -> tuple:
        cfg, b = self.cfg, self.batch_size
        total = b * self.world
        lo = self.rank * b
        frames = cfg.draw_frames(self.rng)
        if cfg.source == "shapes":
            from lingen_model.shapes.clips import make_clip, object_mask

            clips, caps, masks = [], [], []
            for i in range(self.index + lo, self.index + lo + b):
                # still images show objects standing still, so no caption names an unseen motion
                video, caption, scene = make_clip(self.seed * 1_000_000_000 + i, frames, cfg.height, cfg.width,
                                                  cfg.fps, max_objects=cfg.max_objects,
                                                  motions=("still",) if frames == 1 else None,
                                                  entry_prob=cfg.entry_prob)
                clips.append(_to_tensor(video))
                caps.append(caption)
                if self.object_masks:
                    masks.append(torch.from_numpy(object_mask(video, scene)).float()[None])
            self.index += total
            video = torch.stack(clips)
        else:
            picks, loaded = [], []
            while len(loaded) < total:  # a clip that does not decode is dropped (on every rank alike) and counted
                if not self._pairs:
                    raise ValueError(f"no clip in {cfg.path} decodes ({self.skipped} skipped)")
                pick = self.rng.choice(self._pairs)
                try:
                    loaded.append(_load_clip(pick[0], cfg, frames, self.rng))
                    picks.append(pick)
                except Exception as e:  # noqa: BLE001 - any decoding failure of one file skips that file
                    self._pairs.remove(pick)
                    self.skipped += 1
                    why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    logging.getLogger("lingen.data").warning(
                        f"skipped {pick[0]} (does not decode: {why[:80]}); {self.skipped} clip(s) skipped so far")
            video, caps = torch.stack(loaded[lo:lo + b]), [c for _, c in picks[lo:lo + b]]
        self.batches += 1
        if cfg.crop:
            top = self.crop_rng.randrange(0, cfg.height - cfg.crop + 1)
            left = self.crop_rng.randrange(0, cfg.width - cfg.crop + 1)
            video = video[..., top:top + cfg.crop, left:left + cfg.crop]
            masks = [m[..., top:top + cfg.crop, left:left + cfg.crop] for m in masks]
        if self.object_masks:
            return video, caps, torch.stack(masks)
        return video, caps

    def state_dict(self) -> dict[str, Any]:
        """The stream position as JSON-able data (independent of rank and world size)."""
        return {"seed": self.seed, "index": self.index, "batches": self.batches,
                "rng": _rng_state(self.rng), "crop_rng": _rng_state(self.crop_rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (possibly saved on another world size).

        Raises ValueError when it belongs to a stream of another seed or is malformed."""
        try:
            if int(state["seed"]) != self.seed:
                raise ValueError(f"data position is for stream seed {state['seed']}, not {self.seed}")
            _set_rng_state(self.rng, state["rng"])
            _set_rng_state(self.crop_rng, state["crop_rng"])
            self.index, self.batches = int(state["index"]), int(state["batches"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed data position: {e}") from None
