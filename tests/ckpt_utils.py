"""Test helper: a tiny randomly initialised lingen checkpoint, made on the fly."""
from __future__ import annotations

from pathlib import Path

import torch

from lingen_model import build_denoiser
from lingen_model.generation.checkpoint import save_checkpoint
from lingen_model.models.vae import CausalVideoVAE, VAEConfig


def make_tiny_checkpoint(path: Path, seed: int = 0, mixer: str = "mate") -> Path:
    """Write a small random checkpoint (64×64 native at 8 fps, 2 sampling steps) to ``path``."""
    torch.manual_seed(seed)
    denoiser = build_denoiser("tiny", mixer=mixer, width=32, depth=2, num_heads=2, headdim=16, d_state=8,
                              ffn_dim=64, in_channels=4, chunk_size=16, window=(2, 2, 2))
    with torch.no_grad():  # non-zero output so that prompts and seeds change the video
        denoiser.final_linear.weight.normal_(0, 0.05)
    vae = CausalVideoVAE(VAEConfig(latent_channels=4, base_channels=8, channel_mult=(1, 1, 2, 2)))
    return save_checkpoint(path, denoiser, vae, {"backend": "minilm"}, {"fps": 8, "height": 64, "width": 64},
                           {"steps": 2, "cfg_scale": 3.0}, name="test-tiny")
