"""lingen_model: the LinGen denoiser (MATE), its DiT twin, VAE, text encoder, sampler, pipeline.

Public API (imported lazily so that ``import lingen_model`` stays cheap)::

    from lingen_model import build_denoiser, LinGenPipeline
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_denoiser": "lingen_model.models.denoiser",
    "Denoiser": "lingen_model.models.denoiser",
    "DenoiserConfig": "lingen_model.models.config",
    "DENOISER_CONFIGS": "lingen_model.models.config",
    "LinGenPipeline": "lingen_model.generation.pipeline",
    "CausalVideoVAE": "lingen_model.models.vae",
    "VAEConfig": "lingen_model.models.vae",
    "build_text_encoder": "lingen_model.models.text_encoder",
    "sample": "lingen_model.generation.flow",
    "score_clip": "lingen_model.shapes.judge",
    "make_clip": "lingen_model.shapes.clips",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lingen_model' has no attribute {name!r}")
