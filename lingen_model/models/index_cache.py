"""A cache for the index tensors the mixers rebuild from sizes alone (scan permutations, window
slots, the backward scan order), shared by every layer and step."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def index_cache(maxsize: int) -> Callable[[F], F]:
    """``functools.lru_cache`` for functions of hashable sizes that return index tensors, building
    them outside ``torch.inference_mode``: a tensor first made under inference mode (sampling,
    benchmarks) could not be saved for backward by a later training forward that reuses it."""
    def wrap(fn: F) -> F:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(fn)
        def build(*args):
            with torch.inference_mode(False):
                return fn(*args)

        return build  # type: ignore[return-value]

    return wrap
