"""Preprocessing captioned videos into latent shards (``lingen preprocess``).

Decoding uses PyAV (FFmpeg's libraries, bundled in its wheels; optional extra ``data``):
:func:`decode_window` seeks to the keyframe before a window and decodes only up to the
window's last frame, picking the frames nearest to ``start + k/fps`` (resampling to the
training frame rate), instead of decoding the whole file. Each clip's window is resized
(shorter side to fit, bilinear with antialiasing) and centre-cropped, encoded once by the
VAE (posterior mean, normalised latents) and its caption once by the text encoder; both are
written to safetensors shards with a JSON manifest. A clip that does not decode is skipped
and listed in the manifest with its error; it never stops the run.

Output directory::

    manifest.json                  # settings, samples (shard, key, caption, source, latent shape), skipped
    shard-00000.safetensors        # "<i>.latents" C×T'×h×w, "<i>.context" L×D, "<i>.mask" L (uint8)

Files are written to a temporary name and renamed; the manifest comes last.
Captions: ``X.txt`` beside ``X.mp4``, or a JSONL manifest of ``{"video": path, "caption": text}``
lines (paths relative to the video folder).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


def captioned_videos(video_dir: str | Path, manifest: str | Path | None = None) -> list[tuple[Path, str]]:
    """(video path, caption) pairs: from a JSONL ``manifest`` if given, else every ``X.mp4``
    (or .mov/.mkv/.webm) with an ``X.txt`` beside it, sorted by path.

    Raises ValueError: missing folder, unreadable or malformed manifest line, no captioned video.
    """
    root = Path(video_dir)
    if not root.is_dir():
        raise ValueError(f"video folder not found: {root}")
    pairs: list[tuple[Path, str]] = []
    if manifest is not None:
        try:
            lines = Path(manifest).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"cannot read manifest {manifest}: {e.strerror}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                video, caption = rec["video"], rec["caption"]
                if not isinstance(video, str) or not isinstance(caption, str):
                    raise TypeError("video and caption must be strings")
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{manifest}:{n}: expected {{\"video\": ..., \"caption\": ...}} ({e})") from None
            pairs.append((root / video, caption.strip()))
    else:
        for video in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
            txt = video.with_suffix(".txt")
            if txt.is_file():
                pairs.append((video, txt.read_text(encoding="utf-8").strip()))
    if not pairs:
        raise ValueError(f"no captioned videos in {root}")
    return pairs


def decode_window(path: str | Path, frames: int, fps: float, start_s: float = 0.0) -> np.ndarray:
    """``frames`` frames at ``fps`` from ``start_s`` seconds: uint8 ``T×H×W×3`` (RGB).

    Seeks (PyAV ``container.seek`` to the keyframe at or before the window) and decodes only
    until the window's last frame; frame ``k`` is the decoded frame with the latest
    presentation time ≤ ``start_s + k/fps`` (nearest-previous resampling, as a player shows it).
    A clip shorter than the window is looped from the window start, like the raw-video trainer.

    Raises ValueError: the file does not open or holds no decodable video frame in the window.
    """
    import av

    need = [start_s + k / fps for k in range(frames)]
    reached = False
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base or Fraction(1, 1_000_000)
            step = 1.0 / float(stream.average_rate or fps)  # source frame interval (s)
            if start_s > 0:
                container.seek(int(start_s / tb), stream=stream, backward=True, any_frame=False)
            times: list[float] = []
            images: list[np.ndarray] = []
            for frame in container.decode(stream):
                t = float(frame.pts * tb) if frame.pts is not None else len(times) * step
                times.append(t)
                images.append(frame.to_ndarray(format="rgb24"))
                if t + 1e-6 >= need[-1]:
                    reached = True
                    break
    except (av.FFmpegError, OSError) as e:  # corrupt or unreadable files
        raise ValueError(f"cannot decode {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    # the frame shown at start_s and everything after it
    first = max([k for k, t in enumerate(times) if t <= start_s + 1e-6], default=0)
    times, images = times[first:], images[first:]
    if not images or times[-1] + step < start_s - 1e-6:
        raise ValueError(f"cannot decode {path}: no frame at {start_s:.2f} s")
    if not reached:  # short clip: loop the frames from the window start
        span = times[-1] + step - times[0]
        need = [times[0] + (t - need[0]) % span for t in need]
    at = np.array(times)
    return np.stack([images[max(0, int(np.searchsorted(at, t + 1e-6, side="right")) - 1)] for t in need])


def fit_frames(video: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 ``T×h×w×3`` → float ``3×T×height×width`` in [-1, 1]: resize so the clip covers the
    target (bilinear, antialiased), then centre-crop (as ``lingen_model.training.data`` does for raw video)."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    x = F.interpolate(x, size=(max(height, round(h * scale)), max(width, round(w * scale))),
                      mode="bilinear", align_corners=False, antialias=True)
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width].clamp(-1, 1)


def _save_atomic(write: Callable[[str], None], file: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@torch.no_grad()
def preprocess(video_dir: str | Path, out: str | Path, vae, text_encoder, text_encoder_spec: dict, *,
               frames: int = 17, height: int = 128, width: int = 128, fps: float = 8.0, start_s: float = 0.0,
               shard_size: int = 64, manifest: str | Path | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Decode, encode and shard every captioned video of ``video_dir`` into ``out``.

    Args:
        vae: a ``CausalVideoVAE`` (its ``encode``: normalised posterior-mean latents).
        text_encoder: a ``TextEncoder`` (``encode(captions) -> (tokens, mask)``); its spec is
            recorded in the manifest as ``text_encoder_spec``.
        frames: frames per window (1 + 4k); height, width: pixels (multiples of 8); fps: frames/s.
        start_s: where each window starts (seconds).
        shard_size: samples per safetensors shard.
    Returns:
        The manifest dict (also written to ``out/manifest.json``).
    Raises:
        ValueError: bad settings or no captioned video (a clip that fails to decode is skipped).
    """
    from safetensors.torch import save_file

    if frames < 1 or (frames - 1) % 4:
        raise ValueError(f"frames must be 1 + 4k, got {frames}")
    if height % 8 or width % 8 or height < 8 or width < 8:
        raise ValueError(f"height and width must be positive multiples of 8, got {height}x{width}")
    if not (fps > 0 and math.isfinite(fps)) or shard_size < 1 or start_s < 0:
        raise ValueError("fps and shard_size must be positive and start_s non-negative")
    log = log or (lambda s: None)
    pairs = captioned_videos(video_dir, manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(video_dir)
    samples, skipped, pending = [], [], {}

    def flush() -> None:
        if not pending:
            return
        name = f"shard-{len({s['shard'] for s in samples}) - 1:05d}.safetensors"
        data = dict(pending)
        _save_atomic(lambda tmp: save_file(data, tmp), out / name)
        pending.clear()

    for path, caption in pairs:
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        try:
            video = fit_frames(decode_window(path, frames, fps, start_s), height, width)
        except ValueError as e:
            skipped.append({"source": rel, "error": str(e).splitlines()[0]})
            log(f"skipped {rel}: {skipped[-1]['error']}")
            continue
        latents = vae.encode(video[None])[0].float().cpu()
        ctx, mask = text_encoder.encode([caption])
        shard = f"shard-{len(samples) // shard_size:05d}.safetensors"
        key = str(len(samples) % shard_size)
        pending.update({f"{key}.latents": latents.contiguous(), f"{key}.context": ctx[0].float().cpu().contiguous(),
                        f"{key}.mask": mask[0].to(torch.uint8).cpu().contiguous()})
        samples.append({"shard": shard, "key": key, "caption": caption, "source": rel, "start_s": start_s,
                        "latent_shape": list(latents.shape)})
        if len(samples) % shard_size == 0:
            flush()
    flush()
    result = {"version": 1, "frames": frames, "height": height, "width": width, "fps": fps,
              "latent_channels": int(vae.latent_channels), "text_encoder": text_encoder_spec,
              "samples": samples, "skipped": skipped}
    _save_atomic(lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)), out / "manifest.json")
    log(f"{len(samples)} clips in {len({s['shard'] for s in samples})} shard(s), {len(skipped)} skipped")
    return result
