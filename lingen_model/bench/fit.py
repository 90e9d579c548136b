"""Statistics of a benchmark: log-log slopes of cost vs tokens and the LinGen/DiT crossover (in tokens and seconds)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from lingen_model.bench.cells import Cell
from lingen_model.geometry import TEMPORAL_FACTOR

# ----------------------------------------------------------------------------- statistics


def fit_loglog_slope(tokens: Sequence[float], cost: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log(cost) vs log(tokens): the scaling exponent (1 = linear, 2 = quadratic).

    Returns None with fewer than two distinct token counts or a non-positive value.
    """
    pts = [(math.log(x), math.log(y)) for x, y in zip(tokens, cost) if x and y and x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def crossover_tokens(tokens: Sequence[float], lingen: Sequence[float], dit: Sequence[float]) -> tuple[Optional[float], str]:
    """Token count where the DiT's cost overtakes LinGen's (log-log interpolation of the ratio).

    Returns (tokens, how) with how ``"measured"`` (bracketed by two points), ``"extrapolated"``
    (power laws through the two nearest points), ``"lingen-always"`` / ``"dit-always"`` (one
    mixer cheaper at every point and the gap not closing), ``"none"`` (the ratio only falls
    through 1), or (None, ``"n/a"``) with fewer than two usable points.
    """
    pts = sorted((x, a, b) for x, a, b in zip(tokens, lingen, dit) if x > 0 and a and b and a > 0 and b > 0)
    if len(pts) < 2:
        return None, "n/a"
    lx = [math.log(p[0]) for p in pts]
    lr = [math.log(p[2] / p[1]) for p in pts]  # log(DiT / LinGen): crosses 0 at the crossover
    for i in range(len(pts) - 1):
        if lr[i] <= 0 < lr[i + 1]:
            f = -lr[i] / (lr[i + 1] - lr[i])
            return math.exp(lx[i] + f * (lx[i + 1] - lx[i])), "measured"
    above = [v > 0 for v in lr]
    if any(above) and not all(above):
        return None, "none"  # the ratio only falls through 1: the DiT does not overtake
    i = 0 if above[0] else len(pts) - 2  # extrapolate from the end nearest to the crossing
    slope = (lr[i + 1] - lr[i]) / (lx[i + 1] - lx[i])
    if slope <= 0:
        return None, "lingen-always" if above[0] else "dit-always"
    return math.exp(lx[i] - lr[i] / slope), "extrapolated"


def tokens_to_seconds(tokens: float, cell: Cell, patch: int) -> float:
    """Clip length (s) at ``cell``'s resolution and fps whose latent has ``tokens`` tokens (continuous)."""
    per_frame = math.ceil(cell.latent[1] / patch) * math.ceil(cell.latent[2] / patch)
    latent_frames = tokens / per_frame
    return (1 + TEMPORAL_FACTOR * (latent_frames - 1)) / cell.fps


def flops_crossover_seconds(model: str, cell: Cell, batch: int, text_len: int, max_latent_frames: int = 1 << 20) -> Optional[float]:
    """Shortest length (s) at ``cell``'s resolution/fps where the DiT twin needs more FLOPs per step
    than LinGen (analytic; exact on the latent-frame grid). None if not within ``max_latent_frames``."""
    from lingen_model.bench.flops import denoiser_flops
    from lingen_model.models.config import get_config

    cfg_l, cfg_d = get_config(model, "mate"), get_config(model, "attention")

    def dit_costlier(t: int) -> bool:
        shape = (t, cell.latent[1], cell.latent[2])
        return denoiser_flops(cfg_d, shape, batch, text_len).total > denoiser_flops(cfg_l, shape, batch, text_len).total

    if dit_costlier(1):
        return (1.0) / cell.fps
    lo, hi = 1, 2
    while not dit_costlier(hi):
        lo, hi = hi, hi * 2
        if hi > max_latent_frames:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if dit_costlier(mid) else (mid, hi)
    return (1 + TEMPORAL_FACTOR * (hi - 1)) / cell.fps
