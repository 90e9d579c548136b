"""Parsing of command-line values not owned by the library: seeds, dtypes, output-name slugs.
Lengths and resolutions are parsed by :mod:`lingen_model.geometry`. Parsers raise ``CLIError``
with a one-line message on bad input."""
from __future__ import annotations

import re
import secrets

from lingen_cli.common import CLIError

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def resolve_seed(seed: int) -> int:
    """``-1`` → a fresh random seed in [0, 2³¹); other negatives → CLIError; else the seed itself."""
    if seed == -1:
        return secrets.randbelow(2**31)
    if seed < 0 or seed >= 2**63:
        raise CLIError(f"seed must be -1 (random) or in [0, 2^63), got {seed}")
    return int(seed)


def slugify(text: str, max_len: int = 48) -> str:
    """File-name-safe slug of a prompt: lower-case words joined by '-' (``clip`` if nothing is left)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    return slug or "clip"
