"""Rectified-flow matching: training loss, timestep sampling and ODE samplers (docs/design.md §7).

Convention (rectified flow, Liu et al. 2022 "Flow Straight and Fast"; as used by SD3,
Esser et al. 2024 "Scaling Rectified Flow Transformers", arXiv 2403.03206)::

    z_t = (1 - t)·x + t·ε,      ε ~ N(0, I),  t ∈ [0, 1]
    v   = dz_t/dt = ε - x       (what the network predicts)

``t = 1`` is pure noise and ``t = 0`` is data, so sampling integrates the ODE
``dz/dt = v(z, t)`` from ``t = 1`` down to ``t = 0``: one Euler step is
``z ← z + (t_next - t)·v`` with ``t_next < t``.

Training draws ``t`` from a logit-normal distribution (SD3 §3.1, "rf/lognorm(0.00, 1.00)")
and drops ~10% of captions to ``""`` so that the same network also gives the
unconditional velocity for classifier-free guidance (Ho & Salimans 2022).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lingen_model.generation.step_cache import CACHE_MODES, StepCache

__all__ = [
    "METHODS",
    "VelocityFn",
    "time_shift",
    "shift_for_tokens",
    "sampling_timesteps",
    "sample",
    "sample_timesteps_logit_normal",
    "flow_matching_loss",
    "drop_captions",
]

VelocityFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""``velocity_fn(z B×…, t B, context B×L×D, mask B×L bool) -> v`` (same shape as ``z``)."""

METHODS = ("euler", "heun", "unipc")


# --------------------------------------------------------------------------- schedule


def _check_shift(shift: float, name: str = "shift") -> float:
    if isinstance(shift, bool) or not isinstance(shift, (int, float)):
        raise ValueError(f"{name} must be a positive finite number, got {shift!r}")
    shift = float(shift)
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {shift!r}")
    return shift


def time_shift(t: Tensor | float, shift: float) -> Tensor | float:
    """Shift timesteps towards the noise end: ``t' = s·t / (1 + (s - 1)·t)``.

    The map fixes 0 and 1, is strictly increasing on [0, 1], is the identity for ``s = 1``,
    and for ``s > 1`` spends more of the schedule near ``t = 1`` (high noise), which larger
    images/videos need because more tokens carry more redundant signal. It is SD3's
    resolution-dependent shift (Esser et al. 2024, §5.3.2, eq. 23) in our convention.

    Args:
        t: timesteps in [0, 1] (a tensor of any shape, or a float).
        shift: ``s > 0``.

    Returns:
        Shifted timesteps, same shape/type as ``t``.

    Raises:
        ValueError: ``shift`` is not a positive finite number.
    """
    s = _check_shift(shift)
    return s * t / (1.0 + (s - 1.0) * t)


def shift_for_tokens(
    num_tokens: int,
    base_tokens: int = 256,
    base_shift: float = 1.0,
    max_tokens: int = 262_144,
    max_shift: float = 8.0,
) -> float:
    """Time-shift ``s`` for a denoiser input of ``num_tokens`` tokens (T'·H'·W' / patch²).

    ``log s`` is linear in ``log num_tokens`` through the two anchors
    ``(base_tokens, base_shift)`` and ``(max_tokens, max_shift)`` and clamped to
    ``[min, max]`` of the two shifts outside them::

        s = base_shift · (num_tokens / base_tokens) ** (log(max_shift / base_shift)
                                                      / log(max_tokens / base_tokens))

    Source: SD3 (Esser et al. 2024, §5.3.2) derives ``s = sqrt(m / n)`` for going from
    ``n`` to ``m`` pixels, a power law in the token count with exponent 1/2; Flux
    interpolates ``log s`` between two anchor token counts and clamps. We keep SD3's power
    law but fit its exponent to two anchors, because video token counts span three orders
    of magnitude where exponent 1/2 overshoots. The defaults (exponent 0.3) give s ≈ 1 at
    256 tokens, ≈ 2.3 at 4,096 (one 1024² image), ≈ 6 at ~120k tokens (in line with the
    shift 5–7 that open video models use at 480p–720p) and 8 from 262,144 tokens on
    (LinGen's 512², 68 s scale).

    Args:
        num_tokens: number of denoiser tokens, ≥ 1.
        base_tokens, max_tokens: anchor token counts, ``1 ≤ base_tokens < max_tokens``.
        base_shift, max_shift: shifts at the anchors (positive, finite).

    Returns:
        The shift ``s`` (float).

    Raises:
        ValueError: a non-positive/non-integer token count, ``base_tokens >= max_tokens``,
            or a non-positive/non-finite shift.
    """
    for name, value in (("num_tokens", num_tokens), ("base_tokens", base_tokens), ("max_tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if base_tokens >= max_tokens:
        raise ValueError(f"expected base_tokens < max_tokens, got {base_tokens} >= {max_tokens}")
    lo = math.log(_check_shift(base_shift, "base_shift"))
    hi = math.log(_check_shift(max_shift, "max_shift"))
    frac = (math.log(num_tokens) - math.log(base_tokens)) / (math.log(max_tokens) - math.log(base_tokens))
    frac = min(max(frac, 0.0), 1.0)
    return math.exp(lo + frac * (hi - lo))


def sampling_timesteps(steps: int, shift: float = 1.0, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The ``steps + 1`` times of the sampler, from exactly 1 down to exactly 0.

    ``time_shift(linspace(1, 0, steps + 1), shift)``.

    Args:
        steps: number of integration steps, ≥ 1.
        shift: time shift ``s`` (see :func:`time_shift`).
        dtype: floating dtype of the result (float64 by default, so step sizes are exact).

    Returns:
        Tensor ``[steps + 1]``, strictly decreasing, first 1 and last 0.

    Raises:
        ValueError: ``steps < 1`` or a bad ``shift``.
    """
    _check_steps(steps)
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return time_shift(t, shift).to(dtype)


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")


# --------------------------------------------------------------------------- sampler


def _check_context(context: Tensor, mask: Tensor | None, batch: int | None, name: str) -> Tensor:
    """Validate a B×L×D context and its B×L mask; return the mask (all True if None)."""
    if not isinstance(context, Tensor) or context.ndim != 3:
        shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
        raise ValueError(f"{name} must be a B×L×D tensor, got {shape}")
    if batch is not None and context.shape[0] != batch:
        raise ValueError(f"{name} batch must be {batch} (the noise batch), got {context.shape[0]}")
    if mask is None:
        return torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(context.shape[:2]):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} mask must be a B×L tensor of shape {tuple(context.shape[:2])}, got {shape}")
    return mask.to(device=context.device, dtype=torch.bool)


def _pad_tokens(context: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Right-pad B×L×D context (zeros) and B×L mask (False) to ``length`` tokens."""
    pad = length - context.shape[1]
    if pad == 0:
        return context, mask
    context = torch.cat([context, context.new_zeros(context.shape[0], pad, context.shape[2])], dim=1)
    mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], dim=1)
    return context, mask


def _other_context(other: Tensor, other_mask: Tensor | None, context: Tensor, batch: int,
                   name: str) -> tuple[Tensor, Tensor]:
    """Check a second context (uncond or contrast; batch 1 or B) against ``context`` and bring it to
    batch B on the context's device and dtype."""
    other_mask = _check_context(other, other_mask, None, name)
    if other.shape[0] not in (1, batch):
        raise ValueError(f"{name} batch must be 1 or {batch}, got {other.shape[0]}")
    if other.shape[2] != context.shape[2]:
        raise ValueError(f"{name} width must equal context width {context.shape[2]}, got {other.shape[2]}")
    other, other_mask = other.to(device=context.device, dtype=context.dtype), other_mask.to(context.device)
    if other.shape[0] != batch:
        other, other_mask = other.expand(batch, -1, -1), other_mask.expand(batch, -1)
    return other, other_mask


def sample(
    velocity_fn: VelocityFn,
    noise: Tensor,
    steps: int,
    *,
    shift: float = 1.0,
    cfg_scale: float = 1.0,
    context: Tensor,
    context_mask: Tensor | None,
    uncond_context: Tensor | None = None,
    uncond_mask: Tensor | None = None,
    method: str = "euler",
    progress: Callable[[int, int], Any] | None = None,
    cache: "str | StepCache" = "none",
    stagger: float = 0.0,
    stagger_context: int | None = None,
    contrast_context: Tensor | None = None,
    contrast_mask: Tensor | None = None,
    contrast_scale: float = 0.0,
    cfg_max_t: float = 1.0,
    fixed_frames: int = 0,
) -> Tensor:
    """Integrate the rectified-flow ODE from noise (t = 1) to data (t = 0).

    Euler: ``z ← z + (t_next - t)·v(z, t)`` (``steps`` network evaluations).
    Heun (2nd order, as in Karras et al. 2022 "EDM", Alg. 1, applied at every step,
    including the last one since the rectified-flow velocity is finite at t = 0):
    ``d = v(z, t); z̃ = z + h·d; z ← z + h·(d + v(z̃, t_next))/2`` (``2·steps`` evaluations).
    The times are ``sampling_timesteps(steps, shift)``.

    Classifier-free guidance (Ho & Salimans 2022): when ``cfg_scale != 1`` the
    unconditional and conditional inputs go through ONE batched call of ``velocity_fn``
    (batch 2B, unconditional half first; both contexts right-padded to the same length with
    mask False) and are combined as ``v = v_u + g·(v_c − v_u)``. With ``cfg_scale == 1``
    only the conditional call is made. Guidance in a limited interval (Kynkäänniemi et al. 2024,
    "Applying Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion
    Models", §3): with ``cfg_max_t < 1``, a call at a time t above ``cfg_max_t`` (high noise, where
    the layout is decided) takes the conditional velocity alone (g = 1 there); with per-frame times
    (``stagger``) the scale is chosen frame by frame. The call is batched as before (the step cache
    sees the same batches), so the interval changes the result, not the cost.

    Contrast guidance: with ``contrast_context`` (the tokens of a caption that differs from the
    prompt in one respect, e.g. its direction word swapped) and ``contrast_scale = w``, a third
    batch ``v_x`` joins the same call and ``v ← v + w·(v_c − v_x)``: the prediction is pushed along
    what tells the prompt from its contrast and nowhere else. It is composable diffusion's
    conjunction with a negated concept (Liu et al. 2022, "Compositional Visual Generation with
    Composable Diffusion Models", §4.2: weights g + w on the prompt and −w on the contrast); used
    by ``direction_guidance`` (docs/design.md §7). Costs one more batch per call (3B instead of 2B).
    With step caching the contrast is not forecast: it runs uncached (batch B) beside each full call
    and its difference ``v_c − v_x`` is held through the cached calls that follow (a forecast of two
    nearly equal velocities, multiplied by w, would amplify the forecast error), so it costs one
    B-batch per full call only.

    Args:
        velocity_fn: ``f(z, t, context, mask) -> v``; ``z`` B×…, ``t`` B on the device of
            ``noise`` (float64 if ``noise`` is float64, else float32), ``context`` B×L×D,
            ``mask`` B×L bool.
        noise: initial state ``z_1`` (B×…, floating), e.g. ``torch.randn`` from a seeded
            generator; the same noise and settings give the same output on one device.
            The state is integrated in ``noise.dtype`` (keep it float32 for low-precision
            models: ``v`` is cast to it).
        steps: number of integration steps, ≥ 1.
        shift: time shift (see :func:`time_shift`, :func:`shift_for_tokens`).
        cfg_scale: guidance scale ``g`` (finite); 1 disables guidance.
        context, context_mask: conditional tokens B×L×D and mask B×L (None = all real).
        uncond_context, uncond_mask: unconditional tokens (the encoded ``""``), batch B or
            1 (broadcast), any length; required when ``cfg_scale != 1``.
        method: ``"euler"``, ``"heun"`` or ``"unipc"`` (UniPC-2 through diffusers, Wan's
            sampler; see :mod:`lingen_model.generation.unipc`).
        progress: called as ``progress(step, steps)`` after each step (step = 1..steps).
        cache: step caching (see :mod:`lingen_model.generation.step_cache`): ``"none"`` (default: every call
            runs the whole network), ``"delta"`` (Δ-DiT) or ``"taylor"`` (TaylorSeer), or a
            ``StepCache`` built by the caller (to choose its settings or read its counters). When
            caching, ``velocity_fn`` is called as ``f(z, t, context, mask, cache=step_cache)`` and
            must pass the cache to the denoiser (``Denoiser.forward(..., cache=)``).
        stagger: lag of each latent frame behind the one before it, in units of t (≥ 0; 0 = every
            frame at the same time, the default). With ``stagger = λ`` and video noise
            B×C×T×H×W, frame k is at ``t_k = clamp(u + λ·k, 0, 1)`` (then time-shifted) while a
            clock ``u`` runs from 1 to ``−λ·(T − 1)`` in ``staggered_steps(steps, λ, T)`` Euler
            steps, so that every frame still takes ~``steps`` steps of its own and earlier frames
            settle first: a later frame's layout is decided beside neighbours that are already
            decided (the staircase of Rolling Diffusion, Ruhe et al. 2024, over the whole clip; the
            per-frame noise levels of Diffusion Forcing, Chen et al. 2024). ``velocity_fn`` then
            receives ``t`` of shape B×T, so the model must take per-frame times (training on
            ``ramp_times`` helps, but lingen-tiny uses them untrained: docs/eval/README.md,
            "Staggered sampling"). Euler only, no step caching.
        stagger_context: with ``stagger``: None runs the whole clip at every step; N ≥ 0 runs only
            the frames that move in the step plus up to N finished-or-ahead frames before them (the
            frames behind, still pure noise, are left out), so a step costs a window of
            ~``1/stagger + N`` latent frames rather than the clip, as in Rolling Diffusion. The
            window's first frame's position is passed as ``velocity_fn(..., t_offset=lo)``.
        contrast_context, contrast_mask: tokens B×L×D (or 1×L×D, broadcast) and mask of the contrast
            caption; None = no contrast guidance.
        contrast_scale: ``w`` (finite); 0 (or no ``contrast_context``) disables contrast guidance.
        cfg_max_t: the highest time t (the model's, after the time shift; 1 = pure noise) at which
            CFG is applied, in [0, 1]; 1 (default) = at every step. Contrast guidance is not limited.
        fixed_frames: with ``stagger``: the first N latent frames of ``noise`` are already denoised (a
            head sampled first, docs/design.md §7) and held at t = 0 as context while the staircase
            runs over the rest (:func:`staggered_times` with ``fixed``); 0 (default): none.

    Returns:
        ``z_0``, same shape, dtype and device as ``noise``. Runs under ``torch.no_grad``.

    Raises:
        ValueError: ``steps < 1``, non-finite ``cfg_scale``, unknown ``method``, a shape
            mismatch, a non-floating ``noise``, or ``cfg_scale != 1`` without
            ``uncond_context``, or ``velocity_fn`` returning a wrong shape; a negative or
            non-finite ``stagger``, or one > 0 with non-video noise, another method than Euler
            or step caching; a non-finite ``contrast_scale``, or a ``contrast_context`` of another
            width or batch; a ``cfg_max_t`` outside [0, 1]; ``fixed_frames`` > 0 without ``stagger``,
            or not an int in [0, T).
    """
    _check_steps(steps)
    _check_stagger(stagger)
    if stagger_context is not None and (isinstance(stagger_context, bool) or not isinstance(stagger_context, int)
                                        or stagger_context < 0 or stagger == 0):
        raise ValueError(f"stagger_context must be None or an int >= 0 with stagger > 0, got {stagger_context!r}")
    if stagger > 0 and (not isinstance(noise, Tensor) or noise.ndim != 5 or method != "euler" or cache != "none"):
        raise ValueError("stagger > 0 needs video noise (B×C×T×H×W), method 'euler' and cache 'none'")
    if isinstance(fixed_frames, bool) or not isinstance(fixed_frames, int) or fixed_frames < 0 \
            or (fixed_frames > 0 and (stagger == 0 or fixed_frames >= noise.shape[2])):
        raise ValueError(f"fixed_frames must be 0, or an int in [1, T) with stagger > 0, got {fixed_frames!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or not math.isfinite(cfg_scale):
        raise ValueError(f"cfg_scale must be a finite number, got {cfg_scale!r}")
    if not isinstance(noise, Tensor) or not noise.is_floating_point() or noise.ndim < 1:
        raise ValueError("noise must be a floating tensor of shape B×…")
    batch = noise.shape[0]
    context_mask = _check_context(context, context_mask, batch, "context")
    if isinstance(contrast_scale, bool) or not isinstance(contrast_scale, (int, float)) or not math.isfinite(contrast_scale):
        raise ValueError(f"contrast_scale must be a finite number, got {contrast_scale!r}")
    if isinstance(cfg_max_t, bool) or not isinstance(cfg_max_t, (int, float)) or not 0.0 <= cfg_max_t <= 1.0:
        raise ValueError(f"cfg_max_t must be a number in [0, 1], got {cfg_max_t!r}")
    guided = cfg_scale != 1.0
    contrasted = contrast_context is not None and contrast_scale != 0
    # The batches of one call, in order: [uncond (with CFG)], cond, [contrast (with contrast guidance)].
    parts = []
    if guided:
        if uncond_context is None:
            raise ValueError("cfg_scale != 1 needs uncond_context (the encoded empty prompt)")
        parts.append(_other_context(uncond_context, uncond_mask, context, batch, "uncond_context"))
    parts.append((context, context_mask))
    contrast = None
    if contrasted:
        contrast = _other_context(contrast_context, contrast_mask, context, batch, "contrast_context")
    step_cache = make_step_cache(cache, steps, method)
    # Without step caching the contrast joins the batched call; with it, the cached call keeps its
    # batch and the contrast runs beside it on full calls only (see the docstring).
    joint = contrasted and step_cache is None
    if joint:
        parts.append(contrast)
    copies = len(parts)
    if copies > 1:
        length = max(c.shape[1] for c, _ in parts)
        padded = [_pad_tokens(c, m, length) for c, m in parts]
        model_context = torch.cat([c for c, _ in padded], dim=0)
        model_mask = torch.cat([m for _, m in padded], dim=0)
    else:
        model_context, model_mask = context, context_mask
    cond = 1 if guided else 0

    t_dtype = torch.float64 if noise.dtype == torch.float64 else torch.float32
    extra = {} if step_cache is None else {"cache": step_cache}
    held = {}  # cached runs: the contrast difference v_c − v_x of the last full call

    def velocity(z: Tensor, t: "float | Tensor", t_offset: int | None = None) -> Tensor:
        """v at time t: a float (every frame), or a [T] tensor of per-frame times; ``t_offset``: the
        position of z's first latent frame in the clip (windowed staggered sampling)."""
        kw = extra if t_offset is None else {**extra, "t_offset": t_offset}
        n = copies * batch
        t_batch = (torch.full((n,), t, dtype=t_dtype, device=z.device) if not isinstance(t, Tensor)
                   else t.to(z.device, t_dtype).expand(n, -1))
        held_contrast = contrasted and not joint
        before = (step_cache.calls, step_cache.full_calls) if held_contrast else None
        v = velocity_fn(torch.cat([z] * copies, dim=0) if copies > 1 else z, t_batch, model_context, model_mask, **kw)
        if not isinstance(v, Tensor) or v.shape[0] != n or v.shape[1:] != z.shape[1:]:
            raise ValueError(f"velocity_fn must return a tensor of shape {(n, *z.shape[1:])}")
        v_c = v[cond * batch:(cond + 1) * batch]
        out = v[:batch] + _guidance_scale(cfg_scale, cfg_max_t, t, v_c) * (v_c - v[:batch]) if guided else v_c
        if joint:
            out = out + contrast_scale * (v_c - v[(cond + 1) * batch:])
        elif held_contrast:
            # a full call (or a velocity_fn that did not use the cache): compute the contrast anew
            if "delta" not in held or step_cache.full_calls > before[1] or step_cache.calls == before[0]:
                v_x = velocity_fn(z, t_batch[cond * batch:(cond + 1) * batch], contrast[0], contrast[1],
                                  **({} if t_offset is None else {"t_offset": t_offset}))
                if not isinstance(v_x, Tensor) or v_x.shape != z.shape:
                    raise ValueError(f"velocity_fn must return a tensor of shape {tuple(z.shape)}")
                held["delta"] = v_c - v_x
            out = out + contrast_scale * held["delta"]
        return out

    if method == "unipc":  # multistep solver of diffusers (Wan's sampler); needs the wan extra
        from lingen_model.generation.unipc import unipc_loop

        return unipc_loop(velocity, noise, steps, shift, progress)
    if stagger > 0:
        return _staggered_euler(velocity, noise, steps, shift, stagger, progress, stagger_context, fixed_frames)
    times = sampling_timesteps(steps, shift).tolist()
    z = noise
    with torch.no_grad():
        for i in range(steps):
            t, t_next = times[i], times[i + 1]
            h = t_next - t
            d = velocity(z, t).to(z.dtype)
            if method == "euler":
                z = z + h * d
            else:
                z_pred = z + h * d
                d_next = velocity(z_pred, t_next).to(z.dtype)
                z = z + (0.5 * h) * (d + d_next)
            if progress is not None:
                progress(i + 1, steps)
    return z


def _guidance_scale(cfg_scale: float, cfg_max_t: float, t: "float | Tensor", v: Tensor) -> "float | Tensor":
    """The CFG scale of a call at time ``t`` inside ``cfg_max_t`` (``sample``'s guidance interval):
    ``cfg_scale`` where t ≤ cfg_max_t, else 1 (a float), or per latent frame for per-frame times
    ``t`` of shape [T] (a tensor 1×1×T×1×1 in ``v``'s dtype, broadcast over B×C×T×H×W)."""
    if cfg_max_t >= 1.0:
        return cfg_scale
    if not isinstance(t, Tensor):
        return cfg_scale if t <= cfg_max_t else 1.0
    scale = torch.where(t.reshape(-1).to(v.device) <= cfg_max_t, float(cfg_scale), 1.0)  # one value per frame
    return scale.to(v.dtype).view(1, 1, -1, *([1] * (v.dim() - 3)))


def _check_stagger(stagger: float) -> float:
    if isinstance(stagger, bool) or not isinstance(stagger, (int, float)) or not math.isfinite(stagger) or stagger < 0:
        raise ValueError(f"stagger must be a finite number >= 0 (t per latent frame), got {stagger!r}")
    return float(stagger)


def staggered_steps(steps: int, stagger: float, frames: int) -> int:
    """Euler steps of a staggered run (:func:`sample` with ``stagger``): ``⌈steps·(1 + stagger·(frames − 1))⌉``,
    so that each frame's clamped time still moves in ~``steps`` of them. ``stagger = 0`` gives ``steps``.
    ``stagger``: t per latent frame (≥ 0); ``frames``: latent frames T of the clip. Raises ValueError
    for ``steps`` < 1 or a negative or non-finite ``stagger``."""
    _check_steps(steps)
    return math.ceil(steps * (1.0 + _check_stagger(stagger) * (frames - 1)) - 1e-9)


def staggered_times(steps: int, shift: float, stagger: float, frames: int, fixed: int = 0) -> Tensor:
    """Per-frame times of a staggered run, float64 ``[staggered_steps(steps, stagger, frames − fixed) + 1,
    frames]``: the first ``fixed`` latent frames (already denoised, e.g. a head sampled first) stay at
    t = 0 in every row; for the others, k = 0 … frames − fixed − 1 counted from the first free frame, row i
    is ``time_shift(clamp(u_i + stagger·k, 0, 1), shift)`` with the clock ``u`` linear from 1 to
    ``−stagger·(frames − fixed − 1)``: their first row is all 1, the last all 0, and every column is
    non-increasing. Raises ValueError for bad ``steps``, ``shift`` or ``stagger``, or ``fixed`` outside
    [0, frames)."""
    if isinstance(fixed, bool) or not isinstance(fixed, int) or not 0 <= fixed < frames:
        raise ValueError(f"fixed must be an int in [0, {frames}) (latent frames held at t = 0), got {fixed!r}")
    free = frames - fixed
    n = staggered_steps(steps, stagger, free)
    u = torch.linspace(1.0, -stagger * (free - 1), n + 1, dtype=torch.float64)
    t = time_shift((u[:, None] + stagger * torch.arange(free, dtype=torch.float64)[None]).clamp(0.0, 1.0), shift)
    return torch.cat([t.new_zeros(n + 1, fixed), t], dim=1)


def staggered_window(step: Tensor, context: int | None) -> tuple[int, int] | None:
    """The latent frames ``lo … hi − 1`` one step of a staggered run denoises, or None when no frame moves.

    ``step``: the step's per-frame time change, shape ``[frames]`` (row i + 1 minus row i of
    :func:`staggered_times`; nonzero where a frame moves). ``context`` None: the whole clip; N ≥ 0:
    the moving frames and up to N before them (Rolling Diffusion's window, Ruhe et al. 2024; design §7).
    Returns latent-frame indices (ints). Raises nothing for a 1-D ``step``.
    """
    moving = torch.nonzero(step).flatten().tolist()
    if not moving:
        return None
    return (0, step.shape[0]) if context is None else (max(0, moving[0] - context), moving[-1] + 1)


def _staggered_euler(velocity, noise: Tensor, steps: int, shift: float, stagger: float, progress,
                     context: int | None = None, fixed: int = 0) -> Tensor:
    """Euler steps over :func:`staggered_times` (``fixed`` first frames held at t = 0):
    ``z[:, :, k] += (t_k' − t_k)·v_k(z, t)``; frames whose time does not move (not started, finished or
    fixed) are left as they are. With ``context`` the network sees only frames ``lo … hi − 1``: the
    moving ones and up to ``context`` frames before them."""
    times = staggered_times(steps, shift, stagger, noise.shape[2], fixed)
    if noise.dtype != torch.float64:
        times = times.float()
    n = times.shape[0] - 1
    z = noise.clone()
    with torch.no_grad():
        for i in range(n):
            h = times[i + 1] - times[i]
            window = staggered_window(h, context)
            if window is not None:
                lo, hi = window
                v = velocity(z[:, :, lo:hi], times[i][lo:hi], None if context is None else lo)
                z[:, :, lo:hi] += h[lo:hi].to(z.device, z.dtype)[None, None, :, None, None] * v.to(z.dtype)
            if progress is not None:
                progress(i + 1, n)
    return z


def make_step_cache(cache: "str | StepCache", steps: int, method: str = "euler") -> "StepCache | None":
    """The step cache of one sampling run: None for ``"none"``, a fresh ``StepCache`` sized for
    ``steps`` steps of ``method`` (Heun makes 2 denoiser calls a step) for a mode name, or the
    caller's ``StepCache`` as it is (so the caller can read ``full_calls`` afterwards).

    Raises:
        ValueError: an unknown mode name.
    """
    if isinstance(cache, StepCache):
        return cache
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {list(CACHE_MODES)} or a StepCache, got {cache!r}")
    return None if cache == "none" else StepCache(cache, steps * (2 if method == "heun" else 1))


# --------------------------------------------------------------------------- training


def sample_timesteps_logit_normal(
    batch: int,
    generator: torch.Generator | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw training times ``t = sigmoid(u)``, ``u ~ N(mean, std²)`` (logit-normal).

    Source: SD3 (Esser et al. 2024, §3.1, eq. 19), whose best setting is
    logit-normal(0, 1); it concentrates training on intermediate noise levels. The
    median of ``t`` is ``sigmoid(mean)``.

    Args:
        batch: number of times B, ≥ 1.
        generator: torch RNG (its device is used when ``device`` is None).
        mean, std: location and scale of ``u`` (``std > 0``).
        device: device of the result.

    Returns:
        Float32 tensor ``[B]`` strictly inside (0, 1) (clamped to [2⁻²⁴, 1 − 2⁻²⁴]).

    Raises:
        ValueError: ``batch < 1``, non-finite ``mean``, non-positive/non-finite ``std``.
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if not math.isfinite(mean):
        raise ValueError(f"mean must be finite, got {mean!r}")
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"std must be positive and finite, got {std!r}")
    if device is None:
        device = generator.device if generator is not None else "cpu"
    u = torch.randn(batch, generator=generator, device=device, dtype=torch.float32)
    eps = 2.0**-24
    return torch.sigmoid(mean + std * u).clamp_(eps, 1.0 - eps)


def ramp_times(t: Tensor, frames: int, prob: float, slope_max: float,
               generator: torch.Generator | None = None) -> Tensor:
    """Per-frame training times: with probability ``prob`` a sample's time becomes a ramp over its
    latent frames, ``t_k = clamp(t + λ·(k − a), 0, 1)`` with slope ``λ ~ U(0, slope_max)`` (t per
    latent frame) through an anchor frame ``a ~ U(0, frames − 1)`` that keeps the drawn time;
    other samples keep ``t`` on every frame.

    This is the staircase a staggered sampler walks (``sample(..., stagger=)``: earlier frames
    less noisy), so a model trained on it learns to denoise a frame beside cleaner earlier
    frames, i.e. to carry a decided layout forward in time. Sources: per-frame noise levels,
    Diffusion Forcing (Chen et al. 2024); the linear per-frame schedule, Rolling Diffusion
    (Ruhe et al. 2024, §3).

    Args:
        t: times ``[B]`` in [0, 1].
        frames: latent frames T ≥ 1.
        prob: ramp probability in [0, 1]; 0 returns ``t`` unchanged (``[B]``) and draws nothing.
        slope_max: largest slope, ≥ 0 (t per latent frame).
        generator: torch RNG.

    Returns:
        ``[B, T]`` times in [0, 1] (``[B]`` when ``prob == 0``).

    Raises:
        ValueError: ``prob``, ``slope_max`` or ``frames`` out of range.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if not (math.isfinite(slope_max) and slope_max >= 0):
        raise ValueError(f"slope_max must be finite and >= 0, got {slope_max!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an int >= 1, got {frames!r}")
    if prob == 0.0:
        return t
    b = t.shape[0]
    pick = torch.rand(b, generator=generator, device=t.device) < prob
    slope = slope_max * torch.rand(b, generator=generator, device=t.device) * pick
    anchor = (frames - 1) * torch.rand(b, generator=generator, device=t.device)
    k = torch.arange(frames, device=t.device, dtype=torch.float32)
    return (t.float()[:, None] + slope[:, None] * (k[None] - anchor[:, None])).clamp(0.0, 1.0).to(t.dtype)


def mix_high_noise_times(t: Tensor, prob: float, t_min: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace each training time by ``U(t_min, 1)`` with probability ``prob``.

    A logit-normal draw almost never lands near ``t = 1`` (with mean 0.7, ``P(t > 0.95)`` is
    ~1 %), yet a sampler spends its first steps there, where the prediction can only come
    from the caption (``E[x | caption]``) and the layout is decided. Mixing a uniform
    high-noise component into the timestep density trains that regime; SD3 (Esser et al.
    2024, §3.1) compares such heavy-tailed / mixed densities ("mode sampling with heavy
    tails", "CosMap").

    Args:
        t: times ``[B]`` in [0, 1].
        prob: mixing probability in [0, 1]; 0 returns ``t`` unchanged and draws nothing.
        t_min: lower end of the uniform component, in [0, 1).
        generator: torch RNG.

    Returns:
        Tensor like ``t``.

    Raises:
        ValueError: ``prob`` or ``t_min`` out of range.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min!r}")
    if prob == 0.0:
        return t
    pick = torch.rand(t.shape, generator=generator, device=t.device) < prob
    high = t_min + (1.0 - t_min) * torch.rand(t.shape, generator=generator, device=t.device)
    return torch.where(pick, high.to(t.dtype), t)


def flow_matching_loss(
    model_fn: VelocityFn,
    x0: Tensor,
    context: Tensor,
    mask: Tensor | None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    negative: Tensor | None = None,
    negative_weight: Tensor | None = None,
    weight_map: Tensor | None = None,
) -> Tensor:
    """Rectified-flow (conditional flow matching) loss ``mean((v_θ(z_t, t) − (ε − x))²)``.

    ``z_t = (1 − t)·x + t·ε``; the mean runs over every element of the batch. Source:
    Lipman et al. 2023 "Flow Matching" / Liu et al. 2022; SD3 eq. (5)–(6).

    With ``negative`` (clean data x̃ paired with each sample, e.g. the same clip played
    backwards) it is the contrastive flow-matching loss of Stoica et al. 2025 ("Contrastive
    Flow Matching", ΔFM, eq. 6) with a chosen rather than a random negative: per sample
    ``mean((v_θ − (ε − x))²) − λ_b · mean((v_θ − (ε − x̃))²)``, averaged over the batch, so the
    prediction for a caption is pushed away from the flow towards its negative. The optimum
    is ``v = (ε − x) + λ/(1 − λ)·(x̃ − x)``, so keep λ small (≤ 0.2).

    Args:
        model_fn: ``f(z_t, t, context, mask) -> v`` with ``z_t`` shaped like ``x0``.
        x0: clean data (latents) B×…, floating.
        context: text tokens B×L×D; mask: B×L bool (None = all real).
        t: times ``[B]`` in [0, 1]; default logit-normal(0, 1) drawn with ``generator``.
            For video latents (``x0`` B×C×T×H×W) also ``[B, T]``: one time per latent frame
            (``z_t`` noised frame by frame; see :func:`ramp_times`). ``model_fn`` receives it in
            its own dtype (float32 by default), not ``x0``'s.
        noise: ε shaped like ``x0``; default standard normal drawn with ``generator``.
        generator: torch RNG for the defaults.
        negative: clean negatives shaped like ``x0`` (None = plain flow matching).
        negative_weight: λ per sample ``[B]`` in [0, 1) (0 = no contrastive term for that
            sample); required with ``negative``.
        weight_map: non-negative weights broadcastable to ``x0`` (e.g. B×1×T×H×W, more weight
            where an object is); the loss is then the weighted mean
            ``Σ w·(v_θ − (ε − x))² / Σ w`` over the broadcast elements, so all-equal weights give
            the plain loss. Not with ``negative``.

    Returns:
        Scalar float32 loss (differentiable through ``model_fn``).

    Raises:
        ValueError: shape mismatches, ``t`` outside [0, 1], a model output of the wrong
            shape, a ``negative`` without a valid ``negative_weight``, or a ``weight_map`` that does
            not broadcast to ``x0``, has a negative entry, is all zero, or comes with ``negative``.
    """
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 1:
        raise ValueError("x0 must be a floating tensor of shape B×…")
    batch = x0.shape[0]
    mask = _check_context(context, mask, batch, "context")
    if t is None:
        t = sample_timesteps_logit_normal(batch, generator, device=x0.device)
    per_frame = (batch, x0.shape[2]) if x0.ndim == 5 else None
    if not isinstance(t, Tensor) or tuple(t.shape) not in ((batch,), per_frame):
        raise ValueError(f"t must be a tensor of shape ({batch},)" + (f" or {per_frame}" if per_frame else ""))
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("t must lie in [0, 1]")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if not isinstance(noise, Tensor) or noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}")
    if negative is not None:
        if not isinstance(negative, Tensor) or negative.shape != x0.shape:
            raise ValueError(f"negative must have the shape of x0 {tuple(x0.shape)}")
        if not isinstance(negative_weight, Tensor) or tuple(negative_weight.shape) != (batch,):
            raise ValueError(f"negative_weight must be a tensor of shape ({batch},)")
        if bool(((negative_weight < 0) | (negative_weight >= 1)).any()):
            raise ValueError("negative_weight must lie in [0, 1)")
    if weight_map is not None:
        if negative is not None:
            raise ValueError("weight_map does not combine with negative")
        if not isinstance(weight_map, Tensor) or weight_map.ndim != x0.ndim or any(
                w not in (1, n) for w, n in zip(weight_map.shape, x0.shape)):
            raise ValueError(f"weight_map must broadcast to x0 {tuple(x0.shape)} with the same number of dimensions")
        if bool((weight_map < 0).any()) or not bool((weight_map > 0).any()):
            raise ValueError("weight_map must be non-negative and not all zero")
    t = t.to(x0.device)
    t_b = t.to(x0.dtype).view(batch, *([1] * (x0.ndim - 1))) if t.ndim == 1 else t.to(x0.dtype)[:, None, :, None, None]
    z_t = (1.0 - t_b) * x0 + t_b * noise
    target = noise - x0
    pred = model_fn(z_t, t, context, mask)
    if not isinstance(pred, Tensor) or pred.shape != x0.shape:
        raise ValueError(f"model_fn must return a tensor of shape {tuple(x0.shape)}")
    if weight_map is not None:
        w = weight_map.to(x0.device, torch.float32).expand(x0.shape)
        return ((pred.float() - target.float()).square() * w).sum() / w.sum()
    if negative is None:
        return (pred.float() - target.float()).square().mean()
    per_sample = (pred.float() - target.float()).square().reshape(batch, -1).mean(1)
    away = (pred.float() - (noise - negative).float()).square().reshape(batch, -1).mean(1)
    return (per_sample - negative_weight.to(per_sample) * away).mean()


def drop_captions(prompts: Sequence[str], p: float, rng: Any) -> list[str]:
    """Replace each caption by ``""`` independently with probability ``p`` (CFG training).

    Source: Ho & Salimans 2022, "Classifier-Free Diffusion Guidance" (joint training of the
    conditional and unconditional model by dropping the condition); DESIGN §6 uses p ≈ 0.1.

    Args:
        prompts: captions.
        p: drop probability in [0, 1].
        rng: ``random.Random``, ``numpy.random.Generator`` or ``torch.Generator``.

    Returns:
        New list of the same length.

    Raises:
        ValueError: ``p`` outside [0, 1], a non-string caption, or an unsupported ``rng``.
    """
    if isinstance(prompts, (str, bytes)):
        raise ValueError("prompts must be a list of strings, got a single string")
    prompts = list(prompts)
    if any(not isinstance(x, str) for x in prompts):
        raise ValueError("prompts must all be strings")
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    n = len(prompts)
    if isinstance(rng, torch.Generator):
        draws = torch.rand(n, generator=rng, device=rng.device).tolist()
    elif isinstance(rng, np.random.Generator):
        draws = rng.random(n).tolist()
    elif isinstance(rng, random.Random):
        draws = [rng.random() for _ in range(n)]
    else:
        raise ValueError(
            "rng must be random.Random, numpy.random.Generator or torch.Generator, "
            f"got {type(rng).__name__}"
        )
    return ["" if u < p else prompt for prompt, u in zip(prompts, draws)]
