"""lingen_model: the LinGen denoiser (MATE), its DiT twin, VAE, text encoder, sampler, pipeline.

Public API (imported lazily so that ``import lingen_model`` stays cheap)::

    from lingen_model import build_denoiser, LinGenPipeline
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_denoiser": "lingen_model.denoiser",
    "Denoiser": "lingen_model.denoiser",
    "DenoiserConfig": "lingen_model.config",
    "DENOISER_CONFIGS": "lingen_model.config",
    "LinGenPipeline": "lingen_model.pipeline",
    "CausalVideoVAE": "lingen_model.vae",
    "VAEConfig": "lingen_model.vae",
    "build_text_encoder": "lingen_model.text_encoder",
    "sample": "lingen_model.flow",
    "score_clip": "lingen_model.judge",
    "make_clip": "lingen_model.world",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lingen_model' has no attribute {name!r}")
