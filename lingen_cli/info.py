"""``lingen info``: environment (Python, torch, device, CUDA/GPU, mamba-ssm and the active
Mamba2 scan backend, ffmpeg), installed models with their size on disk, and presets."""
from __future__ import annotations

import json
import platform
import subprocess
from typing import Any, Optional

import typer

from lingen_cli.common import CLIError, console, fail


def environment() -> dict[str, Any]:
    """Facts about this machine that decide how lingen runs (no network)."""
    import torch

    from lingen_model import ssd

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                           "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda, "gpus": []}
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        env["gpus"].append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
    try:
        import mamba_ssm  # noqa: F401

        env["mamba_ssm"] = getattr(mamba_ssm, "__version__", "installed")
    except Exception as e:  # ImportError, or missing CUDA extensions on a CPU machine
        env["mamba_ssm"] = f"not importable ({type(e).__name__})"
    try:
        env["scan_backend"] = ssd.active_backend()
    except (ValueError, RuntimeError) as e:
        env["scan_backend"] = f"error: {e}"
    try:
        from lingen_cli.video import ffmpeg_exe

        exe = ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20).stdout.splitlines()
        env["ffmpeg"] = {"path": exe, "version": first[0] if first else "unknown"}
    except Exception as e:  # missing binary or broken install
        env["ffmpeg"] = {"path": None, "version": f"unavailable ({type(e).__name__})"}
    from lingen_cli.presets import pick_tier

    env["auto_preset"] = pick_tier("auto").name
    return env


def info(
    name: Optional[str] = typer.Argument(None, help="Show one model's details (registry name or path)."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as one JSON object."),
) -> None:
    """Show the environment, installed models and presets."""
    from rich.table import Table

    from lingen_cli.presets import load_tiers
    from lingen_cli.zoo import format_bytes, installed_models, resolve_model

    try:
        if name is not None:
            from lingen_model.checkpoint import read_config

            path = resolve_model(name, allow_download=False)
            cfg = read_config(path)
            data = {"name": name, "path": str(path), "config": cfg}
            console.print_json(json.dumps(data)) if not json_out else print(json.dumps(data))
            return
        env = environment()
        models = installed_models()
        tiers = {k: vars(v) for k, v in load_tiers().items()}
    except (CLIError, ValueError) as e:
        raise fail(str(e))
    if json_out:
        print(json.dumps({"environment": env, "models": models, "presets": tiers}, default=str))
        return
    t = Table(title="environment", show_header=False)
    for k in ("python", "torch", "cpu_threads", "cuda_available", "cuda", "mamba_ssm", "scan_backend", "auto_preset"):
        t.add_row(k, str(env[k]))
    for g in env["gpus"]:
        t.add_row(f"gpu {g['index']}", f"{g['name']} ({g['memory_gib']} GiB)")
    t.add_row("ffmpeg", f"{env['ffmpeg']['version']} ({env['ffmpeg']['path']})")
    console.print(t)
    m = Table(title="installed models")
    for col in ("name", "kind", "revision", "size", "complete", "path"):
        m.add_column(col)
    for r in models:
        m.add_row(str(r["name"] or r["repo"]), str(r["kind"]), str(r["revision"] or "-")[:12], format_bytes(r["size_bytes"]),
                  "yes" if r["complete"] else "[red]no[/red]", r["path"])
    console.print(m if models else "installed models: none")
    p = Table(title="presets (presets/tiers.yaml)")
    for col in ("name", "device", "min GiB", "dtype", "offload text", "VAE chunk", "max params (M)", "max length (s)"):
        p.add_column(col)
    for k, v in tiers.items():
        p.add_row(k, v["device"], f"{v['min_memory_gb']:g}", v["dtype"], str(v["text_encoder_offload"]),
                  str(v["vae_chunk_frames"]), f"{v['max_params_m']:g}", f"{v['max_length_s']:g}")
    console.print(p)


def register(app: typer.Typer) -> None:
    """Add ``info`` to the app."""
    app.command("info")(info)
