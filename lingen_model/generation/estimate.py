"""Estimates before allocating: parameters of a checkpoint from its config alone, peak memory of a
request, the memory a device has, and the time of a run from the FLOP model.

Parameter counts come from building the networks on torch's ``meta`` device (shapes only, no
storage) at depth 1 and 2 and extrapolating linearly in depth (every block has the same shapes),
so a config asking for a million blocks or a width of 10⁹ is counted in milliseconds without a
byte of weights. Peak memory is a sum of the big tensors of one sampling run (a model of the
implementation in ``lingen_model.models``; an upper-leaning estimate, not a measurement):

    weights      denoiser params × dtype bytes + VAE params × 4 + text encoder
    latents      B × C × T' × H' × W' × (noise, z, velocity, CFG mix, Heun/Euler temporaries ≈ 6) × bytes
    activations  the largest block temporaries at once: tokens × max(in_proj width, 2·FFN, 3·d) × 3,
                 the SSD chunk scores B·H·S·Q, TESA windows B·heads·N_pad·W, or the DiT's B·heads·N²
    decode       one VAE chunk: (4·chunk latent frames) × H × W × widest decoder channels × 4 bytes × 3
    frames       T × H × W × 3 (uint8 clip) + the float32 copy of one chunk
    runtime      Python, torch and the text encoder's tokenizer (≈ 400 MiB on CPU)

(LinGen arXiv 2412.09856 §3 for the architecture; FLOPs: :mod:`lingen_model.bench.flops`.)
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from lingen_model.errors import InputError

#: Absolute caps on a checkpoint's config, checked before anything is built (far above any real model).
MAX_DEPTH = 1024
MAX_WIDTH = 65_536
MAX_NATIVE_SIDE = 16_384
MAX_NATIVE_FPS = 240


def _meta_params(build) -> int:
    import torch

    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def denoiser_params(config) -> int:
    """Parameters of the denoiser of ``config`` (a DenoiserConfig), without allocating weights:
    ``P(1) + (depth − 1)·(P(2) − P(1))`` with P(k) counted on the meta device."""
    from lingen_model.models.denoiser import Denoiser

    p1 = _meta_params(lambda: Denoiser(dataclasses.replace(config, depth=1)))
    if config.depth == 1:
        return p1
    p2 = _meta_params(lambda: Denoiser(dataclasses.replace(config, depth=2)))
    return p1 + (config.depth - 1) * (p2 - p1)


def vae_params(config) -> int:
    """Parameters of the VAE of ``config`` (a VAEConfig), counted on the meta device."""
    from lingen_model.models.vae import CausalVideoVAE

    return _meta_params(lambda: CausalVideoVAE(config))


def check_checkpoint_config(cfg: dict[str, Any], where: str, max_params: float | None = None) -> int:
    """Check the sizes of a checkpoint's config.json before anything is built; returns the denoiser's
    parameter count.

    Checks: depth ≤ MAX_DEPTH, width ≤ MAX_WIDTH, native height/width ≤ MAX_NATIVE_SIDE and fps ≤
    MAX_NATIVE_FPS, and the parameter count (from the config, see :func:`denoiser_params`) against
    ``max_params`` (e.g. a hardware tier's ``max_params_m``·10⁶).

    Raises:
        InputError: a value past a cap, or a model larger than ``max_params`` (message names ``where``).
    """
    from lingen_model.models.config import DenoiserConfig

    den = cfg.get("denoiser") if isinstance(cfg, dict) else None
    if isinstance(den, dict):
        for key, cap in (("depth", MAX_DEPTH), ("width", MAX_WIDTH), ("ffn_dim", 16 * MAX_WIDTH),
                         ("text_dim", MAX_WIDTH), ("d_state", 4096), ("num_heads", MAX_WIDTH)):
            v = den.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > cap:
                raise InputError(f"{where}: denoiser.{key} = {v} is larger than the cap of {cap}")
    native = cfg.get("native") if isinstance(cfg, dict) else None
    if isinstance(native, dict):
        for key, cap in (("height", MAX_NATIVE_SIDE), ("width", MAX_NATIVE_SIDE), ("fps", MAX_NATIVE_FPS)):
            v = native.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not (v <= cap):
                raise InputError(f"{where}: native.{key} = {v} is larger than the cap of {cap}")
    if isinstance(den, dict) and den.get("arch") == "wan":  # WanDenoiserConfig checks itself when built
        return 0
    try:
        n = denoiser_params(DenoiserConfig.from_dict(den))
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if max_params is not None and n > max_params:
        raise InputError(f"{where}: the model has {n / 1e6:.0f}M parameters (counted from its config); "
                         f"the limit is {max_params / 1e6:g}M")
    return n


@dataclasses.dataclass
class MemoryEstimate:
    """Peak memory of one sampling run, by part (bytes). ``total``: their sum."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        """Sum of the parts (bytes)."""
        return sum(self.parts.values())


def estimate_request_memory(den_cfg, vae_cfg, num_frames: int, height: int, width: int, dtype_bytes: int = 4,
                            cfg_batch: int = 2, vae_chunk_frames: int = 4, den_params: int | None = None,
                            vae_param_count: int | None = None, text_encoder_bytes: int = 100 * 2**20,
                            runtime_bytes: int = 400 * 2**20) -> MemoryEstimate:
    """Estimate the peak memory of generating one ``num_frames`` × ``height`` × ``width`` clip (pixels)
    with a denoiser of config ``den_cfg`` in ``dtype_bytes``-byte floats, ``cfg_batch`` = 2 with CFG.

    See the module docstring for the model. Raises nothing for positive sizes.
    """
    fs, ft = vae_cfg.spatial_factor, vae_cfg.temporal_factor
    t_lat = 1 + max(0, (num_frames - 1)) // ft
    h_lat, w_lat = math.ceil(height / fs), math.ceil(width / fs)
    p = den_cfg.patch_size
    n = t_lat * math.ceil(h_lat / p) * math.ceil(w_lat / p)
    b = cfg_batch
    d, f = den_cfg.width, den_cfg.ffn_dim
    den_params = denoiser_params(den_cfg) if den_params is None else den_params
    vae_param_count = vae_params(vae_cfg) if vae_param_count is None else vae_param_count
    parts = {"runtime": runtime_bytes, "weights": den_params * dtype_bytes + vae_param_count * 4 + text_encoder_bytes,
             "latents": 6 * b * den_cfg.in_channels * t_lat * h_lat * w_lat * dtype_bytes}
    if den_cfg.mixer == "attention":
        seq = n
        widest = max(3 * d, 2 * f)
        mixer = b * den_cfg.num_heads * n * n * dtype_bytes  # the math SDPA path materialises the scores
    else:
        r = den_cfg.review_size
        seq = n + t_lat * r * r
        in_proj = 2 * den_cfg.d_inner + 2 * den_cfg.ngroups * den_cfg.d_state + den_cfg.mamba_heads
        widest = max(in_proj, 2 * f, 3 * d)
        q = den_cfg.chunk_size
        ssd = 2 * b * den_cfg.mamba_heads * math.ceil(seq / q) * q * q * 4  # scores + decays, float32
        wt = 1
        for x in den_cfg.window:
            wt *= x
        tesa = b * den_cfg.num_heads * n * wt * dtype_bytes * 2  # padded grid ≈ 2 N at worst
        mixer = max(ssd, tesa)
    parts["activations"] = 3 * b * seq * widest * dtype_bytes + mixer
    widest_vae = vae_cfg.base_channels * max(vae_cfg.channel_mult)
    chunk_px_frames = min(num_frames, ft * vae_chunk_frames)
    parts["decode"] = 3 * chunk_px_frames * height * width * widest_vae * 4
    parts["frames"] = num_frames * height * width * 3 + chunk_px_frames * height * width * 3 * 4
    return MemoryEstimate({k: int(v) for k, v in parts.items()})


def device_memory_bytes(device) -> int | None:
    """Memory a device can give (bytes): free CUDA memory, or the CPU's ``MemAvailable``; None if unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except Exception:  # noqa: BLE001 - an unknown is not an error here
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def run_flops(den_cfg, num_frames: int, height: int, width: int, steps: int, cfg_batch: int = 2,
              heun: bool = False, vae_cfg=None, cache: str = "none", stagger: float = 0.0,
              stagger_context: int | None = None, contrast: bool = False, head: int = 0, head_steps: int = 0,
              head_cache: str = "none") -> int:
    """FLOPs of the denoiser over a whole sampling run (:func:`lingen_model.bench.flops.denoiser_flops`
    per call), for a clip of ``num_frames`` frames of ``height``×``width`` pixels.

    Calls: ``steps`` (× 2 for Heun) at batch ``cfg_batch``; ``contrast`` (direction guidance) adds
    one sample to the batch of every call that runs the network. ``cache``: TaylorSeer's cached calls
    are counted as free, Δ-DiT's as half a call (each runs half the blocks); the full calls follow
    :meth:`step_cache.StepCache.schedule`. ``stagger`` > 0: the calls of the staggered run
    (``flow.staggered_times``), each on the latent frames it denoises (all of them, or with
    ``stagger_context`` only the moving ones and that many before them), as ``flow.sample`` runs it;
    with ``head`` N > 0, plus the head's own run (its N latent frames all at once, ``head_steps`` steps,
    step caching ``head_cache``) and the staircase over the other frames with the head held
    (``flow.staggered_times(fixed=N)``; ``LinGenPipeline.denoise``).
    Returns FLOPs (an int; multiply-adds count 2). Raises ValueError for ``steps`` < 1 with ``stagger`` or a cache,
    or for an unknown ``cache`` (from ``flow.staggered_times`` and ``StepCache``).
    """
    from lingen_model.bench.flops import denoiser_flops
    from lingen_model.generation.flow import staggered_times, staggered_window
    from lingen_model.generation.step_cache import StepCache

    fs = vae_cfg.spatial_factor if vae_cfg is not None else 8
    ft = vae_cfg.temporal_factor if vae_cfg is not None else 4
    frames = 1 + (num_frames - 1) // ft
    h, w = math.ceil(height / fs), math.ceil(width / fs)
    full_batch = cfg_batch + (1 if contrast else 0)
    if stagger > 0:
        times = staggered_times(steps, 1.0, stagger, frames, head)  # the shift does not change which frames move
        per_window: dict[int, int] = {}
        total = 0
        if head:  # the head first: a short clip of 1 + (N − 1)·ft video frames, all at once
            total += run_flops(den_cfg, 1 + (head - 1) * ft, height, width, head_steps, cfg_batch=cfg_batch,
                               vae_cfg=vae_cfg, cache=head_cache, contrast=contrast)
        for i in range(times.shape[0] - 1):
            window = staggered_window(times[i + 1] - times[i], stagger_context)
            if window is None:
                continue
            lo, hi = window
            if hi - lo not in per_window:
                per_window[hi - lo] = denoiser_flops(den_cfg, (den_cfg.in_channels, hi - lo, h, w),
                                                     batch=full_batch).total
            total += per_window[hi - lo]
        return total
    calls = steps * (2 if heun else 1)
    one = denoiser_flops(den_cfg, (den_cfg.in_channels, frames, h, w), batch=full_batch).total
    if cache == "none":
        return one * calls
    full = sum(StepCache(cache, calls).schedule())
    if cache != "delta":  # TaylorSeer's forecast calls run no block
        return one * full
    plain = denoiser_flops(den_cfg, (den_cfg.in_channels, frames, h, w), batch=cfg_batch).total  # the contrast is held
    return one * full + plain // 2 * (calls - full)


__all__ = ["MemoryEstimate", "check_checkpoint_config", "denoiser_params", "device_memory_bytes",
           "estimate_request_memory", "run_flops", "vae_params"]
