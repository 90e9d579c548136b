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


def fail(message: str, code: int = EXIT_BAD_INPUT) -> "typer.Exit":
    """Print ``error: message`` on one line to stderr and return a ``typer.Exit(code)`` to raise."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    print(f"error: {first}", file=sys.stderr)
    return typer.Exit(code)
