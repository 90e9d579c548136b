"""A cache of generated clips for ``lingen eval --frames-cache``: re-judging a model's clips
(after a change to the judge) without generating them again.

A clip is stored as an uncompressed ``.npy`` of its uint8 ``T×H×W×3`` frames under a name
that is the SHA-256 of everything that decides the frames: the model's weights (a digest
of every denoiser and VAE tensor) and the resolved request (prompt, seed, frame count, size,
sampling steps, CFG scale, sampler, step cache). A clip generated with other settings or other weights therefore never matches.
Generation is deterministic on the CPU for a given seed, so a cached clip is the clip that
``lingen eval`` would generate again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lingen_model.io.files import atomic_path


def weights_digest(*modules) -> str:
    """SHA-256 (hex) over the names, shapes, dtypes and bytes of every tensor in ``modules``' state dicts."""
    import torch

    h = hashlib.sha256()
    for m in modules:
        for name, t in sorted(m.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def clip_key(model_digest: str, settings: dict) -> str:
    """Hex SHA-256 naming one clip: the model digest and every setting that decides its frames
    (a resolved request's ``to_dict()``: prompt, seed, frames, size, steps, CFG scale, sampler, cache, ...)."""
    blob = json.dumps({"model": model_digest, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(cache_dir: Path, key: str) -> np.ndarray | None:
    """The cached frames for ``key``, or None when absent or unreadable."""
    path = Path(cache_dir) / f"{key}.npy"
    if not path.is_file():
        return None
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4:
        return None
    return frames


def store(cache_dir: Path, key: str, frames: np.ndarray) -> None:
    """Write ``frames`` under ``key`` atomically (temp file + rename)."""
    with atomic_path(Path(cache_dir) / f"{key}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(frames), allow_pickle=False)
