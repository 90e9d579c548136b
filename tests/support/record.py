"""Append measured numbers to a JSON-lines file when ``LINGEN_TEST_RECORD`` names one.

Used by the CUDA tests so that ``scripts/gpu_check.sh`` brings back the errors and
tolerances it measured, not only pass/fail. A no-op when the variable is unset.
"""
from __future__ import annotations

import json
import os


def record(test: str, **numbers) -> None:
    """Append ``{"test": test, **numbers}`` as one line to ``$LINGEN_TEST_RECORD`` (if set)."""
    path = os.environ.get("LINGEN_TEST_RECORD")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": test, **numbers}, default=str) + "\n")
