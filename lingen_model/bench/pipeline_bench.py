"""``lingen benchmark --pipeline``: time the whole generate path (encode / denoise / decode / mp4) with random weights."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lingen_model.bench.cells import BenchSettings, Cell
from lingen_model.bench.constants import LABELS

# ----------------------------------------------------------------------------- pipeline mode


class _RandomTextEncoder:
    """Stand-in text encoder (random tokens of width ``dim``) for sizes whose encoder is not installed."""

    def __init__(self, dim: int, length: int):
        self.dim, self.length = dim, length

    def to(self, *_a, **_k):
        return self

    def offload(self):
        return self

    def encode(self, prompts):
        import torch

        g = torch.Generator().manual_seed(0)
        return torch.randn(len(prompts), self.length, self.dim, generator=g), torch.ones(len(prompts), self.length, dtype=torch.bool)


def run_pipeline_benchmark(cells: list[Cell], settings: BenchSettings, cfg_scale: float = 5.0) -> dict:
    """Time ``generate``'s whole path per (cell, mixer) with random weights: text encoding,
    denoising (``settings.steps`` steps, CFG batch when ``cfg_scale != 1``), VAE decode, mp4 write.

    Returns {"settings", "pipeline": [ {res, length, mixer, encode_s, denoise_s, decode_s, write_s,
    total_s, shares{phase: fraction}} ]}. Runs in this process.
    """
    import tempfile

    import torch

    from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
    from lingen_model.io.video import write_mp4
    from lingen_model.models.denoiser import build_denoiser
    from lingen_model.models.vae import CausalVideoVAE, VAEConfig

    if settings.threads:
        torch.set_num_threads(settings.threads)
    mixers = ["mate"] + (["attention"] if settings.compare == "dit" else [])
    device, dtype = torch.device(settings.device), getattr(torch, settings.dtype)
    out = []
    encoder_cache: dict[int, Any] = {}
    for mixer in mixers:
        torch.manual_seed(0)
        with torch.device(device):
            den = build_denoiser(settings.model, mixer=mixer, **settings.overrides)
        den = den.to(dtype).eval()
        c = den.config
        vae = CausalVideoVAE(VAEConfig(latent_channels=c.in_channels)).to(device).eval()
        if c.text_dim not in encoder_cache:
            if c.text_dim == 384:
                from lingen_model.models.text_encoder import build_text_encoder

                encoder_cache[c.text_dim] = build_text_encoder({"backend": "minilm"}, device=device)
            else:
                encoder_cache[c.text_dim] = _RandomTextEncoder(c.text_dim, settings.text_len)
        enc = encoder_cache[c.text_dim]
        for cell in cells:
            config = {"native": {"fps": cell.fps, "height": cell.height, "width": cell.width},
                      "sampling": {"steps": settings.steps, "cfg_scale": cfg_scale}}
            pipe = LinGenPipeline(den, vae, enc, config, device=device, dtype=dtype)
            result = pipe.generate(GenerationRequest(
                "a red circle moving to the left on a gray background", num_frames=cell.frames,
                height=cell.height, width=cell.width, steps=settings.steps, cfg_scale=cfg_scale, seed=0))
            frames, tm = result.frames, dict(result.timings)
            with tempfile.TemporaryDirectory() as d:
                s = time.perf_counter()
                write_mp4(frames, Path(d) / "clip.mp4", cell.fps)
                tm["write_s"] = time.perf_counter() - s
            total = sum(tm.values())
            out.append({"res": cell.res_label, "length": cell.label, "frames": cell.frames, "seconds": cell.seconds,
                        "mixer": mixer, "label": LABELS[mixer], **tm, "total_s": total,
                        "shares": {k[:-2]: v / total for k, v in tm.items()},
                        "text_encoder": "minilm" if c.text_dim == 384 else "random stand-in"})
    return {"settings": asdict(settings), "pipeline": out, "cfg_scale": cfg_scale}


