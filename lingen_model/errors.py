"""The library's expected failures. Each message is one line meant for the user.

``InputError`` (a ``ValueError``): the request itself is wrong (bad name, value, file); the CLI
exits with code 2. ``OperationError`` (a ``RuntimeError``): a well-formed request could not be
carried out (network, cache, disk, missing install); the CLI exits with code 1. Both derive from
``LinGenError``, so a caller can catch every expected failure at once and let real bugs through.
(See docs/design.md, "Layers and errors".)
"""
from __future__ import annotations


class LinGenError(Exception):
    """Base of lingen's expected failures. ``exit_code``: what the CLI exits with (1 or 2)."""

    exit_code = 1


class InputError(LinGenError, ValueError):
    """The request is wrong: an unknown name, an out-of-range value, a malformed file (exit code 2)."""

    exit_code = 2


class OperationError(LinGenError, RuntimeError):
    """A well-formed request failed: the Hub is unreachable, a download is corrupt, a disk is full (exit code 1)."""

    exit_code = 1
