"""Wan 2.1's causal video VAE behind LinGen's VAE interface, with a streaming decode.

An adapter over ``diffusers.AutoencoderKLWan`` (Wan Team, arXiv 2503.20314 §3.1: causal
3D convolutions, ×8 spatial, ×4 temporal, a clip of ``1 + 4k`` frames ↔ ``1 + k`` latent
frames), pinned to the diffusers version it is tested with (``wan`` extra).

* Latents are normalised per channel: ``ẑ = (z − mean_c) / std_c`` with Wan's
  ``latents_mean``/``latents_std`` (the Wan pipelines' convention), so the denoiser sees
  the same latents as in diffusers.
* :meth:`WanVAE.iter_decode` streams: it feeds the decoder one chunk of latent frames at a
  time through the decoder's own causal cache (``feat_cache``; the first chunk is one
  latent frame, as in diffusers' ``_decode``) and yields each chunk of video as soon as it
  is decoded. diffusers' ``decode`` instead concatenates every frame into one tensor, so
  its memory grows with the clip; here it grows with the chunk only.

The ``config`` entry of a lingen checkpoint is ``{"arch": "wan", "diffusers": {…}}`` (the
``AutoencoderKLWan`` config); the weights are that model's state dict under ``model.``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn as nn

ProgressFn = Callable[[int, int], Any]
DIFFUSERS_PIN = "0.42"  # the diffusers minor version this adapter is tested with


class WanVAEConfig:
    """The VAE entry of a checkpoint config: ``{"arch": "wan", "diffusers": AutoencoderKLWan config}``."""

    def __init__(self, diffusers_config: dict[str, Any]):
        self.diffusers = {k: v for k, v in dict(diffusers_config).items() if not k.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"arch": "wan", "diffusers": dict(self.diffusers)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WanVAEConfig":
        """Build from a checkpoint's ``vae`` entry. Raises ValueError on another arch or keys."""
        if d.get("arch") != "wan" or not isinstance(d.get("diffusers"), dict) or set(d) - {"arch", "diffusers"}:
            raise ValueError("a Wan VAE config must be {'arch': 'wan', 'diffusers': {...}}")
        return cls(d["diffusers"])


def _autoencoder_cls():
    try:
        from diffusers import AutoencoderKLWan
    except ImportError:
        raise ImportError(f"the Wan VAE needs diffusers: pip install 'lingen[wan]' (diffusers=={DIFFUSERS_PIN}.*)") from None
    return AutoencoderKLWan


class WanVAE(nn.Module):
    """LinGen's VAE interface (``encode``, ``decode``, ``iter_decode``, ``decode_uint8``,
    ``spatial_factor``, ``temporal_factor``, ``latent_channels``) over ``AutoencoderKLWan``.

    Args:
        config: a :class:`WanVAEConfig` (or the ``AutoencoderKLWan`` config dict).

    Raises:
        ImportError: diffusers is not installed.
        ValueError: latents_mean/latents_std do not have ``z_dim`` entries.
    """

    def __init__(self, config: WanVAEConfig | dict[str, Any]):
        super().__init__()
        self.config = config if isinstance(config, WanVAEConfig) else WanVAEConfig(config)
        self.model = _autoencoder_cls().from_config(self.config.diffusers)
        c = self.model.config
        self.latent_channels = int(c.z_dim)
        self.temporal_factor = 2 ** sum(bool(x) for x in c.temperal_downsample)
        self.spatial_factor = 2 ** len(c.temperal_downsample) * int(c.patch_size or 1)
        mean, std = torch.tensor(c.latents_mean, dtype=torch.float32), torch.tensor(c.latents_std, dtype=torch.float32)
        if mean.shape != (self.latent_channels,) or std.shape != (self.latent_channels,):
            raise ValueError(f"latents_mean/latents_std must have z_dim={self.latent_channels} entries")
        self.register_buffer("latents_mean", mean.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("latents_std", std.view(1, -1, 1, 1, 1), persistent=False)

    @classmethod
    def from_diffusers(cls, model) -> "WanVAE":
        """Wrap (a copy of the weights of) a built ``AutoencoderKLWan``."""
        vae = cls(dict(model.config))
        vae.model.load_state_dict(model.state_dict())
        return vae

    def _param(self) -> torch.Tensor:
        return self.model.post_quant_conv.weight

    def _check_latents(self, z: torch.Tensor) -> tuple[int, int, int, int]:
        c = self.latent_channels
        if not isinstance(z, torch.Tensor) or z.dim() != 5 or z.shape[1] != c or min(z.shape) < 1:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"latents must be a B×{c}×T'×H'×W' tensor, got {shape}")
        return z.shape[0], z.shape[2], z.shape[3], z.shape[4]

    # ---------------------------------------------------------------- latents
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents → model latents ``(z − mean) / std`` (per channel)."""
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Model latents → raw latents ``z·std + mean``."""
        return z * self.latents_std.to(z) + self.latents_mean.to(z)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, chunk_frames: Optional[int] = None, **_) -> torch.Tensor:
        """``B×3×(1+4k)×H×W`` video in [-1, 1] → normalised latents (posterior mean), B×C×(1+k)×H/8×W/8.

        (diffusers' encoder is already chunked through its cache; ``chunk_frames`` is ignored.)
        """
        p = self._param()
        dist = self.model.encode(video.to(p.device, p.dtype)).latent_dist
        return self.normalize(dist.mode().float())

    # ---------------------------------------------------------------- decode
    def iter_decode(self, latents: torch.Tensor, chunk_frames: Optional[int] = 1,
                    progress: Optional[ProgressFn] = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Decode normalised latents chunk by chunk through the decoder's causal cache.

        Args:
            latents: ``B×C×T'×h×w`` normalised latents.
            chunk_frames: latent frames per chunk after the first (which is one latent
                frame, as the cache requires); None = all the rest at once.
            progress: ``progress(done_chunks, total_chunks)`` after each chunk.

        Yields:
            ``(first_frame, video)``: index of the chunk's first video frame and a
            ``B×3×t×8h×8w`` float tensor clamped to [-1, 1]; the chunks tile the
            ``1 + 4(T'−1)`` frames of diffusers' ``decode`` of the raw latents.

        Raises:
            ValueError: bad latent shape or chunk size.
        """
        _, t, _, _ = self._check_latents(latents)
        if chunk_frames is not None and (int(chunk_frames) != chunk_frames or chunk_frames < 1):
            raise ValueError(f"chunk_frames must be an integer >= 1 (latent frames) or None, got {chunk_frames!r}")
        n = t - 1 if chunk_frames is None else int(chunk_frames)
        bounds = [(0, 1)] + [(a, min(a + n, t)) for a in range(1, t, max(n, 1))]
        p, m = self._param(), self.model
        cache: list = [None] * sum(isinstance(x, type(m.post_quant_conv)) for x in m.decoder.modules())
        first = 0
        with torch.no_grad():
            for i, (a, e) in enumerate(bounds):
                z = self.denormalize(latents[:, :, a:e].to(p.device, torch.float32)).to(p.dtype)
                y = m.decoder(m.post_quant_conv(z), feat_cache=cache, feat_idx=[0], first_chunk=(i == 0))
                if m.config.patch_size is not None:
                    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

                    y = unpatchify(y, patch_size=m.config.patch_size)
                y = y.clamp_(-1.0, 1.0)
                if progress is not None:
                    progress(i + 1, len(bounds))
                yield first, y
                first += y.shape[2]
                del y, z

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_frames: Optional[int] = 1,
               progress: Optional[ProgressFn] = None) -> torch.Tensor:
        """Normalised latents → ``B×3×(1+4(T'−1))×8h×8w`` float video in [-1, 1] (whole clip in memory)."""
        return torch.cat([y.float() for _, y in self.iter_decode(latents, chunk_frames, progress)], dim=2)

    @torch.no_grad()
    def decode_uint8(self, latents: torch.Tensor, chunk_frames: Optional[int] = 1,
                     progress: Optional[ProgressFn] = None) -> torch.Tensor:
        """Normalised latents → ``B×T×H×W×3`` uint8 frames ``round((x + 1)·127.5)``, converted chunk by chunk."""
        b, t, h, w = self._check_latents(latents)
        fs = self.spatial_factor
        out = torch.empty((b, 1 + self.temporal_factor * (t - 1), h * fs, w * fs, 3), dtype=torch.uint8)
        for f0, y in self.iter_decode(latents, chunk_frames, progress):
            out[:, f0:f0 + y.shape[2]] = ((y.float() + 1.0) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()
        return out
