"""A tiny random Wan 2.1 text-to-video pipeline written in diffusers layout (for convert/e2e tests)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from test_text_encoder import _tiny_tokenizer

TEXT_DIM = 16


def tiny_wan_parts(seed: int = 0):
    """(transformer, vae, text_encoder) with random weights: Wan width 24 (2 heads × 12), 2 layers,
    4 latent channels; VAE ×4 spatial ×4 temporal; UMT5 width 16."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=TEXT_DIM, freq_dim=32, ffn_dim=40, num_layers=2, rope_max_seq_len=64)
    vae = diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1,
                                     temperal_downsample=[True, True], latents_mean=[0.3, -0.2, 0.1, 0.5],
                                     latents_std=[1.5, 0.7, 2.0, 1.1], scale_factor_spatial=4)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=32, d_model=TEXT_DIM, d_kv=4, d_ff=32, num_layers=2,
                                               num_heads=4, dropout_rate=0.0, relative_attention_num_buckets=8))
    return transformer.eval(), vae.eval(), text_encoder.eval()


def save_tiny_wan(root: Path, seed: int = 0) -> Path:
    """Write ``root/{transformer,vae,text_encoder,tokenizer}`` + model_index.json + LICENSE; return root."""
    from transformers.utils import logging as hf_logging

    transformer, vae, text_encoder = tiny_wan_parts(seed)
    root.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    try:
        transformer.save_pretrained(root / "transformer", safe_serialization=True)
        vae.save_pretrained(root / "vae", safe_serialization=True)
        text_encoder.save_pretrained(root / "text_encoder")
        _tiny_tokenizer().save_pretrained(root / "tokenizer")
    finally:
        hf_logging.enable_progress_bar()
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"], "scheduler": ["diffusers", "UniPCMultistepScheduler"]}))
    (root / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\n(tiny test copy)\n")
    return root
