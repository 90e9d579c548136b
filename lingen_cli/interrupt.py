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
import signal

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


def install_early() -> None:
    """Leave at once on SIGINT (the import phase). Only in the main thread; a no-op elsewhere."""
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
