"""Reading a prompts file (one prompt per line, or JSONL), with bounds on its size."""
from __future__ import annotations

import os
from pathlib import Path

from lingen_model.errors import InputError

#: Largest prompts file read (bytes) and longest line kept (characters): a batch file is text a
#: person or a script wrote, so anything past these is a mistake (``/dev/zero``, a binary file).
MAX_PROMPTS_FILE_BYTES = 16 * 2**20
MAX_PROMPT_LINE_CHARS = 10_000


def read_prompt_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """The non-blank, non-comment (``#``) lines of a UTF-8 prompts file as (line number, stripped text).

    Raises:
        InputError: the file cannot be read, is not UTF-8, is larger than ``MAX_PROMPTS_FILE_BYTES``,
            has a line longer than ``MAX_PROMPT_LINE_CHARS``, or holds no prompt.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROMPTS_FILE_BYTES + 1)
    except OSError as e:
        raise InputError(f"cannot read prompts file {path}: {e.strerror or e}") from None
    if len(data) > MAX_PROMPTS_FILE_BYTES:
        raise InputError(f"prompts file {path} is larger than {MAX_PROMPTS_FILE_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read prompts file {path}: not UTF-8 text (byte {e.start})") from None
    lines = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_PROMPT_LINE_CHARS:
            raise InputError(f"{path}:{lineno}: line longer than {MAX_PROMPT_LINE_CHARS} characters")
        lines.append((lineno, line))
    if not lines:
        raise InputError(f"prompts file {path} holds no prompt")
    return lines
