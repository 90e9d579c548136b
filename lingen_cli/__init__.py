"""lingen command-line interface (Typer + rich). Entry point: ``lingen_cli.app:main``."""
import os
import sys

from lingen_cli import interrupt as _interrupt

_interrupt.install_early()  # Ctrl-C during the imports below: one line, exit 130


def wait_policy(argv: list[str], busy_cores: float, cores: int) -> str | None:
    """The OpenMP wait policy for a command, chosen before torch loads (None: OpenMP's own default).

    ``busy_cores``: how many cores' worth of CPU other processes are using now (:func:`_busy_cores`);
    ``cores``: the cores this process may use.

    - ``ACTIVE`` (idle threads spin) for `lingen train`, which usually has the machine to itself:
      a lingen-tiny step (batch 4 × 33 frames, 2 cores) took 3.8 s -> 2.1 s in float32 and
      4.5 s -> 1.25 s with bf16 autocast (denoiser forward + backward).
    - OpenMP's default (libgomp: spin a while, then sleep) for every other command on a quiet
      machine (others use less than half the cores): each of the ~1,500 small parallel operations
      of a denoiser step otherwise pays a thread wake-up (~0.1 ms); a 4 s clip's denoise (10 CFG
      steps, 2 cores) took 5.1 s with PASSIVE and 3.1 s with the default.
    - ``PASSIVE`` (idle threads sleep) on a busy machine: next to one spinning process per core
      the same denoise took 6.7 s with PASSIVE, 35 s with the default and 13 s with ACTIVE
      (``scripts/bench_wait_policy.py``; docs/benchmarks.md, "OpenMP wait policy").
    """
    if argv[1:2] == ["train"]:
        return "ACTIVE"
    return None if busy_cores < 0.5 * cores else "PASSIVE"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_cores(interval_s: float = 0.1) -> float:
    """Cores' worth of CPU time that other processes use now: /proc/stat sampled over ``interval_s``
    seconds while this process sleeps (Linux). Elsewhere the 1-minute load average, or infinity
    (the cautious answer) when there is none. A load average would also count the previous
    command of a sequential batch of renders, which is over by now."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = sample()
        time.sleep(interval_s)
        total1, idle1 = sample()
        if total1 > total0:
            return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("inf")


# set before torch loads; an OMP_WAIT_POLICY already in the environment wins
if "OMP_WAIT_POLICY" not in os.environ:
    _policy = wait_policy(sys.argv, 0.0 if sys.argv[1:2] == ["train"] else _busy_cores(), _usable_cores())
    if _policy is not None:
        os.environ["OMP_WAIT_POLICY"] = _policy


#: glibc ``mallopt`` parameter (malloc.h) of each malloc environment variable that ``lingen benchmark``
#: gives its workers (``lingen_model.bench.constants.WORKER_ENV``, which holds the values, in bytes).
MALLOPT_PARAMS = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}


def tune_malloc() -> dict[str, int]:
    """Keep freed activation buffers in this process instead of returning them to the OS (glibc only).

    By default glibc serves every allocation above a sliding threshold (128 KiB at first) with its
    own ``mmap`` and unmaps it on free, so each denoiser step faults its activation buffers (tens of
    MB) in again page by page. Raising the mmap threshold to 32 MiB and the trim threshold to
    1 GiB (``mallopt``, the same values ``lingen benchmark`` gives its workers through
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``) keeps them: the 4 s default clip's denoise
    took 3.0–4.6 s without and 2.5–3.0 s with on 2 cores, 3 runs each (docs/benchmarks.md, "CPU
    branches and the allocator").
    A variable the user set in the environment wins (glibc read it at start-up). Returns the
    settings applied, by variable name ({} when not glibc or nothing applied); never raises.
    """
    import ctypes
    import platform

    from lingen_model.bench.constants import WORKER_ENV  # light: no torch

    if platform.libc_ver()[0] != "glibc":
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    applied = {}
    for name, param in MALLOPT_PARAMS.items():
        value = int(WORKER_ENV[name])
        if name not in os.environ and mallopt(param, value) == 1:
            applied[name] = value
    return applied


tune_malloc()
