"""Shared CLI helpers: one-line errors with exit codes, and the two consoles."""
from __future__ import annotations

import sys

import typer
from rich.console import Console

from lingen_model.errors import LinGenError

#: stdout console (results, tables); stderr console (progress, notes, errors).
console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

#: Help of the sampler options that ``generate`` and ``eval`` share (docs/design.md §7).
STAGGER_HELP = ("Per-frame lag in t: each latent frame runs this far behind the one before, so later frames "
                "settle beside decided ones (0 = off; default: the model's; lingen-tiny: 0.1 with 20 steps for "
                "clips of 30 s or more, off below; 0 also drops that long-clip default). Euler only, no step caching.")
STAGGER_CONTEXT_HELP = ("With --stagger: run only the moving latent frames and this many before them at each step "
                        "(linear cost for long clips; default: the model's, else the whole clip; lingen-tiny: 6).")
SHIFT_HELP = ("Time shift of the sampling schedule, > 0: t' = s·t / (1 + (s − 1)·t) spends more steps near pure "
              "noise, where the layout is decided (SD3's shift; default: the model's, else from the token count: "
              "lingen-tiny: 1.27 for a 4 s clip, 2.8 for 60 s).")
DIRECTION_GUIDANCE_HELP = ("Weight of guidance away from the prompt with its direction words swapped (left/right, "
                           "up/down, rising/falling): pushes motion the named way, one more batch per step "
                           "(0 = off; default: the model's).")
HEAD_HELP = ("With --stagger: sample the first N latent frames (each 4 video frames after the first) as a short clip "
             "first, at the model's short-clip settings, then run the staircase beside them (0 = off; default: the "
             "model's).")
CFG_MAX_T_HELP = ("Apply CFG only at noise levels t <= this (0-1; 1 = every step): guidance in a limited "
                  "interval, the highest-noise steps take the prompt's velocity alone (default: the model's).")


class CLIError(LinGenError):
    """A command-line usage error reported as one line, with an exit code (2 = bad input).

    Library failures are :class:`lingen_model.errors.LinGenError` (``InputError`` → 2,
    ``OperationError`` → 1); this subclass adds the CLI's own checks, so commands catch
    ``LinGenError`` once and exit with ``e.exit_code``.
    """

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.exit_code = code

    @property
    def code(self) -> int:
        """Alias of ``exit_code``."""
        return self.exit_code


EXIT_INTERRUPTED = 130


def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) was received in this process (see :mod:`lingen_cli.interrupt`)."""
    from lingen_cli.interrupt import STATE

    return STATE["interrupted"]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> "typer.Exit":
    """Print ``error: message`` on one line to stderr and return a ``typer.Exit(code)`` to raise.

    After Ctrl-C any failure is reported as the interruption (one line, exit code 130): an
    interrupted import or computation can surface as an unrelated error."""
    from lingen_cli.interrupt import STATE

    if STATE["interrupted"]:
        if not STATE["reported"]:
            STATE["reported"] = True
            print("error: interrupted; no partial file was left", file=sys.stderr)
        return typer.Exit(EXIT_INTERRUPTED)
    first = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    print(f"error: {first}", file=sys.stderr)
    return typer.Exit(code)


def write_stdout_line(text: str) -> None:
    """Write one line to stdout in one call and flush; a closed or broken stdout (``>&-``, a
    reader that went away) is reported once on stderr and the line dropped, never a traceback."""
    try:
        if sys.stdout is None:
            raise BrokenPipeError
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        _stdout_gone()


def _stdout_gone() -> None:
    import os

    if not getattr(_stdout_gone, "warned", False):
        _stdout_gone.warned = True
        print("warning: stdout is closed; result lines are dropped", file=sys.stderr)
    try:
        devnull = open(os.devnull, "w")
        sys.stdout = devnull
    except OSError:
        pass
