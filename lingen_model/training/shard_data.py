"""Training batches from preprocessed shards (``lingen preprocess``), resumable, split across ranks.

Each epoch shuffles the samples of every bucket (samples of one latent shape, i.e. one
(frames, height, width)), cuts each bucket into global batches of ``batch_size × world``
samples (a remainder smaller than a batch waits for the next epoch's shuffle), and shuffles
the batches, all from ``Random(seed, epoch)``; rank ``r`` loads rows ``r·b … r·b + b − 1`` of
each global batch (the contract of ``torch.utils.data.distributed.DistributedSampler``:
disjoint slices of one global order). Loading runs in ``torch.utils.data.DataLoader``
workers when ``data.workers > 0``. The position (epoch, batches consumed in it) is JSON and,
for the same global batch size, the same on any number of ranks.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import torch


def read_manifest(path: str | Path) -> dict:
    """``manifest.json`` of a shard directory. Raises ValueError when missing or malformed."""
    file = Path(path) / "manifest.json"
    try:
        man = json.loads(file.read_text())
        man["samples"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a preprocessed shard directory (no readable manifest.json)") from None
    return man


def epoch_batches(samples: list[dict], global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches (lists of sample indices, one latent shape each) of one epoch."""
    rng = random.Random(seed * 1_000_003 + epoch)
    buckets: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        buckets.setdefault(tuple(s["latent_shape"]), []).append(i)
    out = []
    for key in sorted(buckets):
        idx = buckets[key]
        rng.shuffle(idx)
        out += [idx[i:i + global_batch] for i in range(0, len(idx) - global_batch + 1, global_batch)]
    rng.shuffle(out)
    return out


class _ShardRows(torch.utils.data.Dataset):
    """``dataset[list of sample indices]`` → (latents B×C×T×h×w, context B×L×D, mask B×L, captions)."""

    def __init__(self, root: Path, samples: list[dict]):
        self.root, self.samples = root, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, rows: list[int]):
        from safetensors import safe_open

        lat, ctx, mask, caps = [], [], [], []
        for i in rows:
            s = self.samples[i]
            with safe_open(str(self.root / s["shard"]), framework="pt") as f:
                lat.append(f.get_tensor(f"{s['key']}.latents"))
                ctx.append(f.get_tensor(f"{s['key']}.context"))
                mask.append(f.get_tensor(f"{s['key']}.mask").bool())
            caps.append(s["caption"])
        length = max(c.shape[0] for c in ctx)
        context = torch.zeros(len(rows), length, ctx[0].shape[1])
        masks = torch.zeros(len(rows), length, dtype=torch.bool)
        for k, (c, m) in enumerate(zip(ctx, mask)):
            context[k, :c.shape[0]], masks[k, :m.shape[0]] = c, m
        return torch.stack(lat), context, masks, caps


class ShardBatches:
    """Endless ``(latents, context, mask, captions)`` batches of one rank from a shard directory.

    Raises ValueError: not a shard directory, or no latent shape with ``batch_size × world`` samples.
    """

    def __init__(self, path: str | Path, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 workers: int = 0):
        self.root = Path(path)
        self.manifest = read_manifest(self.root)
        self.samples = self.manifest["samples"]
        self.batch_size, self.seed, self.rank, self.world, self.workers = batch_size, seed, rank, world, workers
        self.epoch, self.batch = 0, 0
        if not epoch_batches(self.samples, batch_size * world, seed, 0):
            raise ValueError(f"{path}: no latent shape has {batch_size * world} samples (batch_size × ranks)")
        self._it: Iterator | None = None

    def _loader(self) -> Iterator:
        lo = self.rank * self.batch_size
        rows = [b[lo:lo + self.batch_size] for b in epoch_batches(self.samples, self.batch_size * self.world,
                                                                   self.seed, self.epoch)[self.batch:]]
        return iter(torch.utils.data.DataLoader(_ShardRows(self.root, self.samples), sampler=rows, batch_size=None,
                                                num_workers=self.workers))

    def __iter__(self) -> "ShardBatches":
        return self

    def __next__(self):
        if self._it is None:
            self._it = self._loader()
        try:
            out = next(self._it)
        except StopIteration:  # end of the epoch
            self.epoch, self.batch = self.epoch + 1, 0
            self._it = self._loader()
            out = next(self._it)
        self.batch += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """The position: epoch and global batches consumed in it (JSON)."""
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at a :meth:`state_dict` position. Raises ValueError for another seed or bad data."""
        try:
            if int(state["seed"]) != self.seed:
                raise ValueError(f"data position is for seed {state['seed']}, not {self.seed}")
            self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed data position: {e}") from None
        self._it = None
