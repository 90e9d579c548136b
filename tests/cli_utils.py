"""Test helper: the one check every bad-input CLI test makes."""
from __future__ import annotations


def one_line_error(result, code: int = 2) -> str:
    """Assert a CliRunner ``result`` exited with ``code``, printed exactly one ``error:`` line and no
    traceback (and raised nothing but SystemExit); return that line."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    err = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(err) == 1, result.output
    assert "Traceback" not in result.output
    return err[0]
