"""LinGenPipeline: the whole data path of ``lingen generate`` in one place.

    prompt ─► text encoder ─► context B×L×D, mask B×L                      (encode_prompt)
    seed ─► noise z₁ ~ N(0, I), B×C×T'×H'×W', T' = 1 + (frames−1)/4, H' = H/8   (prepare_latents)
    z₁ ─► rectified-flow sampler (Euler/Heun, time shift, CFG with "") ─► z₀   (denoise)
    z₀ ─► VAE decode in temporal chunks ─► uint8 T×H×W×3                     (decode)

(DESIGN.md §2; LinGen arXiv 2412.09856 §3; rectified flow as in SD3, Esser et al. 2024.)
Writing the mp4 is the CLI's job (``lingen_cli.video``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lingen_model.checkpoint import CheckpointError, load_checkpoint
from lingen_model.flow import sample, shift_for_tokens
from lingen_model.text_encoder import build_text_encoder

EMBEDDED_MODEL = "lingen-tiny"
#: progress(phase, done, total) with phase in {"encode", "denoise", "decode"}
Progress = Callable[[str, int, int], Any]


def embedded_model_path() -> Path:
    """Directory of the checkpoint shipped inside the package (may be absent in a source tree)."""
    return Path(__file__).resolve().parent / "weights" / EMBEDDED_MODEL


def _resolve(name_or_path: str | Path | None, allow_download: bool) -> Path:
    if name_or_path is None or str(name_or_path) == EMBEDDED_MODEL:
        path = embedded_model_path()
        if not (path / "config.json").is_file():
            raise CheckpointError(f"the embedded model {EMBEDDED_MODEL} is not installed in {path.parent}")
        return path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    try:  # registry names and ORG/REPO ids go through the model zoo (huggingface_hub)
        from lingen_cli.zoo import resolve_model
    except ImportError:
        raise CheckpointError(f"no checkpoint directory at {path}") from None
    return Path(resolve_model(str(name_or_path), allow_download=allow_download))


class LinGenPipeline:
    """Text-to-video pipeline: ``frames = pipe(prompt, num_frames=33, height=128, width=128, seed=0)``.

    Args:
        denoiser: a ``Denoiser``; vae: a ``CausalVideoVAE``; text_encoder: a ``TextEncoder``.
        config: the checkpoint's config.json dict (``native`` fps/height/width, ``sampling`` defaults).
        device, dtype: where and in which dtype the denoiser runs (the VAE stays float32).
        vae_chunk_frames: latent frames per VAE decode chunk (None = 4).
        offload_text_encoder: move the text encoder to CPU after encoding.
    """

    def __init__(self, denoiser, vae, text_encoder, config: dict, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, vae_chunk_frames: int | None = None,
                 offload_text_encoder: bool = False):
        self.denoiser, self.vae, self.text_encoder, self.config = denoiser, vae, text_encoder, config
        self.device, self.dtype = torch.device(device), dtype
        self.vae_chunk_frames = vae_chunk_frames or 4
        self.offload_text_encoder = offload_text_encoder
        self.timings: dict[str, float] = {}
        self.last_cache = None

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, allow_download: bool = True, **kwargs) -> "LinGenPipeline":
        """Load a pipeline from a checkpoint directory, ``lingen-tiny`` (embedded; also the default
        when ``name_or_path`` is None), a model-zoo name or an ``ORG/REPO[@REV]`` id.

        Raises:
            CheckpointError (a ValueError): missing, incomplete or corrupt checkpoint.
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or torch.float32
        path = _resolve(name_or_path, allow_download)
        denoiser, vae, cfg = load_checkpoint(path, device=device, dtype=dtype)
        text_encoder = build_text_encoder(cfg["text_encoder"], device=device)
        if text_encoder.dim != denoiser.config.text_dim:
            raise CheckpointError(f"{path}: text encoder width {text_encoder.dim} != denoiser text_dim {denoiser.config.text_dim}")
        pipe = cls(denoiser, vae, text_encoder, cfg, device=device, dtype=dtype, **kwargs)
        pipe.path = path
        return pipe

    # ------------------------------------------------------------------ settings
    @property
    def native(self) -> dict:
        """Native ``fps``, ``height``, ``width`` (frames/s, pixels) of the checkpoint."""
        return self.config["native"]

    @property
    def spatial_stride(self) -> int:
        """Pixels per token side: VAE spatial factor × patch size (height/width must divide by it)."""
        return self.vae.spatial_factor * self.denoiser.config.patch_size

    def check_size(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError unless frames = 1 + 4k ≥ 1 and height/width are positive multiples of the stride."""
        ft, s = self.vae.temporal_factor, self.spatial_stride
        if num_frames < 1 or (num_frames - 1) % ft:
            raise ValueError(f"num_frames must be 1 + {ft}·k (1, {1 + ft}, {1 + 2 * ft}, ...), got {num_frames}")
        if height < s or width < s or height % s or width % s:
            raise ValueError(f"height and width must be positive multiples of {s} pixels, got {width}x{height}")

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latent for a clip of ``num_frames`` × ``height`` × ``width``."""
        return (self.vae.latent_channels, 1 + (num_frames - 1) // self.vae.temporal_factor,
                height // self.vae.spatial_factor, width // self.vae.spatial_factor)

    # ------------------------------------------------------------------ phases
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B) → (context B×L×D, mask B×L bool) on the pipeline device."""
        self.text_encoder.to(self.device)
        ctx, mask = self.text_encoder.encode(prompts)
        if self.offload_text_encoder:
            self.text_encoder.offload()
        return ctx.to(self.device), mask.to(self.device)

    def prepare_latents(self, num_frames: int, height: int, width: int, seed: int, batch: int = 1) -> torch.Tensor:
        """Initial noise z₁ ~ N(0, I), B×C×T'×H'×W', drawn on the CPU from ``seed`` (same on every device)."""
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((batch, *self.latent_shape(num_frames, height, width)), generator=gen)
        return noise.to(self.device, self.dtype)

    @torch.no_grad()
    def denoise(self, noise, context, mask, uncond_context=None, uncond_mask=None, steps: int = 20,
                cfg_scale: float = 1.0, shift: float | None = None, method: str = "euler",
                progress: Progress | None = None, cache="none") -> torch.Tensor:
        """Integrate from t=1 (noise) to t=0 (latent). ``shift`` None: chosen from the token count.
        ``cache``: step caching, ``"none"`` | ``"delta"`` | ``"taylor"`` or a ``StepCache`` (see
        ``flow.sample``); the cache of the last run is left in ``self.last_cache`` (None if none)."""
        if shift is None:
            shift = self.config.get("sampling", {}).get("shift") or shift_for_tokens(
                int(np.prod(self.denoiser.token_grid(noise.shape))))

        self.last_cache = None

        def velocity(z, t, ctx, m, cache=None):
            self.last_cache = cache
            return self.denoiser(z, t.to(z.dtype), ctx, m, cache=cache)

        return sample(velocity, noise, steps, shift=shift, cfg_scale=cfg_scale, context=context, context_mask=mask,
                      uncond_context=uncond_context, uncond_mask=uncond_mask, method=method,
                      progress=(lambda k, n: progress("denoise", k, n)) if progress else None, cache=cache)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, progress: Progress | None = None) -> np.ndarray:
        """Latents B×C×T'×H'×W' → uint8 frames T×H×W×3 of the first sample (VAE decode in chunks)."""
        frames = self.vae.decode_uint8(latents[:1].float(), chunk_frames=self.vae_chunk_frames,
                                       progress=(lambda k, n: progress("decode", k, n)) if progress else None)
        return frames[0].cpu().numpy()  # uint8 chunks: peak memory does not grow with the clip

    # ------------------------------------------------------------------ all together
    def __call__(self, prompt: str, num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, fps: float | None = None, steps: int | None = None,
                 cfg_scale: float | None = None, seed: int = 0, shift: float | None = None,
                 method: str = "euler", negative_prompt: str = "", progress: Progress | None = None,
                 cache: str | None = None) -> np.ndarray:
        """Generate one clip. Returns uint8 ``T×H×W×3`` (T = num_frames, pixels H×W).

        Defaults come from the checkpoint: native height/width, 4 s at native fps, and its
        ``sampling`` steps / cfg_scale. ``fps`` only sets the default frame count. ``cache``: step
        caching (``"none"``, ``"delta"`` Δ-DiT, ``"taylor"`` TaylorSeer; see ``step_cache``); None
        takes the checkpoint's ``sampling.cache`` (``"none"`` when absent).
        Per-phase wall times (seconds) are left in ``self.timings``.

        Raises:
            ValueError: empty prompt, invalid frame count or size, steps < 1.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt must be a non-empty string")
        native, sampling = self.native, self.config.get("sampling", {})
        fps = fps or native["fps"]
        height, width = height or native["height"], width or native["width"]
        if num_frames is None:
            k = round(4.0 * fps / self.vae.temporal_factor)
            num_frames = 1 + self.vae.temporal_factor * max(k, 0)
        steps = steps or sampling.get("steps", 20)
        cache = sampling.get("cache", "none") if cache is None else cache
        cfg_scale = sampling.get("cfg_scale", 5.0) if cfg_scale is None else cfg_scale
        self.check_size(num_frames, height, width)
        timings = {}
        t0 = time.perf_counter()
        if progress:
            progress("encode", 0, 1)
        use_cfg = cfg_scale != 1.0
        ctx, mask = self.encode_prompt([prompt, negative_prompt] if use_cfg else [prompt])
        if progress:
            progress("encode", 1, 1)
        timings["encode_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        noise = self.prepare_latents(num_frames, height, width, seed)
        z0 = self.denoise(noise, ctx[:1], mask[:1], ctx[1:] if use_cfg else None, mask[1:] if use_cfg else None,
                          steps=steps, cfg_scale=cfg_scale, shift=shift, method=method, progress=progress,
                          cache=cache)
        timings["denoise_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames = self.decode(z0, progress=progress)
        timings["decode_s"] = time.perf_counter() - t0
        self.timings = timings
        return frames
