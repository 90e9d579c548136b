"""Peak bytes of live tensors allocated inside a block, measured through torch's dispatcher.

``with LiveTensorMeter() as m: ...; m.peak`` — every tensor an ATen op returns is counted
by its storage (views share it) until the last Python tensor on that storage is collected.
Tensors that existed before the block (weights, inputs) are not counted. CPU allocators
expose no peak statistic, so memory tests and ``lingen benchmark --cp``
(:mod:`lingen_model.bench.context_parallel`) use this instead of RSS or wall-clock numbers.
Method: a ``torch.utils._python_dispatch.TorchDispatchMode`` (torch) that sees every op's outputs.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorMeter(TorchDispatchMode):
    """Tracks ``current`` and ``peak`` bytes (ints) of live storages created by ops in the block.

    Storages are keyed by data pointer and released by ``weakref.finalize`` on their tensors;
    meta tensors and zero-sized storages are not counted. Raises nothing of its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def _track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key == 0:
            return
        if key not in self.live:
            self.live[key] = [st.nbytes(), 0]
            self.current += st.nbytes()
            self.peak = max(self.peak, self.current)
        self.live[key][1] += 1
        weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        return out
