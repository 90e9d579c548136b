"""``lingen convert SRC OUT``: a Wan 2.1 checkpoint (diffusers layout; the transformer may be in the original
Wan2.1 layout) → a lingen checkpoint."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from lingen_cli.common import fail


def _window(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace("x", ",").split(",")
    if text.strip().lower() in ("full", "all"):
        return (0, 0, 0)
    try:
        w = tuple(int(p) for p in parts)
    except ValueError:
        w = ()
    if len(w) != 3 or min(w) < 0:
        raise ValueError(f"--window must be T,H,W latent tokens (0 = whole axis) or 'full', got {text!r}")
    return w


def convert(
    src: Path = typer.Argument(..., help="Wan 2.1 T2V in diffusers layout (transformer/, vae/, text_encoder/, tokenizer/), "
                                         "e.g. the folder `lingen download wan2.1-t2v-1.3b` printed."),
    out: Path = typer.Argument(..., help="Checkpoint directory to write (must not exist unless --overwrite)."),
    window: str = typer.Option("4,8,8", "--window", help="TESA window T,H,W in latent tokens; 0 = whole axis; 'full' = Wan's full attention."),
    mixer: str = typer.Option("mate", "--mixer", help="mate (TESA + MA-branch) or attention (TESA only)."),
    review_size: int = typer.Option(2, "--review-size", help="MA-branch review tokens per latent frame: r×r (0 = none)."),
    d_state: int = typer.Option(64, "--d-state", help="MA-branch Mamba2 state size."),
    headdim: int = typer.Option(64, "--headdim", help="MA-branch Mamba2 head dim."),
    expand: int = typer.Option(2, "--expand", help="MA-branch Mamba2 expansion."),
    no_shift: bool = typer.Option(False, "--no-shift", help="Do not shift TESA windows on odd layers."),
    seed: int = typer.Option(0, "--seed", help="Seed of the MA-branch initialisation (its out_proj starts at zero)."),
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype of the denoiser: float32 or bfloat16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    transformer: Optional[Path] = typer.Option(None, "--transformer", help="Take the transformer from this folder instead "
                                     "(config.json + safetensors, diffusers or original Wan2.1 layout, detected)."),
) -> None:
    """Initialise a LinGen from Wan 2.1: copy every Wan weight, use its self-attention as TESA and add the MA-branch at zero."""
    import torch

    from lingen_model.wan.convert import WanConvertError, convert_wan_directory

    if dtype not in ("float32", "bfloat16"):
        raise fail(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    if out.exists() and not overwrite:
        raise fail(f"{out} exists; pass --overwrite to replace it")
    try:
        opts = dict(window=_window(window), mixer=mixer, review_size=review_size, d_state=d_state, headdim=headdim,
                    expand=expand, shift_windows=not no_shift)
        path = convert_wan_directory(src, out, seed=seed, dtype=getattr(torch, dtype), transformer=transformer, **opts)
    except (WanConvertError, ValueError, ImportError) as e:
        raise fail(str(e))
    print(f"wrote {path}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``convert`` to the app."""
    app.command("convert")(convert)
