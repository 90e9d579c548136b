"""Ctrl-C at any moment: one line on stderr and exit code 130, never a traceback.

Two phases:
  * while the CLI imports (``lingen_cli`` → typer, rich, the command modules), a SIGINT prints the
    line and leaves at once (``os._exit(130)``): nothing has been written yet, and a
    KeyboardInterrupt raised inside an import leaves half-initialised modules behind (seen as
    RecursionError or ImportError on a later import);
  * from :func:`arm` on (``lingen_cli.app.main``), a SIGINT records the fact and raises
    KeyboardInterrupt, so that ``finally`` blocks remove temporary files; :func:`lingen_cli.common.fail`
    and ``main`` turn whatever error then surfaces into the one interruption line and code 130.
"""
from __future__ import annotations

import os

import _signal as signal  # the C module: no import time, so the handler is in place at once

EXIT_INTERRUPTED = 130
#: interrupted: a SIGINT arrived; reported: its line was printed.
STATE = {"interrupted": False, "reported": False}


def _leave_now(signum, frame):  # pragma: no cover - exercised in a subprocess
    STATE["interrupted"] = True
    try:
        os.write(2, b"error: interrupted\n")
    finally:
        os._exit(EXIT_INTERRUPTED)


def _raise(signum, frame):
    STATE["interrupted"] = True
    raise KeyboardInterrupt


def _running_as_cli() -> bool:
    """The process is the ``lingen`` command (console script, or ``python -m lingen_cli``: while ``-m``
    imports the package, ``sys.argv[0]`` is ``"-m"``), not a program importing lingen_cli."""
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 == "-m" or os.path.basename(argv0) in ("lingen", "lingen.exe")


def install_early() -> None:
    """Leave at once on SIGINT (the import phase), when running as the CLI; only in the main thread."""
    if not _running_as_cli():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _leave_now)
    except (ValueError, OSError):  # not the main thread
        pass


def arm() -> None:
    """From now on SIGINT raises KeyboardInterrupt (after recording it)."""
    try:
        if signal.getsignal(signal.SIGINT) in (_leave_now, signal.default_int_handler):
            signal.signal(signal.SIGINT, _raise)
    except (ValueError, OSError):
        pass
