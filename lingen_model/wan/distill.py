"""Distilling full attention into TESA + MA-branch, with the teacher inside the student.

The student is a Wan-converted LinGen (small TESA windows, MA-branch); the teacher is the
*same weights* with a window covering the grid and the MA-branch off
(:meth:`WanDenoiser.as_teacher`), i.e. the original Wan — so no second checkpoint is
needed. As long as only parameters the teacher does not use are trained (the MA-branch,
:func:`ma_parameters`), the teacher stays exactly Wan. Unfreezing shared weights needs a
frozen copy of the original as teacher (a second copy in memory, still one checkpoint).

Loss (velocity distillation on teacher-noised latents, as in progressive/consistency
distillation of flow models; the attention → linear-mixer swap follows "The Mamba in the
Llama", arXiv 2408.15237, and LinVideo): draw ``t`` logit-normal (SD3), noise clean
latents ``x₀`` to ``z_t = (1−t)x₀ + tε`` and regress the student's velocity on the
teacher's::

    L = ‖v_student(z_t, t) − v_teacher(z_t, t)‖²   (mean over elements)
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from lingen_model.generation.flow import sample_timesteps_logit_normal
from lingen_model.wan.denoiser import WanDenoiser


def ma_parameters(model: WanDenoiser) -> Iterator[torch.nn.Parameter]:
    """The MA-branch parameters (unused by the teacher): what the first distillation stage trains."""
    for block in model.blocks:
        if block.ma is not None:
            yield from block.ma.parameters()


def distill_loss(student: WanDenoiser, x0: Tensor, context: Tensor, context_mask: Tensor,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One distillation loss on clean latents ``x0`` B×C×T×H×W with text ``context`` B×L×D.

    Returns ``(loss, relative error ‖v_s − v_t‖/‖v_t‖)`` (the second without gradient).
    The teacher pass runs under ``torch.no_grad`` with the student's own weights.
    """
    b = x0.shape[0]
    t = sample_timesteps_logit_normal(b, generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    tt = t.view(-1, 1, 1, 1, 1).to(x0.dtype)
    z = (1 - tt) * x0 + tt * eps
    with torch.no_grad(), student.as_teacher():
        target = student(z, t, context, context_mask)
    v = student(z, t, context, context_mask)
    loss = (v.float() - target.float()).pow(2).mean()
    rel = ((v.detach() - target).norm() / target.norm().clamp_min(1e-12))
    return loss, rel
