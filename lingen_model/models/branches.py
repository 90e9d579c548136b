"""Independent branches of a CPU inference pass, run side by side on single-threaded workers.

Why (docs/design.md §4.2; docs/benchmarks.md): on a CPU with few cores most of a denoiser step's
~1,500 tensor operations are too small to use two threads well, yet every one above torch's
parallel grain wakes the sleeping OpenMP threads (``OMP_WAIT_POLICY=PASSIVE``: ~0.1 ms a wake-up
on the 2-core machines here). Computations that do not depend on each other — the forward and
backward scans of a bidirectional Mamba2 layer, the two samples of a CFG step — can instead each
run on its own core with one thread: no wake-ups, and both cores busy. This is inter-op
parallelism (what ``torch.jit.fork`` gives TorchScript) done with Python threads; torch's
operators release the GIL while they compute.

:func:`run_branches` runs the callables in parallel when :func:`branches_enabled` says so and
otherwise one after the other in the calling thread. Splitting the scan directions changes no bit
(the same operators per direction), so it may follow the OpenMP wait policy, which ``lingen_cli``
picks from the machine's load. Splitting a batch changes the last bits (each half's matrix
products are products of their own), so it runs whenever branches can, whatever the wait policy:
a seed renders the same bytes on a quiet and on a busy machine.
"""
from __future__ import annotations

import functools
import os
import queue
import threading
from concurrent.futures import Future, wait
from typing import Callable, Sequence

import torch

#: Environment variable: ``auto`` (default), ``on`` (also per-layer branches under a spinning
#: OpenMP wait policy) or ``off``.
ENV = "LINGEN_CPU_BRANCHES"

_local = threading.local()  # .in_worker: True in a pool's threads (nested calls run in line)
_pools: dict[tuple[int, int, int], "_Workers"] = {}
_pools_lock = threading.Lock()


def _setting() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "on", "off"):
        raise ValueError(f"{ENV} must be auto, on or off, got {value!r}")
    return value


def threads_sleep() -> bool:
    """True when idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``, as ``lingen benchmark``
    and ``lingen_cli`` on a busy machine set it) rather than spinning for a while first."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


try:  # torch's private mode stacks (read per call of branches_enabled, so looked up once here)
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
except ImportError:  # pragma: no cover - a torch without them: never branch
    _get_current_function_mode_stack = _get_current_dispatch_mode_stack = None


def _modes_active() -> bool:
    """Whether a torch dispatch or function mode is active in this thread (``FlopCounterMode``, ``with
    torch.device(...)``, ...): modes are per thread, so a branch on a worker would run outside it.
    True (stay in line) when torch's mode stacks cannot be read."""
    if _get_current_dispatch_mode_stack is None:
        return True
    return bool(_get_current_dispatch_mode_stack()) or bool(_get_current_function_mode_stack())


def branches_enabled(device: torch.device | str, count: int = 2, only_if_threads_sleep: bool = False) -> bool:
    """Whether :func:`run_branches` would run ``count`` branches on ``device`` in parallel now.

    True when all of these hold: ``LINGEN_CPU_BRANCHES`` is not ``off``; ``device`` is the CPU;
    autograd is off (``torch.no_grad`` or ``torch.inference_mode``: the graph and the grad mode are
    per thread) and so is CPU autocast (also per thread); no torch dispatch or function mode is
    active (``FlopCounterMode``, ``torch.device`` as a context: also per thread); the calling thread
    is not itself a branch worker; it uses at least ``count`` torch threads; and, for ``only_if_threads_sleep`` callers,
    :func:`threads_sleep` (or the setting is ``on``). Callers that fork once per layer pass
    ``only_if_threads_sleep``: under a spinning wait policy the calling thread's own OpenMP threads
    keep spinning for a while after each operation and hold the cores the branches need (a 4 s
    batch-1 step measured 80 ms without such branches and 100 ms with them; docs/benchmarks.md).

    Raises:
        ValueError: ``LINGEN_CPU_BRANCHES`` is set to something other than auto, on or off.
    """
    setting = _setting()
    if setting == "off" or count < 2 or torch.device(device).type != "cpu":
        return False
    if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu") or getattr(_local, "in_worker", False):
        return False
    if _modes_active():
        return False
    if torch.get_num_threads() < count:
        return False
    return not only_if_threads_sleep or setting == "on" or threads_sleep()


def describe() -> str:
    """One line for ``lingen info``: which CPU branches inference runs now (by the settings and the
    calling thread's torch thread count), e.g. ``"CFG halves, scan directions (auto)"``. Never raises:
    a bad ``LINGEN_CPU_BRANCHES`` value is reported in the line."""
    try:
        setting = _setting()
    except ValueError as e:
        return f"error: {e}"
    if setting == "off":
        return f"off ({ENV}=off)"
    if torch.get_num_threads() < 2:
        return "off (1 torch thread)"
    per_layer = setting == "on" or threads_sleep()
    return f"CFG halves{', scan directions' if per_layer else ''} ({setting})"


class _Workers:
    """``count`` daemon threads, each with its own task queue (branch i always runs on worker i),
    whose torch operators use ``threads_each`` threads."""

    def __init__(self, count: int, threads_each: int):
        restore = torch.get_num_threads()
        self.queues = [queue.SimpleQueue() for _ in range(count)]
        ready = threading.Barrier(count + 1)
        for i, q in enumerate(self.queues):
            threading.Thread(target=self._serve, args=(q, threads_each, ready), name=f"lingen-branch-{i}",
                             daemon=True).start()
        ready.wait()  # every worker has set its thread count
        torch.set_num_threads(restore)  # set_num_threads also set torch's process-wide default: restore it

    @staticmethod
    def _serve(tasks: queue.SimpleQueue, threads_each: int, ready: threading.Barrier) -> None:
        _local.in_worker = True
        torch.get_num_threads()  # torch's per-thread lazy set-up first, so the next call sticks
        torch.set_num_threads(threads_each)  # this thread's OpenMP (and MKL) thread count
        ready.wait()
        while True:
            fn, future = tasks.get()
            try:
                future.set_result(fn())
            except BaseException as err:  # handed to the caller
                future.set_exception(err)

    def submit(self, i: int, fn: Callable[[], object]) -> Future:
        future: Future = Future()
        self.queues[i].put((fn, future))
        return future


def _workers(count: int, threads_each: int) -> _Workers:
    """The workers for ``count`` branches, created once per process (a forked child gets its own:
    the parent's threads do not exist there)."""
    key = (os.getpid(), count, threads_each)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = _Workers(count, threads_each)
        return _pools[key]


def run_branches(branches: Sequence[Callable[[], object]], device: torch.device | str,
                 only_if_threads_sleep: bool = False) -> list:
    """Call every function in ``branches`` (no arguments) and return their results, in order.

    In parallel, branch i on worker thread i, each single-threaded (``torch.get_num_threads() //
    len(branches)`` threads each on a larger CPU), when :func:`branches_enabled` (``device``: where
    the branches' tensors live; ``only_if_threads_sleep`` as there); otherwise one after the other
    in the calling thread. The workers run under
    ``torch.inference_mode`` when the caller is, else ``torch.no_grad``. A branch's exception is
    raised here, and so is a KeyboardInterrupt that arrives while waiting, both only after every
    branch has finished (a worker still inside an operator when the interpreter exits would abort
    the process: "terminate called without an active exception").

    Raises:
        ValueError: a bad ``LINGEN_CPU_BRANCHES`` value; whatever a branch raises.
    """
    branches = list(branches)
    if not branches_enabled(device, len(branches), only_if_threads_sleep):
        return [fn() for fn in branches]
    workers = _workers(len(branches), torch.get_num_threads() // len(branches))
    mode = torch.inference_mode if torch.is_inference_mode_enabled() else torch.no_grad

    def call(fn):
        with mode():
            return fn()

    futures = [workers.submit(i, functools.partial(call, fn)) for i, fn in enumerate(branches)]
    interrupted = None
    while True:  # none may still run when this returns, not even after Ctrl-C: a worker thread
        try:     # caught inside an operator when the interpreter exits aborts the process
            wait(futures)
            break
        except BaseException as err:  # KeyboardInterrupt while waiting: the branches end first (ms)
            interrupted = interrupted or err
    if interrupted is not None:
        raise interrupted
    return [f.result() for f in futures]  # raises the first branch's exception, in branch order
