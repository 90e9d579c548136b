"""UniPC multistep solver for rectified-flow sampling, through diffusers' scheduler.

UniPC (Zhao et al., "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models", NeurIPS 2023) in its flow-matching form, as Wan 2.1 samples with it:
diffusers ``UniPCMultistepScheduler(prediction_type="flow_prediction",
use_flow_sigmas=True, flow_shift=shift)`` (the Wan pipelines' scheduler). Its noise levels
are ``σ_i = s·u_i / (1 + (s−1)·u_i)`` for ``u`` evenly spaced from 1 to 1/1000, then 0,
i.e. our :func:`~lingen_model.generation.flow.time_shift`; the network sees ``t = timestep/1000``
with diffusers' integer timesteps, exactly as ``WanPipeline`` feeds its transformer.
Needs the ``wan`` extra (diffusers).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def unipc_loop(velocity: Callable[[Tensor, float], Tensor], noise: Tensor, steps: int, shift: float,
               progress: Callable[[int, int], Any] | None = None, order: int = 2) -> Tensor:
    """Integrate ``dz/dt = v(z, t)`` from t = 1 to 0 with UniPC-``order`` (``steps`` evaluations).

    Args:
        velocity: ``v(z B×…, t float in [0, 1]) → B×…`` (CFG already applied).
        noise: z₁. steps: ≥ 1 evaluations. shift: flow shift s > 0.
        progress: ``progress(step, steps)`` after each step.

    Returns:
        z₀, dtype and device of ``noise``.

    Raises:
        ImportError: diffusers is not installed.
    """
    try:
        from diffusers import UniPCMultistepScheduler
    except ImportError:
        raise ImportError("the unipc sampler needs diffusers: pip install 'lingen[wan]'") from None
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
                                    flow_shift=float(shift), solver_order=order)
    sched.set_timesteps(steps, device=noise.device)
    z = noise
    with torch.no_grad():
        for i, ts in enumerate(sched.timesteps):
            v = velocity(z, float(ts) / 1000.0).to(z.dtype)
            z = sched.step(v, ts, z, return_dict=False)[0].to(noise.dtype)
            if progress is not None:
                progress(i + 1, steps)
    return z
