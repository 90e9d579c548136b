"""Prototype, not in the library (session 38, issue 14): weight each clip's object by how faint it is in the latents.

``probe_latent_contrast.py`` found that the shipped VAE draws some objects far more faintly than others: the RMS
difference between an object's latents and its background's runs from ~0.5 (green or cyan on gray, green on dark
blue) to ~8–10 (white) in units of the normalised latents, whose noise has standard deviation 1. The flow-matching
loss an object earns scales with that contrast squared, so a green circle on gray pays ~1/100 of what a white one
does, and the scenes it lives in are where 4k misses most (docs/eval/README.md, "Session 38").

Here each clip's object voxels get the loss weight ``k = clip((C_REF / c)², 1, K_MAX)`` and every other voxel 1,
where ``c`` is the clip's object contrast: the RMS over the object voxels and the latent channels of the latents
minus the per-channel median of the clip's background voxels. Objects at least ``C_REF`` strong keep weight 1 (the
plain loss); fainter ones are lifted towards the loss a ``C_REF``-strong object earns, up to ``K_MAX``. The loss is
the library's weighted mean (``flow.flow_matching_loss(weight_map=)``), so the batch's loss is renormalised by the
weights' sum.

Only the training process is patched: ``flow.flow_matching_loss``, which the trainer calls with the object voxels
of ``object_weight`` (> 0 in the recipe so that the world's masks are streamed; its value is then not used, only
which voxels it marks), and the data of ``proto_circles.py`` (4k's world). The world, the captions and the judge are
unchanged.

    python recipes/lingen-tiny/proto_contrast_weight.py train recipes/lingen-tiny/denoiser-4s.yaml

Raises ValueError (at start) for ``C_REF`` ≤ 0 or ``K_MAX`` < 1.
"""
import functools
import os
import sys
from pathlib import Path

import torch

from lingen_model.generation import flow

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proto_circles  # noqa: E402  (the sibling prototype)

C_REF = float(os.environ.get("C_REF", "2.5"))
K_MAX = float(os.environ.get("K_MAX", "25.0"))


def object_contrast(latents: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """Per-clip object contrast ``c`` [B] (normalised-latent units): the RMS of ``latents − background`` over the
    voxels where ``objects`` is true and over channels, with ``background`` the per-channel median of the clip's
    other voxels. ``latents`` B×C×T×H×W; ``objects`` bool B×1×T×H×W. A clip without object voxels (or without
    background voxels) gets ``inf`` (weight 1 below). Raises RuntimeError (torch's) for shapes that do not match."""
    out = torch.full((latents.shape[0],), float("inf"))
    for b in range(latents.shape[0]):
        m = objects[b, 0]
        if not bool(m.any()) or bool(m.all()):
            continue
        z = latents[b].float()
        background = z[:, ~m].median(dim=1).values  # C
        out[b] = (z[:, m] - background[:, None]).square().mean().sqrt()
    return out


def clip_weights(contrast: torch.Tensor, c_ref: float = C_REF, k_max: float = K_MAX) -> torch.Tensor:
    """Object weights ``clip((c_ref / contrast)², 1, k_max)`` [B] (unitless) for contrasts [B] in the same units as
    ``c_ref`` (``inf`` → 1). Raises nothing of its own; :func:`install` checks ``c_ref`` > 0 and ``k_max`` ≥ 1."""
    return (c_ref / contrast).square().clamp(1.0, k_max)


def install(c_ref: float = C_REF, k_max: float = K_MAX) -> None:
    """Patch this process as the module docstring says (after ``proto_circles.install``)."""
    if not (c_ref > 0 and k_max >= 1):
        raise ValueError(f"C_REF must be > 0 and K_MAX >= 1, got {c_ref}, {k_max}")
    proto_circles.install()
    original = flow.flow_matching_loss

    @functools.wraps(original)
    def flow_matching_loss(model_fn, x0, context, mask, *args, weight_map=None, **kwargs):
        if weight_map is not None:
            objects = weight_map > 1  # object_weight's map: 1 + object_weight on the voxels an object touches
            k = clip_weights(object_contrast(x0.detach(), objects), c_ref, k_max).to(weight_map.device)
            weight_map = torch.where(objects, k.view(-1, 1, 1, 1, 1), torch.ones_like(weight_map))
        return original(model_fn, x0, context, mask, *args, weight_map=weight_map, **kwargs)

    flow.flow_matching_loss = flow_matching_loss


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        install()
    from lingen_cli.app import app

    sys.argv = ["lingen"] + sys.argv[1:]
    app()
