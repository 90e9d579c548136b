"""File helpers with one job each: atomic writes, sha256 of a file, human-readable sizes."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

#: File types refused because loading them can execute code (pickle, Python, native code).
UNSAFE_SUFFIXES = (
    ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill",
    ".py", ".pyc", ".so", ".dll", ".dylib",
)
#: Read size for hashing (bytes).
HASH_CHUNK_BYTES = 1 << 20


#: Our temporary files: ``.NAME.lingen-PID-XXXXXXXX.SUFFIX`` (PID of the writer; ``tempfile`` letters),
#: and the pattern of earlier versions, ``.NAME.XXXXXXXX.SUFFIX`` with NAME ending in the same suffix.
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.lingen-(?P<pid>\d+)-[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)$")
LEGACY_TEMP_RE = re.compile(r"^\.(?P<name>.+(?P<suffix>\.(?:mp4|json|tmp|safetensors|png)))\.[a-z0-9_]{8}(?P=suffix)$")


def temp_prefix(final: str | os.PathLike) -> str:
    """Name prefix of this process's temporary files for ``final``: ``.NAME.lingen-PID-``."""
    return f".{Path(final).name}.lingen-{os.getpid()}-"


@contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary file is ``.NAME.lingen-PID-XXXX.SUFFIX`` in the same folder (so the rename is
    atomic on POSIX; :func:`temp_name_pattern` recognises it, so a later run can remove it if this
    process is killed). On any exception (KeyboardInterrupt included) it is removed, so no half-written file
    is ever left at ``final``. Parent folders are created.

    Raises:
        OSError: the folder cannot be created or written.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(final), suffix=suffix or final.suffix or ".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically (see :func:`atomic_path`). Returns the path."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def atomic_write_json(final: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values via ``str``) to ``final`` atomically."""
    return atomic_write_text(final, json.dumps(obj, indent=2, default=str) + "\n")


def sha256_file(path: str | os.PathLike, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """Return the sha256 hex digest of a file, read in ``chunk_bytes``-byte chunks.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def format_bytes(n: float | None, unknown: str = "?") -> str:
    """Human-readable size in decimal units: ``512 B``, ``1.5 kB``, ``36.2 MB``, ``1.5 GB``;
    ``unknown`` when ``n`` is None."""
    if n is None:
        return unknown
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
