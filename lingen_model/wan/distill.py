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

from typing import Callable, Iterator

import torch
from torch import Tensor

from lingen_model.generation.flow import sample_timesteps_logit_normal
from lingen_model.wan.denoiser import WanDenoiser


def ma_parameters(model: WanDenoiser) -> Iterator[torch.nn.Parameter]:
    """The MA-branch parameters (unused by the teacher): what the first distillation stage trains."""
    for block in model.blocks:
        if block.ma is not None:
            yield from block.ma.parameters()


def velocity_distill_loss(student_fn: Callable[..., Tensor], teacher_fn: Callable[..., Tensor], x0: Tensor,
                          t: Tensor, noise: Tensor, context: Tensor,
                          context_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Velocity distillation at given times and noise (the trainer's form: it draws ``t`` and
    ``noise`` for the whole global batch).

    ``x0``, ``noise``: clean latents and Gaussian noise, B×C×T×H×W; ``t``: B flow times in [0, 1]
    (1 = noise); ``context`` B×L×D, ``context_mask`` B×L bool. ``student_fn`` / ``teacher_fn`` map
    ``(z_t, t, context, mask)`` to a velocity like ``z_t``; the teacher runs under ``torch.no_grad``.

    Returns ``(loss, Σ(v_s − v_t)², Σ v_t²)``: the loss is the float32 mean squared difference
    (with gradient); the two sums (float32, no gradient) give the relative error
    ``√(Σ(v_s − v_t)² / Σ v_t²)`` of one batch or, summed first, of several ranks' rows.
    """
    tt = t.view(-1, 1, 1, 1, 1).to(x0.dtype)
    z = (1 - tt) * x0 + tt * noise.to(x0.dtype)
    with torch.no_grad():
        target = teacher_fn(z, t, context, context_mask).float()
    diff = student_fn(z, t, context, context_mask).float() - target
    return diff.pow(2).mean(), diff.detach().pow(2).sum(), target.pow(2).sum()


def distill_loss(student: WanDenoiser, x0: Tensor, context: Tensor, context_mask: Tensor,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One distillation loss on clean latents ``x0`` B×C×T×H×W with text ``context`` B×L×D.

    Returns ``(loss, relative error ‖v_s − v_t‖/‖v_t‖)`` (the second without gradient).
    The teacher pass runs under ``torch.no_grad`` with the student's own weights
    (:meth:`WanDenoiser.as_teacher`); ``t`` is logit-normal (SD3), the noise Gaussian.
    """
    b = x0.shape[0]
    t = sample_timesteps_logit_normal(b, generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)

    def teacher(*args):
        with student.as_teacher():
            return student(*args)

    loss, sq_err, sq_ref = velocity_distill_loss(student, teacher, x0, t, eps, context, context_mask)
    return loss, (sq_err / sq_ref.clamp_min(1e-24)).sqrt()
