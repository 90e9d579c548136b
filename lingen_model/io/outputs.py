"""Output clips that are never lost: an mp4 and its JSON sidecar appear at their final names together,
only once both are complete, never over an existing file unless asked, and never twice.

How (POSIX):
  1. the mp4 and the sidecar are written to temporary files of our own pattern in the target folder
     (``.NAME.lingen-PID-XXXXXXXX.SUFFIX``, see :mod:`lingen_model.io.files`); the mp4 only counts once
     ffmpeg exited 0 (:func:`lingen_model.io.video.encode_mp4`);
  2. each temporary file is hard-linked to its final name (``os.link`` fails if the name exists, so of
     two concurrent runs exactly one wins), the sidecar last; if the sidecar's link fails the mp4's
     link is removed again. Without ``overwrite`` nothing existing is ever replaced; with it,
     ``os.replace`` is used;
  3. the temporary files are removed (also on any error or Ctrl-C).

:func:`clean_stale_temps` removes temporary files that an earlier, killed run left in a folder:
only names of our pattern, and only when their writer's PID is gone (or they are old).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from lingen_model.errors import InputError, OperationError
from lingen_model.io.files import LEGACY_TEMP_RE, TEMP_RE, temp_prefix

#: Temporary files of a live writer are left alone for this long even if its PID looks gone
#: (another PID namespace, e.g. a container sharing the folder); past it they are stale.
STALE_AFTER_S = 10 * 60
#: Files of the earlier pattern (no PID in the name) are stale after this age.
LEGACY_STALE_AFTER_S = 60 * 60


class OutputExistsError(InputError):
    """A file is already at an output name and neither overwrite nor skip was asked for (exit code 2)."""


def sidecar_path(mp4: str | os.PathLike) -> Path:
    """The JSON sidecar beside an mp4: ``clip.mp4`` → ``clip.json``."""
    return Path(mp4).with_suffix(".json")


def existing_outputs(mp4: str | os.PathLike) -> list[Path]:
    """Which of the mp4 and its sidecar already exist (as any kind of file system entry)."""
    return [p for p in (Path(mp4), sidecar_path(mp4)) if os.path.lexists(p)]


def check_free(mp4: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise :class:`OutputExistsError` naming the first existing output of ``mp4`` (mp4 or sidecar),
    unless ``overwrite``. A directory at either name is refused even with ``overwrite``."""
    for p in existing_outputs(mp4):
        if p.is_dir():
            raise OutputExistsError(f"{p} is a directory; cannot write a clip there")
        if not overwrite:
            raise OutputExistsError(f"{p} already exists; use --overwrite to replace it or --skip-existing to keep it")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def clean_stale_temps(folder: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove stale temporary files of our own pattern from ``folder``; returns what was removed.

    A ``.NAME.lingen-PID-XXXXXXXX.SUFFIX`` file is stale when its PID is not a running process (and
    it is older than a minute, so a writer that just started is never raced) or when it is older than
    ``STALE_AFTER_S``; a file of the earlier ``.NAME.XXXXXXXX.SUFFIX`` pattern when older than
    ``LEGACY_STALE_AFTER_S``. Any other file is left alone; errors are ignored (best effort).
    """
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        m, legacy = TEMP_RE.match(entry.name), LEGACY_TEMP_RE.match(entry.name)
        if not (m or legacy):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if m:
            pid = int(m.group("pid"))
            stale = age > STALE_AFTER_S or (age > 60 and pid != os.getpid() and not _pid_alive(pid))
        else:
            stale = age > LEGACY_STALE_AFTER_S
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _new_temp(final: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(final), suffix=suffix, dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
    return Path(tmp)


def _link_exclusive(tmp: Path, final: Path) -> None:
    """Put ``tmp``'s content at ``final`` only if ``final`` does not exist (atomic, exclusive)."""
    try:
        os.link(tmp, final)
        return
    except FileExistsError:
        raise OutputExistsError(f"{final} already exists (another run wrote it first?); it was left as it is") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    # file systems without hard links: reserve the name exclusively, then rename onto the reservation
    try:
        fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise OutputExistsError(f"{final} already exists (another run wrote it first?); it was left as it is") from None
    os.close(fd)
    try:
        os.replace(tmp, final)
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def publish(pairs: Iterable[tuple[Path, Path]], overwrite: bool = False) -> None:
    """Move complete temporary files onto their final names, all or none (in order; the last one
    is the one that makes the set count, e.g. the sidecar).

    Without ``overwrite`` each final name is claimed exclusively (``os.link``); if any claim fails,
    the names already claimed are removed again and :class:`OutputExistsError` (or the OSError) is
    raised. With ``overwrite`` each is ``os.replace``-d.
    """
    done: list[Path] = []
    try:
        for tmp, final in pairs:
            if overwrite:
                os.replace(tmp, final)
            else:
                _link_exclusive(tmp, final)
            done.append(final)
    except BaseException:
        if not overwrite:
            for final in done:
                final.unlink(missing_ok=True)
        raise


def write_clip(frames: np.ndarray, mp4: str | os.PathLike, fps: float,
               sidecar: dict[str, Any] | Callable[[float], dict[str, Any]], overwrite: bool = False,
               encode: Callable[..., Any] | None = None) -> Path:
    """Write ``frames`` (uint8 T×H×W×3) as an H.264 mp4 at ``mp4`` and its JSON sidecar beside it,
    both or neither.

    Args:
        sidecar: the sidecar dict, or a function of the mp4 writing time (seconds) returning it.
        overwrite: replace existing files; otherwise an existing mp4 or sidecar is an error (and a
            run that finishes second, with the same name, loses and leaves the first run's files).
        encode: ``encode(frames, path, fps)`` (default :func:`lingen_model.io.video.encode_mp4`).

    Raises:
        OutputExistsError (an InputError): an output exists and ``overwrite`` is False.
        OperationError: ffmpeg failed, or the folder cannot be written (disk full, read-only).
        ValueError: bad frames.
    """
    from lingen_model.io.video import encode_mp4

    mp4 = Path(mp4)
    side = sidecar_path(mp4)
    check_free(mp4, overwrite)
    clean_stale_temps(mp4.parent)
    temps: list[Path] = []
    try:
        try:
            tmp_mp4 = _new_temp(mp4, ".mp4")
            temps.append(tmp_mp4)
            t0 = time.perf_counter()
            (encode or encode_mp4)(frames, tmp_mp4, fps)
            write_s = time.perf_counter() - t0
            record = sidecar(write_s) if callable(sidecar) else sidecar
            tmp_side = _new_temp(side, ".json")
            temps.append(tmp_side)
            with open(tmp_side, "w", encoding="utf-8") as f:
                f.write(json.dumps(record, indent=2, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
            publish([(tmp_mp4, mp4), (tmp_side, side)], overwrite=overwrite)
        except OSError as e:
            raise OperationError(f"cannot write {mp4}: {e.strerror or e}") from None
    finally:
        for t in temps:
            try:
                t.unlink()
            except OSError:
                pass
    return mp4
