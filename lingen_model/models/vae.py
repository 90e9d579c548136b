"""Causal 3D-convolution video autoencoder (VAE) with chunked, cached encode/decode.

Compresses a video ``B×3×T×H×W`` (T = 1 + 4k frames, values in [-1, 1]) into latents
``B×C×(1+k)×H/8×W/8`` and back (docs/design.md §5).

Method. The layout follows the causal video VAEs of CogVideoX (Yang et al. 2024,
arXiv 2408.06072, §2.1 "3D causal VAE") and Wan 2.1 (arXiv 2503.20314, "Wan-VAE"):
every temporal convolution is *causal* (the time axis is padded on the past side only,
with copies of the first frame), so output frame ``i`` depends only on input frames
``<= i`` and the first frame is encoded and decoded on its own, as an image; temporal
down/up-sampling by 2 keeps the first frame alone, so ``1 + 2m`` frames map to
``1 + m``. Because nothing looks into the future, a long clip can be processed in
temporal chunks: every causal temporal convolution keeps the last input frames it still
needs (its *causal cache*) from one chunk to the next, which makes chunked processing
equal to whole-clip processing while the activation memory depends only on the chunk
length. Normalisation is a per-pixel LayerNorm over channels (Wan 2.1 uses a per-pixel
RMS norm), never a statistic over time or space, so chunking cannot change it.

Implementation notes (CPU speed): activations are 4D ``(B·T)×C×H×W`` tensors in
``channels_last`` memory format, so every layer is a 2D convolution over a batch of
frames; a causal ``kt×k×k`` convolution stacks the ``kt`` time-shifted frames along the
channel axis and runs one 2D convolution (mathematically identical to ``conv3d`` with
front padding; the parameter keeps the ``nn.Conv3d`` weight shape). Full-resolution
stages are thin and purely spatial; temporal mixing happens at 1/4 and 1/8 resolution.
Without autograd, convolutions run one frame per call so that every frame's arithmetic
is the same however the clip is chunked (see ``CausalConv3d._conv2d``).

On a CPU shared with other processes, set ``OMP_WAIT_POLICY=PASSIVE`` before importing
torch: spinning OpenMP threads otherwise slow these many small calls down several-fold.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from lingen_model.geometry import latent_frames, pixel_frames
from lingen_model.schema import from_dict

__all__ = ["VAEConfig", "CausalVideoVAE", "CausalCache", "CausalConv3d", "vae_loss"]

ProgressFn = Callable[[int, int], None]

_LOGVAR_MIN, _LOGVAR_MAX = -30.0, 20.0


# --------------------------------------------------------------------------- config
@dataclass
class VAEConfig:
    """Hyper-parameters of :class:`CausalVideoVAE`.

    Attributes:
        in_channels: video channels (3 for RGB).
        latent_channels: latent channels ``C`` (8 for the tiny model, 16 at scale).
        base_channels: width of the full-resolution stage.
        channel_mult: width multiplier per resolution level; level ``i`` runs at
            ``H/2**i``. There are ``len(channel_mult) - 1`` spatial ×2 resamplings, so
            ``spatial_factor`` must equal ``2 ** (len(channel_mult) - 1)``.
        num_res_blocks: residual blocks per level below full resolution in the encoder;
            the decoder uses one more there, as in the LDM autoencoder (Rombach et al. 2022).
        encoder_full_res_blocks, decoder_full_res_blocks: residual blocks at full
            resolution (kept small: on CPU the full-resolution stage dominates the cost).
        spatial_factor: spatial compression ``fs`` (pixels per latent pixel per side).
        temporal_factor: temporal compression ``ft`` (a power of 2); the temporal ×2
            resamplings sit at the deepest ``log2(ft)`` level transitions.
        temporal_kernel: time extent ``kt`` of the causal 3D convolutions.
        output_norm: a per-pixel LayerNorm before the latent and RGB output convolutions.
            Off by default: on flat regions it removes the feature magnitude, i.e. the
            intensity, and a trained VAE then mapped black and dark blue (and gray, red,
            white) to one colour each. Without it the heads read the residual stream
            linearly (no SiLU: un-normalised pre-activations drifted all-negative and the
            decoder lost every object colour).
        scaling_factor, shift_factor: latent normalisation used by ``encode``/``decode``:
            ``normalized = (z - shift_factor) * scaling_factor``.

    Raises:
        ValueError: on non-positive sizes or inconsistent factors.
    """

    in_channels: int = 3
    latent_channels: int = 8
    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 1
    encoder_full_res_blocks: int = 0
    decoder_full_res_blocks: int = 1
    spatial_factor: int = 8
    temporal_factor: int = 4
    temporal_kernel: int = 3
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    output_norm: bool = False

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        for name in ("in_channels", "latent_channels", "base_channels", "spatial_factor",
                     "temporal_factor", "temporal_kernel"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VAEConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("num_res_blocks", "encoder_full_res_blocks", "decoder_full_res_blocks"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"VAEConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"VAEConfig.channel_mult must be non-empty positive ints, got {self.channel_mult}")
        levels = len(self.channel_mult) - 1
        if self.spatial_factor != 2 ** levels:
            raise ValueError(
                f"VAEConfig.spatial_factor must be 2**(len(channel_mult)-1) = {2 ** levels}, "
                f"got {self.spatial_factor}")
        tl = int(round(math.log2(self.temporal_factor)))
        if 2 ** tl != self.temporal_factor or tl > levels:
            raise ValueError(
                f"VAEConfig.temporal_factor must be a power of 2 at most {2 ** levels}, "
                f"got {self.temporal_factor}")
        if self.scaling_factor == 0 or not math.isfinite(self.scaling_factor):
            raise ValueError(f"VAEConfig.scaling_factor must be finite and non-zero, got {self.scaling_factor}")

    @property
    def num_temporal_downsamples(self) -> int:
        """Number of temporal ×2 resamplings, ``log2(temporal_factor)``."""
        return int(round(math.log2(self.temporal_factor)))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of every field (``channel_mult`` as a list)."""
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "VAE config") -> "VAEConfig":
        """Inverse of :meth:`to_dict`, with :func:`lingen_model.schema.from_dict`.

        Raises:
            InputError (a ValueError): naming unknown keys, keys that are missing (every field
                must be given, so a saved config never silently picks up changed defaults),
                wrong types or bad values.
        """
        return from_dict(cls, d, where, require_all=True)


# --------------------------------------------------------------------------- cache
class CausalCache:
    """Per-call state for chunked (streaming) processing.

    Maps each causal temporal layer to the input frames it still needs from the previous
    chunk (a tensor ``B×t×H×W×C``), and records which layers have already seen the first
    chunk. A fresh cache must be used for every new clip.
    """

    def __init__(self) -> None:
        self.frames: dict[nn.Module, torch.Tensor] = {}
        self.seen: set[nn.Module] = set()

    def first_call(self, module: nn.Module) -> bool:
        """True the first time ``module`` asks (i.e. for the chunk holding frame 0)."""
        if module in self.seen:
            return False
        self.seen.add(module)
        return True


def _nhwc(x: torch.Tensor, b: int) -> torch.Tensor:
    """View a channels_last ``(b·T)×C×H×W`` tensor as ``b×T×H×W×C`` (no copy if contiguous)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, n // b, h, w, c)


def _nchw(x5: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_nhwc`: ``b×T×H×W×C`` → channels_last ``(b·T)×C×H×W``."""
    b, t, h, w, c = x5.shape
    return x5.reshape(b * t, h, w, c).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- layers
class CausalConv3d(nn.Module):
    """3D convolution that is causal in time, run as a 2D convolution over frames.

    Input/output: channels_last ``(B·T)×C×H×W`` with the batch size ``b`` given
    separately. Time is padded on the past side only: with ``kt`` the temporal kernel and
    ``st`` the temporal stride, output frame ``j`` reads input frames
    ``st·j - (kt-1) … st·j`` (frames before 0 are copies of frame 0), so it never depends on
    a later frame. Space uses zero "same" padding (``k//2``) and stride ``ss``.
    Equivalent to ``F.conv3d`` on the front-padded clip with ``stride=(st, ss, ss)``.

    Streaming: when called with a :class:`CausalCache`, the input frames that later
    outputs still need are kept in the cache, so calling on consecutive chunks gives the
    same frames as one call on the whole clip. Without a cache every call is a new clip.

    The weight has the ``nn.Conv3d`` shape ``C_out×C_in×kt×k×k``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int] = (3, 3),
                 stride_t: int = 1, stride_s: int = 1, bias: bool = True) -> None:
        super().__init__()
        kt, ks = kernel
        if ks % 2 != 1:
            raise ValueError(f"spatial kernel must be odd, got {ks}")
        self.kt, self.ks, self.st, self.ss = kt, ks, stride_t, stride_s
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kt, ks, ks))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform init, the same as ``nn.Conv3d``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def _conv2d(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        pad = self.ks // 2
        # a channels_last weight keeps oneDNN's output channels_last (with 3 input
        # channels it would otherwise fall back to NCHW)
        w = w.contiguous(memory_format=torch.channels_last)
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            # training: one batched call (fast backward)
            return F.conv2d(x, w, self.bias, stride=self.ss, padding=pad)
        # Inference: one call per frame. PyTorch picks the CPU convolution backend and
        # oneDNN its blocking from the batch size, which changes the float summation
        # order; batched calls would make chunked and whole-clip results differ by float
        # rounding (~1e-5 after ~30 layers). Per-frame calls give every frame the same
        # computation however the clip is chunked (bitwise equal), at the same CPU speed.
        if x.shape[0] <= 1:
            return F.conv2d(x, w, self.bias, stride=self.ss, padding=pad)
        return torch.cat([F.conv2d(f, w, self.bias, stride=self.ss, padding=pad) for f in x.split(1)])

    def forward(self, x: torch.Tensor, b: int, cache: Optional[CausalCache] = None) -> torch.Tensor:
        """``x``: ``(b·T)×C_in×H×W`` → ``(b·T_out)×C_out×H/ss×W/ss`` (channels_last)."""
        if self.kt == 1 and self.st == 1:  # purely spatial: no state
            return self._conv2d(x, self.weight[:, :, 0])
        x5 = _nhwc(x, b)
        prev = cache.frames.get(self) if cache is not None else None
        if prev is None:  # start of a clip: the past is copies of frame 0
            prev = x5[:, :1].expand(-1, self.kt - 1, -1, -1, -1)
        buf = torch.cat([prev, x5], dim=1) if prev.shape[1] else x5
        n_out = (buf.shape[1] - self.kt) // self.st + 1 if buf.shape[1] >= self.kt else 0
        if cache is not None:
            cache.frames[self] = buf[:, n_out * self.st:].clone()
        _, _, h, w, c = buf.shape
        if n_out == 0:
            ho, wo = (h - 1) // self.ss + 1, (w - 1) // self.ss + 1
            return x.new_zeros((0, self.out_channels, ho, wo)).contiguous(memory_format=torch.channels_last)
        span = self.st * (n_out - 1) + 1
        taps = [buf[:, i:i + span:self.st] for i in range(self.kt)]
        stacked = torch.cat(taps, dim=-1) if self.kt > 1 else taps[0]
        w2 = self.weight.permute(0, 2, 1, 3, 4).reshape(self.out_channels, self.kt * c, self.ks, self.ks)
        return self._conv2d(_nchw(stacked), w2)


class ChannelLayerNorm(nn.Module):
    """Per-pixel LayerNorm over channels (ConvNeXt's "channels_last" LayerNorm,
    Liu et al. 2022, arXiv 2201.03545 §2.6).

    ``y = (x - mean_c x) / sqrt(var_c x + eps) · γ + β`` at every (frame, y, x): no
    statistic spans time or space, so chunked processing is exact (the Wan 2.1 VAE uses a
    per-pixel RMS norm for the same reason; LayerNorm has a single fused CPU kernel, about
    2-3× faster here). Input/output ``N×C×H×W`` channels_last.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    """Pre-activation residual block: (norm → SiLU → conv) ×2 plus a 1×1 skip.

    ``temporal=True`` makes both convolutions causal ``kt×3×3``; otherwise ``1×3×3``
    (per frame). Shapes: ``(b·T)×C_in×H×W`` → ``(b·T)×C_out×H×W``.
    """

    def __init__(self, cin: int, cout: int, temporal: bool, kt: int) -> None:
        super().__init__()
        k = (kt if temporal else 1, 3)
        self.norm1 = ChannelLayerNorm(cin)
        self.conv1 = CausalConv3d(cin, cout, k)
        self.norm2 = ChannelLayerNorm(cout)
        self.conv2 = CausalConv3d(cout, cout, k)
        self.skip = CausalConv3d(cin, cout, (1, 1)) if cin != cout else None

    def forward(self, x: torch.Tensor, b: int, cache: Optional[CausalCache]) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), b, cache)
        h = self.conv2(F.silu(self.norm2(h)), b, cache)
        return (x if self.skip is None else self.skip(x, b, cache)) + h


class Downsample(nn.Module):
    """Spatial ×2 (stride-2 3×3 conv), optionally followed by causal temporal ×2.

    The temporal step is a causal ``kt×1×1`` conv with temporal stride 2, so ``1 + 2m``
    frames become ``1 + m``: output ``j`` reads frames ``2j-kt+1 … 2j``, and output 0 only
    frame 0. Its last tap is initialised to the identity (keep the newest frame).
    """

    def __init__(self, cin: int, cout: int, temporal: bool, kt: int) -> None:
        super().__init__()
        self.spatial = CausalConv3d(cin, cout, (1, 3), stride_s=2)
        self.temporal = CausalConv3d(cout, cout, (kt, 1), stride_t=2) if temporal else None
        if self.temporal is not None:
            with torch.no_grad():
                self.temporal.weight.zero_()
                self.temporal.weight[:, :, -1, 0, 0] = torch.eye(cout)
                self.temporal.bias.zero_()

    def forward(self, x: torch.Tensor, b: int, cache: Optional[CausalCache]) -> torch.Tensor:
        x = self.spatial(x, b, cache)
        return x if self.temporal is None else self.temporal(x, b, cache)


class Upsample(nn.Module):
    """Optional causal temporal ×2, then spatial ×2 (nearest + 3×3 conv).

    Temporal ×2 (CogVideoX / Wan style): a causal ``kt×1×1`` conv maps ``C`` to ``2C``
    channels, read as two frames per input frame; for the very first frame of a clip the
    first of the pair is dropped, so ``1 + m`` frames become ``1 + 2m``. The last tap is
    initialised to the identity (nearest-neighbour in time).
    """

    def __init__(self, cin: int, cout: int, temporal: bool, kt: int) -> None:
        super().__init__()
        self.temporal = CausalConv3d(cin, 2 * cin, (kt, 1)) if temporal else None
        if self.temporal is not None:
            with torch.no_grad():
                self.temporal.weight.zero_()
                eye = torch.eye(cin)
                self.temporal.weight[:cin, :, -1, 0, 0] = eye
                self.temporal.weight[cin:, :, -1, 0, 0] = eye
                self.temporal.bias.zero_()
        self.spatial = CausalConv3d(cin, cout, (1, 3))

    def forward(self, x: torch.Tensor, b: int, cache: Optional[CausalCache]) -> torch.Tensor:
        if self.temporal is not None:
            first = cache.first_call(self) if cache is not None else True
            y5 = _nhwc(self.temporal(x, b, cache), b)  # b×T×H×W×2C
            bb, t, h, w, c2 = y5.shape
            y5 = y5.reshape(bb, t, h, w, 2, c2 // 2).permute(0, 1, 4, 2, 3, 5)
            y5 = y5.reshape(bb, 2 * t, h, w, c2 // 2)
            if first:
                y5 = y5[:, 1:]
            x = _nchw(y5.contiguous())
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.spatial(x, b, cache)


def _level_plan(cfg: VAEConfig) -> tuple[list[int], list[bool]]:
    """Widths per level and whether transition ``i → i+1`` also resamples time."""
    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    n_levels = len(widths)
    first_t = n_levels - 1 - cfg.num_temporal_downsamples
    temporal_step = [i >= first_t for i in range(n_levels - 1)]
    return widths, temporal_step


class VideoEncoder(nn.Module):
    """Video ``(b·T)×3×H×W`` frames → posterior moments ``(b·T')×2C×H/fs×W/fs``.

    Levels run at ``H/2**i``; residual blocks are per-frame (``1×3×3``) until the time
    axis starts being downsampled, causal ``kt×3×3`` from there on and in the middle block.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths, t_step = _level_plan(cfg)
        kt = cfg.temporal_kernel
        self.conv_in = CausalConv3d(cfg.in_channels, widths[0], (1, 3))
        self.blocks = nn.ModuleList()
        cin = widths[0]
        for i, wdt in enumerate(widths):
            temporal = i > 0 and t_step[i - 1]
            n_blocks = cfg.num_res_blocks if i > 0 else cfg.encoder_full_res_blocks
            for _ in range(n_blocks):
                self.blocks.append(ResBlock(cin, wdt, temporal, kt))
                cin = wdt
            if i < len(widths) - 1:
                nxt = widths[i + 1]
                self.blocks.append(Downsample(cin, nxt, t_step[i], kt))
                cin = nxt
        self.mid = ResBlock(cin, cin, True, kt)
        self.norm_out = ChannelLayerNorm(cin) if cfg.output_norm else nn.Identity()
        # with the norm: norm → SiLU → conv; without: a linear read-out of the residual stream
        # (a SiLU on un-normalised features went all-negative in training and lost all colour)
        self._head_act = F.silu if cfg.output_norm else (lambda t: t)
        self.conv_out = CausalConv3d(cin, 2 * cfg.latent_channels, (kt, 3))
        # without a full-resolution block, put a nonlinearity between the two first convs
        self.act_in = cfg.encoder_full_res_blocks == 0

    def forward(self, x: torch.Tensor, b: int, cache: Optional[CausalCache]) -> torch.Tensor:
        x = self.conv_in(x, b, cache)
        if self.act_in:
            x = F.silu(x)
        for blk in self.blocks:
            x = blk(x, b, cache)
        x = self.mid(x, b, cache)
        return self.conv_out(self._head_act(self.norm_out(x)), b, cache)


class VideoDecoder(nn.Module):
    """Latent frames ``(b·T')×C×h×w`` → video frames ``(b·T)×3×8h×8w`` (mirror of the encoder)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths, t_step = _level_plan(cfg)
        kt = cfg.temporal_kernel
        cin = widths[-1]
        self.conv_in = CausalConv3d(cfg.latent_channels, cin, (kt, 3))
        self.mid = ResBlock(cin, cin, True, kt)
        self.blocks = nn.ModuleList()
        for i in range(len(widths) - 1, -1, -1):
            temporal = i > 0 and t_step[i - 1]
            n_blocks = cfg.num_res_blocks + 1 if i > 0 else cfg.decoder_full_res_blocks
            for _ in range(n_blocks):
                self.blocks.append(ResBlock(cin, widths[i], temporal, kt))
                cin = widths[i]
            if i > 0:
                self.blocks.append(Upsample(cin, widths[i - 1], t_step[i - 1], kt))
                cin = widths[i - 1]
        self.norm_out = ChannelLayerNorm(cin) if cfg.output_norm else nn.Identity()
        # with the norm: norm → SiLU → conv; without: a linear read-out of the residual stream
        # (a SiLU on un-normalised features went all-negative in training and lost all colour)
        self._head_act = F.silu if cfg.output_norm else (lambda t: t)
        self.conv_out = CausalConv3d(cin, cfg.in_channels, (1, 3))

    def forward(self, z: torch.Tensor, b: int, cache: Optional[CausalCache]) -> torch.Tensor:
        x = self.conv_in(z, b, cache)
        x = self.mid(x, b, cache)
        for blk in self.blocks:
            x = blk(x, b, cache)
        return self.conv_out(self._head_act(self.norm_out(x)), b, cache)


# --------------------------------------------------------------------------- the VAE
def _to_frames(video: torch.Tensor) -> torch.Tensor:
    """``B×C×T×H×W`` → channels_last ``(B·T)×C×H×W``."""
    b, c, t, h, w = video.shape
    return video.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c).permute(0, 3, 1, 2)


def _from_frames(x: torch.Tensor, b: int) -> torch.Tensor:
    """channels_last ``(B·T)×C×H×W`` → ``B×C×T×H×W`` view."""
    n, c, h, w = x.shape
    return x.reshape(b, n // b, c, h, w).transpose(1, 2)


class CausalVideoVAE(nn.Module):
    """Causal 3D-conv video VAE: spatial ×``fs``, temporal ×``ft``, first frame alone.

    A clip of ``T = 1 + ft·k`` frames maps to ``T' = 1 + k`` latent frames; latent frame
    0 encodes frame 0 alone and latent frame ``j >= 1`` adds the frames
    ``ft(j-1)+1 … ft·j`` (it may also read earlier frames, never later ones); decoded
    frames ``ft(j-1)+1 … ft·j`` likewise depend on latent frames ``<= j`` only.
    ``encode``/``decode`` take and return *normalised* latents
    (``(z - shift_factor) * scaling_factor``) and work in temporal chunks with a causal
    cache: in inference (no autograd) the chunked result is bitwise equal to the
    whole-clip result, and activation memory grows with the chunk, not the clip.
    Method: the CogVideoX (arXiv 2408.06072 §2.1) and Wan 2.1 (arXiv 2503.20314) causal
    video VAEs; see the module docstring.

    The frame-count helpers are static and default to ``ft = 4``; pass
    ``temporal_factor=vae.temporal_factor`` for another factor.

    Attributes: ``config``, ``spatial_factor``, ``temporal_factor``, ``latent_channels``.
    """

    def __init__(self, config: Optional[VAEConfig] = None) -> None:
        super().__init__()
        self.config = config if config is not None else VAEConfig()
        self.spatial_factor = self.config.spatial_factor
        self.temporal_factor = self.config.temporal_factor
        self.latent_channels = self.config.latent_channels
        self.encoder = VideoEncoder(self.config)
        self.decoder = VideoDecoder(self.config)

    # ---------------------------------------------------------------- checks
    def _param(self) -> torch.Tensor:
        return self.encoder.conv_in.weight

    def _check_video(self, video: torch.Tensor) -> tuple[int, int, int, int]:
        c_in, fs, ft = self.config.in_channels, self.spatial_factor, self.temporal_factor
        if not isinstance(video, torch.Tensor) or video.dim() != 5 or video.shape[1] != c_in:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"video must be a B×{c_in}×T×H×W tensor, got {shape}")
        b, _, t, h, w = video.shape
        if b < 1 or t < 1 or (t - 1) % ft:
            raise ValueError(f"video frame count T must be 1 + {ft}·k, got T={t}")
        if h < fs or w < fs or h % fs or w % fs:
            raise ValueError(f"video height and width must be positive multiples of {fs}, got {h}×{w}")
        if not video.is_floating_point():
            raise ValueError(f"video must be a float tensor in [-1, 1], got dtype {video.dtype}")
        return b, t, h, w

    def _check_latents(self, z: torch.Tensor) -> tuple[int, int, int, int]:
        c = self.latent_channels
        if not isinstance(z, torch.Tensor) or z.dim() != 5 or z.shape[1] != c:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"latents must be a B×{c}×T'×H'×W' tensor, got {shape}")
        b, _, t, h, w = z.shape
        if b < 1 or t < 1 or h < 1 or w < 1:
            raise ValueError(f"latents must have non-empty B, T', H', W', got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise ValueError(f"latents must be a float tensor, got dtype {z.dtype}")
        return b, t, h, w

    @staticmethod
    def _chunks(t_latent: int, chunk_frames: Optional[int]) -> list[tuple[int, int]]:
        if chunk_frames is None:
            return [(0, t_latent)]
        if int(chunk_frames) != chunk_frames or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be an integer >= 1 (latent frames) or None, got {chunk_frames!r}")
        n = int(chunk_frames)
        return [(a, min(a + n, t_latent)) for a in range(0, t_latent, n)]

    def _pixel_range(self, a: int, b: int) -> tuple[int, int]:
        """Video frames covered by latent frames ``[a, b)``."""
        ft = self.temporal_factor
        return (0 if a == 0 else ft * (a - 1) + 1), ft * (b - 1) + 1

    # ---------------------------------------------------------------- encode
    def _moments(self, video: torch.Tensor, chunk_frames: Optional[int],
                 progress: Optional[ProgressFn]) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _, _ = self._check_video(video)
        p = self._param()
        video = video.to(device=p.device, dtype=p.dtype)
        chunks = self._chunks(latent_frames(t, self.temporal_factor), chunk_frames)
        cache = CausalCache()
        outs = []
        for i, (a, e) in enumerate(chunks):
            f0, f1 = self._pixel_range(a, e)
            m = self.encoder(_to_frames(video[:, :, f0:f1]), b, cache)
            outs.append(_from_frames(m, b))
            if progress is not None:
                progress(i + 1, len(chunks))
        moments = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        mean, logvar = moments.chunk(2, dim=1)
        return mean.contiguous(), logvar.clamp(_LOGVAR_MIN, _LOGVAR_MAX).contiguous()

    def encode_distribution(self, video: torch.Tensor, chunk_frames: Optional[int] = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior moments for training (with autograd, *un-normalised*).

        Args:
            video: ``B×3×T×H×W`` float in [-1, 1], ``T = 1 + ft·k``, ``H, W`` multiples of ``fs``.
            chunk_frames: latent frames per chunk (None = whole clip).

        Returns:
            ``(mean, logvar)``, each ``B×C×(1+k)×H/fs×W/fs``; logvar clamped to [-30, 20].

        Raises:
            ValueError: on a bad shape, frame count or chunk size.
        """
        return self._moments(video, chunk_frames, None)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, chunk_frames: Optional[int] = None,
               progress: Optional[ProgressFn] = None, sample: bool = False,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Encode a clip to normalised latents (inference; runs under ``torch.no_grad``).

        Args:
            video: ``B×3×T×H×W`` float in [-1, 1] with ``T = 1 + ft·k`` and ``H, W``
                divisible by ``fs`` (8).
            chunk_frames: latent frames per chunk (None = whole clip); each chunk after the
                first covers ``ft·chunk_frames`` video frames. Any value gives the same result.
            progress: called as ``progress(done_chunks, total_chunks)`` after each chunk.
            sample: draw ``z = mean + std·ε`` instead of returning the posterior mean.
            generator: RNG for ``ε`` (the noise does not depend on ``chunk_frames``).

        Returns:
            ``B×C×(1+k)×H/fs×W/fs`` latents, ``(z - shift_factor) * scaling_factor``.

        Raises:
            ValueError: on a bad shape, frame count or chunk size.
        """
        mean, logvar = self._moments(video, chunk_frames, progress)
        z = mean
        if sample:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                              device=generator.device if generator is not None else mean.device)
            z = mean + torch.exp(0.5 * logvar) * eps.to(mean.device)
        return (z - self.config.shift_factor) * self.config.scaling_factor

    # ---------------------------------------------------------------- decode
    def decode_raw(self, z: torch.Tensor, chunk_frames: Optional[int] = None,
                   progress: Optional[ProgressFn] = None, out: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
        """Decode *un-normalised* latents without clamping (autograd allowed; for training).

        Args:
            z: ``B×C×T'×h×w`` latents in the encoder's raw scale.
            chunk_frames: latent frames per chunk (None = whole clip).
            progress: ``progress(done_chunks, total_chunks)`` after each chunk.
            out: optional preallocated ``B×3×(1+ft(T'-1))×fs·h×fs·w`` tensor to write into
                (chunks are copied in place, so peak memory is the output plus one chunk).

        Returns:
            ``B×3×(1+ft(T'-1))×fs·h×fs·w`` video (roughly in [-1, 1], not clamped).

        Raises:
            ValueError: on a bad latent shape, chunk size or ``out`` shape.
        """
        b, t, h, w = self._check_latents(z)
        fs = self.spatial_factor
        shape = (b, self.config.in_channels, pixel_frames(t, self.temporal_factor), h * fs, w * fs)
        if out is not None and tuple(out.shape) != shape:
            raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
        pieces = []
        for done, total, f0, y in self._decode_chunks(z, chunk_frames):
            if out is not None:
                out[:, :, f0:f0 + y.shape[2]].copy_(y)
            else:
                pieces.append(y)
            del y
            if progress is not None:
                progress(done, total)
        if out is not None:
            return out
        return torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0].contiguous()

    def _decode_chunks(self, z: torch.Tensor, chunk_frames: Optional[int]):
        """Yield ``(done_chunks, total_chunks, first_frame, B×3×t×H×W video view)`` per chunk."""
        b, t, _, _ = self._check_latents(z)
        p = self._param()
        z = z.to(device=p.device, dtype=p.dtype)
        chunks = self._chunks(t, chunk_frames)
        cache = CausalCache()
        for i, (a, e) in enumerate(chunks):
            y = _from_frames(self.decoder(_to_frames(z[:, :, a:e]), b, cache), b)
            yield i + 1, len(chunks), self._pixel_range(a, e)[0], y

    @torch.no_grad()
    def iter_decode(self, latents: torch.Tensor, chunk_frames: int = 4,
                    progress: Optional[ProgressFn] = None):
        """Decode normalised latents chunk by chunk, for streaming to a video writer.

        Memory stays bounded by one chunk (the whole video is never held), which is what a
        60 s render should use. Runs under ``torch.no_grad``.

        Args:
            latents: ``B×C×T'×h×w`` normalised latents.
            chunk_frames: latent frames per chunk (None = whole clip).
            progress: ``progress(done_chunks, total_chunks)`` after each chunk.

        Yields:
            ``(first_frame, video)``: the index of the chunk's first video frame and a
            ``B×3×t×fs·h×fs·w`` float tensor clamped to [-1, 1]; consecutive chunks tile
            the ``1 + ft(T'-1)`` frames of :meth:`decode` exactly (same values).

        Raises:
            ValueError: on a bad latent shape or chunk size.
        """
        self._check_latents(latents)
        z = latents / self.config.scaling_factor + self.config.shift_factor
        for done, total, f0, y in self._decode_chunks(z, chunk_frames):
            y = y.clamp(-1.0, 1.0)
            if progress is not None:
                progress(done, total)
            yield f0, y

    @torch.no_grad()
    def decode_uint8(self, latents: torch.Tensor, chunk_frames: Optional[int] = 4,
                     progress: Optional[ProgressFn] = None) -> torch.Tensor:
        """Decode normalised latents straight to 8-bit frames, chunk by chunk.

        Each chunk is converted as soon as it is decoded, so peak memory is the uint8 video
        (a quarter of the float32 one, in the layout video writers take) plus one chunk.
        Runs under ``torch.no_grad``.

        Args:
            latents: ``B×C×T'×h×w`` normalised latents.
            chunk_frames: latent frames per chunk (None = whole clip).
            progress: ``progress(done_chunks, total_chunks)`` after each chunk.

        Returns:
            ``B×T×H×W×3`` uint8 (``T = 1 + ft(T'-1)``, ``H = fs·h``, ``W = fs·w``), equal to
            ``round((decode(latents) + 1) · 127.5)``.

        Raises:
            ValueError: on a bad latent shape or chunk size.
        """
        b, t, h, w = self._check_latents(latents)
        fs = self.spatial_factor
        out = torch.empty((b, pixel_frames(t, self.temporal_factor), h * fs, w * fs,
                           self.config.in_channels), dtype=torch.uint8, device=latents.device)
        for f0, y in self.iter_decode(latents, chunk_frames, progress):
            frames = ((y + 1.0) * 127.5).round_().to(torch.uint8)
            out[:, f0:f0 + y.shape[2]] = frames.permute(0, 2, 3, 4, 1).to(out.device)
        return out

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_frames: Optional[int] = None,
               progress: Optional[ProgressFn] = None) -> torch.Tensor:
        """Decode normalised latents to video (inference; runs under ``torch.no_grad``).

        Args:
            latents: ``B×C×T'×h×w`` normalised latents (as returned by :meth:`encode`).
            chunk_frames: latent frames per chunk (None = whole clip). Chunks are written
                into one preallocated output, so peak memory is the output video plus the
                activations of one chunk.
            progress: ``progress(done_chunks, total_chunks)`` after each chunk.

        Returns:
            ``B×3×(1+ft(T'-1))×fs·h×fs·w`` float video clamped to [-1, 1].

        Raises:
            ValueError: on a bad latent shape or chunk size.
        """
        b, t, h, w = self._check_latents(latents)
        p = self._param()
        z = latents.to(device=p.device, dtype=p.dtype) / self.config.scaling_factor + self.config.shift_factor
        fs = self.spatial_factor
        out = torch.empty((b, self.config.in_channels, pixel_frames(t, self.temporal_factor),
                           h * fs, w * fs), dtype=p.dtype, device=p.device)
        self.decode_raw(z, chunk_frames, progress, out=out)
        return out.clamp_(-1.0, 1.0)


# --------------------------------------------------------------------------- loss
def _spatial_grad_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the horizontal and vertical finite differences of x and y."""
    d = x - y
    return 0.5 * ((d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., :, 1:] - d[..., :, :-1]).abs().mean())


def vae_loss(vae: CausalVideoVAE, video: torch.Tensor, kl_weight: float = 1e-6, *,
             l1_weight: float = 1.0, mse_weight: float = 1.0, grad_weight: float = 0.5,
             generator: Optional[torch.Generator] = None,
             batch_rows: Optional[tuple[int, int]] = None) -> tuple[torch.Tensor, dict]:
    """Training loss of the VAE on one batch of clips (whole clip, with autograd).

    ``loss = l1_weight·L1 + mse_weight·MSE + grad_weight·G + kl_weight·KL`` where L1/MSE are
    per-element means of ``x̂ - x``, ``G`` is the mean L1 between the spatial finite
    differences of ``x̂`` and ``x`` (a cheap sharp-edge term in place of a perceptual loss,
    which cannot be downloaded here), and ``KL`` is the per-latent-element mean of
    ``KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² - 1 - log σ²)`` (Kingma & Welling 2014; the
    LDM autoencoder of Rombach et al. 2022 uses the same small KL weight). ``x̂`` decodes a
    reparameterised posterior sample.

    Args:
        vae: the model.
        video: ``B×3×T×H×W`` float in [-1, 1], ``T = 1 + ft·k``.
        kl_weight: weight of the KL term.
        generator: optional RNG for the posterior sample.
        batch_rows: ``(first, total)`` for data parallelism: draw the posterior noise for a global
            batch of ``total`` clips and use rows ``first … first + B − 1``, so that ranks with the
            same ``generator`` state together draw what one process would for the whole batch.
            None = ``(0, B)``.

    Returns:
        ``(loss, stats)``: scalar loss tensor and a dict of floats with keys ``loss``,
        ``l1``, ``mse``, ``grad``, ``kl``, ``latent_mean`` and ``latent_std`` (statistics of
        the posterior mean, useful to set ``shift_factor``/``scaling_factor``).

    Raises:
        ValueError: on a bad video shape.
    """
    mean, logvar = vae.encode_distribution(video)
    first, total = batch_rows if batch_rows is not None else (0, mean.shape[0])
    if not 0 <= first <= total - mean.shape[0]:
        raise ValueError(f"batch_rows {batch_rows} do not hold a batch of {mean.shape[0]}")
    eps = torch.randn((total, *mean.shape[1:]), generator=generator, dtype=mean.dtype,
                      device=generator.device if generator is not None else mean.device)
    eps = eps[first:first + mean.shape[0]].to(mean.device)
    z = mean + torch.exp(0.5 * logvar) * eps
    recon = vae.decode_raw(z)
    target = video.to(recon.dtype)
    l1 = (recon - target).abs().mean()
    mse = (recon - target).pow(2).mean()
    grad = _spatial_grad_l1(recon, target)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    loss = l1_weight * l1 + mse_weight * mse + grad_weight * grad + kl_weight * kl
    stats = {"loss": float(loss.detach()), "l1": float(l1.detach()), "mse": float(mse.detach()),
             "grad": float(grad.detach()), "kl": float(kl.detach()),
             "latent_mean": float(mean.detach().mean()), "latent_std": float(mean.detach().std())}
    return loss, stats
