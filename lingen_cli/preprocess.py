"""``lingen preprocess VIDEO_DIR OUT``: decode captioned videos (PyAV), encode them once with the VAE
and the text encoder, and write safetensors shards + a manifest for training."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from lingen_cli.common import fail


def preprocess(
    video_dir: Path = typer.Argument(..., help="Folder of videos with X.txt captions beside X.mp4 (or --manifest)."),
    out: Path = typer.Argument(..., help="Output folder for shard-*.safetensors and manifest.json."),
    vae: str = typer.Option("lingen_model/weights/lingen-tiny", "--vae",
                            help="The VAE: a checkpoint directory or a VAE-stage run directory."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help='JSONL of {"video": path, "caption": text}.'),
    text_encoder: Optional[str] = typer.Option(
        None, "--text-encoder", help='Text-encoder spec as JSON (default: the checkpoint\'s, else {"backend": "minilm"}).'),
    frames: int = typer.Option(17, "--frames", help="Frames per window (1 + 4k)."),
    height: int = typer.Option(128, "--height"),
    width: int = typer.Option(128, "--width"),
    fps: float = typer.Option(8.0, "--fps", help="Frame rate the window is resampled to."),
    start: float = typer.Option(0.0, "--start", help="Window start (seconds)."),
    shard_size: int = typer.Option(64, "--shard-size", help="Clips per shard."),
) -> None:
    """Preprocess a video folder into latent shards; undecodable clips are skipped and counted."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise fail("lingen preprocess needs PyAV: pip install 'lingen[data]'")
    from lingen_model.training.preprocess import preprocess as run
    from lingen_model.models.text_encoder import build_text_encoder
    from lingen_model.training.trainer import load_vae

    try:
        model = load_vae(vae)
        if text_encoder is not None:
            spec = json.loads(text_encoder)
        elif (Path(vae) / "config.json").is_file():
            spec = json.loads((Path(vae) / "config.json").read_text())["text_encoder"]
        else:
            spec = {"backend": "minilm"}
        encoder = build_text_encoder(spec)
        result = run(video_dir, out, model, encoder, spec, frames=frames, height=height, width=width, fps=fps,
                     start_s=start, shard_size=shard_size, manifest=manifest,
                     log=lambda s: print(s, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as e:
        raise fail(str(e).splitlines()[0])
    print(f"{len(result['samples'])} clips written to {out}, {len(result['skipped'])} skipped", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``preprocess`` to the app."""
    app.command("preprocess")(preprocess)
