"""Training-free step caching for the sampler: reuse or forecast the block stack's output across steps.

Two methods, both applied to the denoiser's block loop (``Denoiser.forward(..., cache=StepCache)``):

* ``"delta"`` — Δ-DiT's Δ-Cache (Chen et al. 2024, "Δ-DiT: A Training-Free Acceleration Method
  Tailored for Diffusion Transformers", arXiv 2406.01125, §3.2–3.3). On a full step the blocks are
  split into a front and a rear half and their deviations ``Δ_front = x_mid − x_in`` and
  ``Δ_rear = x_out − x_mid`` are stored. On a cached step one half is skipped and replaced by its
  stored deviation added to the *current* input (that is the Δ-Cache: the deviation, not the
  feature, is reused, so the current sample still flows through): in the early stage (calls before
  ``boundary`` · calls) the rear blocks are cached (they carry details, which are not yet formed),
  in the later stage the front blocks (outline, settled by then).
* ``"taylor"`` — TaylorSeer (Liu et al. 2025, "From Reusing to Forecasting: Accelerating Diffusion
  Models with TaylorSeers", arXiv 2503.06923, §3.2). On full steps the residual of the whole block
  stack ``F(t) = x_out − x_in`` is stored; on the steps between, ``F`` is forecast by a Taylor
  expansion in t whose derivatives are finite differences of the stored features, and no block
  runs. The expansion is written in Newton's divided-difference form
  ``F(t) ≈ Σ_j F[t_0..t_j] · Π_{i<j} (t − t_i)`` over the last ``order + 1`` full steps, which is
  TaylorSeer's first-order formula at ``order = 1`` and, on our non-uniform (time-shifted)
  schedule, exact for features that are polynomials of degree ≤ ``order`` in t.

Schedule (both): call k (0-based, one per denoiser evaluation; CFG's two halves are one call) is
*full* when ``k < warmup`` or ``(k − warmup + 1) % interval == 0`` (every N-th call counted from
the last warm-up call) or it is the last call; the others are cached. Defaults: N = 3; warm-up 1
(delta) or ``order + 1`` = 2 (taylor, order 1) — at 30 Euler steps 11 (delta) or 12 (taylor) of
the 30 calls are full. :meth:`StepCache.schedule` lists it; ``full_calls`` / ``block_calls`` count what ran.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

CACHE_MODES = ("none", "delta", "taylor")

#: defaults per mode (interval N, warmup, Δ-DiT boundary, TaylorSeer order)
DEFAULTS = {"delta": {"interval": 3, "warmup": 1, "boundary": 0.5, "order": 0},
            "taylor": {"interval": 3, "warmup": 2, "boundary": 0.5, "order": 1}}

RunBlocks = Callable[[torch.Tensor, int, int], torch.Tensor]
"""``run(x B×N×D, lo, hi) -> x`` after blocks ``lo .. hi-1``."""


class StepCache:
    """The cache of one sampling run; pass the same object to every denoiser call, in order.

    Args:
        mode: ``"delta"`` or ``"taylor"`` (``"none"`` is expressed by passing no cache).
        num_calls: denoiser calls in the run (``steps`` for Euler, ``2·steps`` for Heun).
        interval: N, a full call every N calls after the warm-up (≥ 1; 1 = every call full).
        warmup: leading full calls (default 1 for delta, ``order + 1`` for taylor).
        boundary: delta only, fraction of the calls (0–1) in the early stage (rear blocks cached).
        order: taylor only, order of the expansion (0 = reuse the last feature; ≥ 0).

    Raises:
        ValueError: unknown mode or out-of-range settings.
    """

    def __init__(self, mode: str, num_calls: int, interval: int | None = None, warmup: int | None = None,
                 boundary: float | None = None, order: int | None = None):
        if mode not in CACHE_MODES or mode == "none":
            raise ValueError(f"cache mode must be 'delta' or 'taylor' (or no cache for 'none'), got {mode!r}")
        d = DEFAULTS[mode]
        self.mode = mode
        self.order = d["order"] if order is None else order
        self.interval = d["interval"] if interval is None else interval
        self.warmup = (self.order + 1 if mode == "taylor" else d["warmup"]) if warmup is None else warmup
        self.boundary = d["boundary"] if boundary is None else boundary
        for name, v, lo in (("num_calls", num_calls, 1), ("interval", self.interval, 1),
                            ("warmup", self.warmup, 1), ("order", self.order, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if not 0.0 <= float(self.boundary) <= 1.0:
            raise ValueError(f"boundary must be in [0, 1], got {self.boundary!r}")
        self.num_calls = num_calls
        self._plan = self.schedule()
        self.calls = 0  # denoiser calls seen
        self.full_calls = 0  # calls that ran every block
        self.block_calls = 0  # block evaluations (a full call counts depth)
        self._delta: tuple[torch.Tensor, torch.Tensor] | None = None
        self._times: list[float] = []  # taylor: times of the stored points, newest first
        self._diffs: list[torch.Tensor] = []  # taylor: divided differences F[t_0..t_j], j = 0..

    def schedule(self) -> list[bool]:
        """``full[k]`` for each call k of the run (True: all blocks run)."""
        n, w, iv = self.num_calls, self.warmup, self.interval
        return [k < w or (k - w + 1) % iv == 0 or k == n - 1 for k in range(n)]

    # ------------------------------------------------------------------ the block loop
    def apply(self, x: torch.Tensor, t: float, run: RunBlocks, depth: int) -> torch.Tensor:
        """The block stack's output for input ``x`` (B×N×D) at time ``t``: computed, or from the cache."""
        k = self.calls
        self.calls += 1
        full = k >= self.num_calls or self._plan[k]
        if self.mode == "delta":
            return self._delta_step(x, k, full, run, depth)
        return self._taylor_step(x, t, full, run, depth)

    def _run(self, run: RunBlocks, x, lo, hi):
        self.block_calls += hi - lo
        return run(x, lo, hi)

    def _delta_step(self, x, k, full, run, depth):
        mid = depth // 2
        if full or self._delta is None:
            x_mid = self._run(run, x, 0, mid)
            out = self._run(run, x_mid, mid, depth)
            self._delta = (x_mid - x, out - x_mid)
            self.full_calls += 1
            return out
        d_front, d_rear = self._delta
        if k < self.boundary * self.num_calls:  # early stage: skip the rear blocks
            return self._run(run, x, 0, mid) + d_rear
        return self._run(run, x + d_front, mid, depth)  # later stage: skip the front blocks

    def _taylor_step(self, x, t, full, run, depth):
        if full or not self._diffs:
            out = self._run(run, x, 0, depth)
            self.push(t, out - x)
            self.full_calls += 1
            return out
        return x + self.forecast(t)

    # ------------------------------------------------------------------ TaylorSeer's expansion
    def push(self, t: float, feature: torch.Tensor) -> None:
        """Store a computed feature at time t and update the divided differences (newest first)."""
        diffs = [feature]
        for j in range(1, min(self.order, len(self._times)) + 1):
            diffs.append((diffs[j - 1] - self._diffs[j - 1]) / (t - self._times[j - 1]))
        self._times = [t] + self._times[: self.order]
        self._diffs = diffs

    def forecast(self, t: float) -> torch.Tensor:
        """``Σ_j F[t_0..t_j] · Π_{i<j} (t − t_i)`` from the stored points (Newton form, Horner's scheme)."""
        if not self._diffs:
            raise RuntimeError("forecast before any full step")
        out = self._diffs[-1]
        for j in range(len(self._diffs) - 2, -1, -1):
            out = self._diffs[j] + (t - self._times[j]) * out
        return out
