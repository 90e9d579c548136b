"""mp4 writing through the ffmpeg binary shipped by imageio-ffmpeg (H.264, yuv420p)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lingen_model.io.files import atomic_path


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_mp4(frames: np.ndarray, path: str | Path, fps: float, crf: int = 18) -> Path:
    """Encode uint8 frames ``T×H×W×3`` into an H.264 mp4 (yuv420p) at ``path`` (written in place, not
    atomically; :func:`write_mp4` and :func:`lingen_model.io.outputs.write_clip` wrap it).

    Runs the ffmpeg binary (``ffmpeg_exe``) with raw RGB frames on stdin and checks its exit
    status: ffmpeg can fail half-way (disk full, a killed encoder) and leave an unplayable file
    ("moov atom not found"), so a non-zero status, a broken pipe or an empty output is an error.

    Raises:
        ValueError: a wrong array shape/dtype, odd sizes or a non-positive/non-finite fps.
        OperationError: ffmpeg cannot start, exits non-zero or writes nothing (message: its last
            stderr line).
    """
    import math
    import subprocess
    import tempfile

    from lingen_model.errors import OperationError

    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array T×H×W×3, got {getattr(frames, 'shape', None)} {getattr(frames, 'dtype', None)}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even width and height, got {w}x{h}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    path = Path(path)
    cmd = [ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}", "-pix_fmt", "rgb24",
           "-r", f"{float(fps):.6g}", "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p",
           "-crf", str(crf), "-v", "error", "-f", "mp4", str(path)]
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        except OSError as e:
            raise OperationError(f"cannot run ffmpeg ({cmd[0]}): {e.strerror or e}") from None
        broken = False
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError):
            broken = True
        except BaseException:  # Ctrl-C: do not wait for the encoder
            proc.kill()
            proc.wait()
            raise
        finally:
            try:
                proc.stdin.close()
            except OSError:
                broken = True
        rc = proc.wait()
        log.seek(0)
        lines = [ln.strip() for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    if rc != 0 or broken:
        why = lines[-1] if lines else (f"exit status {rc}" if rc else "it stopped reading frames")
        raise OperationError(f"ffmpeg failed writing {path.name}: {why}")
    if not path.is_file() or path.stat().st_size == 0:
        raise OperationError(f"ffmpeg wrote nothing to {path.name}")
    return path


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, crf: int = 18) -> Path:
    """Write uint8 frames ``T×H×W×3`` to an H.264 mp4 (yuv420p) at ``fps`` frames/s, atomically.

    The file appears at ``path`` only once ffmpeg reported success (temp file + rename); an error or
    Ctrl-C leaves nothing behind. An existing file at ``path`` is replaced; for outputs that must
    never overwrite, and an mp4 with its sidecar, use :func:`lingen_model.io.outputs.write_clip`.

    Raises:
        ValueError: a wrong array shape/dtype or odd sizes.
        OperationError: ffmpeg failed (see :func:`encode_mp4`).
        OSError: the folder cannot be written.
    """
    path = Path(path)
    with atomic_path(path, suffix=".mp4") as tmp:
        encode_mp4(frames, tmp, fps, crf)
    return path


def read_mp4(path: str | Path) -> tuple[np.ndarray, float]:
    """Read an mp4 back as (uint8 T×H×W×3 frames, fps)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]
    return np.stack(frames), float(meta["fps"])
