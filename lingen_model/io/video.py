"""mp4 writing through the ffmpeg binary shipped by imageio-ffmpeg (H.264, yuv420p)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lingen_model.io.files import atomic_path


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, crf: int = 18) -> Path:
    """Write uint8 frames ``T×H×W×3`` to an H.264 mp4 (yuv420p) at ``fps`` frames/s, atomically.

    The file appears at ``path`` only once complete (temp file + rename); an error or
    Ctrl-C leaves nothing behind. Raises ValueError for a wrong array shape/dtype or odd sizes.
    """
    import imageio_ffmpeg

    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array T×H×W×3, got {getattr(frames, 'shape', None)} {getattr(frames, 'dtype', None)}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even width and height, got {w}x{h}")
    path = Path(path)
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (w, h), fps=float(fps), codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
            quality=None, bitrate=None, macro_block_size=1, output_params=["-crf", str(crf)],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return path


def read_mp4(path: str | Path) -> tuple[np.ndarray, float]:
    """Read an mp4 back as (uint8 T×H×W×3 frames, fps)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]
    return np.stack(frames), float(meta["fps"])
