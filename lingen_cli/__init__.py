"""lingen command-line interface (Typer + rich). Entry point: ``lingen_cli.app:main``."""
import os
import sys

from lingen_cli import interrupt as _interrupt

_interrupt.install_early()  # Ctrl-C during the imports below: one line, exit 130


def wait_policy(argv: list[str], load_1min: float, cores: int) -> str | None:
    """The OpenMP wait policy for a command, chosen before torch loads (None: OpenMP's own default).

    - ``ACTIVE`` (idle threads spin) for `lingen train`, which usually has the machine to itself:
      a lingen-tiny step (batch 4 × 33 frames, 2 cores) took 3.8 s -> 2.1 s in float32 and
      4.5 s -> 1.25 s with bf16 autocast (denoiser forward + backward).
    - OpenMP's default (libgomp: spin briefly, then sleep) for every other command on a quiet
      machine (1-minute load average below half the cores): each of the ~1,500 small parallel
      operations of a denoiser step otherwise pays a thread wake-up (~0.1 ms); a 4 s clip's
      denoise took 5.8 s with PASSIVE and 3.3 s with the default (10 CFG steps, 2 cores).
    - ``PASSIVE`` (idle threads sleep) on a busy machine: next to two busy processes on 2 cores
      the same denoise took 6.9 s with PASSIVE and 18.5 s with the default (docs/benchmarks.md,
      "OpenMP wait policy").
    """
    if argv[1:2] == ["train"]:
        return "ACTIVE"
    return None if load_1min < 0.5 * cores else "PASSIVE"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load_1min() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): the cautious choice
        return float("inf")


# set before torch loads; an OMP_WAIT_POLICY already in the environment wins
if "OMP_WAIT_POLICY" not in os.environ:
    _policy = wait_policy(sys.argv, _load_1min(), _usable_cores())
    if _policy is not None:
        os.environ["OMP_WAIT_POLICY"] = _policy
