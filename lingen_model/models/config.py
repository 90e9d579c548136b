"""Denoiser configurations and the registry of named sizes.

One dataclass describes a denoiser; ``DENOISER_CONFIGS`` maps a size name to it, as
facebookresearch/DiT does with ``DiT_models``. Every size has a DiT twin: the same config
with ``mixer="attention"`` (full 3D self-attention instead of MATE).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lingen_model.schema import from_dict

MIXERS = ("mate", "attention")


@dataclass
class DenoiserConfig:
    """Hyper-parameters of the LinGen denoiser (and of its DiT twin).

    Attributes (units: tokens unless stated):
        in_channels: latent channels C of the VAE.
        patch_size: spatial patch p (the patch is 1×p×p latent voxels).
        width: model width d.
        depth: number of blocks.
        num_heads: attention heads (cross-attention, TESA and the DiT mixer); width % num_heads == 0.
        ffn_dim: hidden width of the SwiGLU FFN.
        text_dim: width D of the text-encoder tokens fed as context.
        mixer: ``"mate"`` (LinGen) or ``"attention"`` (DiT twin).
        d_state, expand, headdim, d_conv, ngroups, chunk_size: Mamba2 settings
            (names and defaults as in mamba_ssm's ``Mamba2``).
        review_size: r, review tokens per latent frame are r×r (0 disables).
        window: TESA window (Tw, Hw, Ww) in tokens; odd layers shift by half a window.
        pos_max_period_t: longest period (in latent frames) of the temporal sin-cos
            embedding. Keeping it near the training clip length makes the embedding
            periodic, so clips far longer than the training ones see no unseen phase.
        pos_max_period_hw: longest period of the spatial sin-cos embedding (tokens).
        qk_norm: RMS-normalise queries and keys in every attention.
        grad_checkpointing: recompute blocks in backward to save memory (training only).
    """

    in_channels: int = field(default=8, metadata={'ge': 1, 'le': 1024})
    patch_size: int = field(default=2, metadata={'ge': 1, 'le': 16})
    width: int = field(default=192, metadata={'ge': 1, 'le': 16384})
    depth: int = field(default=8, metadata={'ge': 1, 'le': 512})
    num_heads: int = field(default=3, metadata={'ge': 1, 'le': 256})
    ffn_dim: int = field(default=512, metadata={'ge': 1, 'le': 65536})
    text_dim: int = field(default=384, metadata={'ge': 1, 'le': 16384})
    mixer: str = field(default="mate", metadata={"choices": MIXERS})
    d_state: int = field(default=64, metadata={'ge': 1, 'le': 1024})
    expand: int = field(default=2, metadata={'ge': 1, 'le': 16})
    headdim: int = field(default=64, metadata={'ge': 1, 'le': 1024})
    d_conv: int = field(default=4, metadata={'ge': 1, 'le': 64})
    ngroups: int = field(default=1, metadata={'ge': 1, 'le': 256})
    chunk_size: int = field(default=64, metadata={'ge': 1, 'le': 4096})
    review_size: int = field(default=2, metadata={'ge': 0, 'le': 64})
    window: tuple[int, int, int] = (4, 4, 4)
    pos_max_period_t: float = field(default=8.0, metadata={'gt': 0})
    pos_max_period_hw: float = field(default=10000.0, metadata={'gt': 0})
    qk_norm: bool = True
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.window = tuple(int(w) for w in self.window)  # JSON gives lists
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if (self.expand * self.width) % self.headdim:
            raise ValueError(f"expand*width = {self.expand * self.width} is not divisible by headdim {self.headdim}")
        if len(self.window) != 3 or min(self.window) < 1:
            raise ValueError(f"window must be three positive ints (Tw, Hw, Ww), got {self.window}")
        for name in ("in_channels", "patch_size", "width", "depth", "ffn_dim", "text_dim", "d_state", "d_conv", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.review_size < 0:
            raise ValueError(f"review_size must be >= 0, got {self.review_size}")

    @property
    def d_inner(self) -> int:
        """Inner width of Mamba2 (expand × width)."""
        return self.expand * self.width

    @property
    def mamba_heads(self) -> int:
        """Number of Mamba2 heads (d_inner / headdim)."""
        return self.d_inner // self.headdim

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "denoiser config") -> "DenoiserConfig":
        """Build from a dict (missing keys take the defaults) with :func:`lingen_model.schema.from_dict`.

        Raises:
            InputError (a ValueError): an unknown key, a wrong type, or a value out of range,
                named with ``where``.
        """
        return from_dict(cls, d, where)


#: Registry of named sizes. ``tiny`` is the embedded CPU model; ``4b`` is paper scale
#: (LinGen-4B: width 3072, FFN 8192), used for benchmarks with random weights.
DENOISER_CONFIGS: dict[str, DenoiserConfig] = {
    "tiny": DenoiserConfig(),
    "small": DenoiserConfig(
        in_channels=16, width=768, depth=16, num_heads=12, ffn_dim=2048, text_dim=384,
        d_state=64, headdim=64, chunk_size=128, window=(4, 8, 8),
    ),
    "4b": DenoiserConfig(
        in_channels=16, width=3072, depth=24, num_heads=24, ffn_dim=8192, text_dim=4096,
        d_state=128, headdim=64, chunk_size=256, window=(8, 8, 8),
    ),
}


def get_config(name: str, mixer: str = "mate", **overrides: Any) -> DenoiserConfig:
    """Return a copy of the named config with ``mixer`` and any field overrides applied.

    Raises:
        ValueError: unknown size name, unknown override key, or an invalid resulting config.
    """
    if name not in DENOISER_CONFIGS:
        raise ValueError(f"unknown model size {name!r}; known: {', '.join(DENOISER_CONFIGS)}")
    base = DENOISER_CONFIGS[name].to_dict()
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ValueError(f"unknown config override(s): {', '.join(unknown)}")
    base.update(overrides)
    base["mixer"] = mixer
    return DenoiserConfig.from_dict(base)


__all__ = ["DenoiserConfig", "DENOISER_CONFIGS", "MIXERS", "get_config"]
