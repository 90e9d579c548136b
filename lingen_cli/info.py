"""``lingen info``: environment (Python, torch, device, CUDA/GPU, mamba-ssm and the active
Mamba2 scan backend, ffmpeg), installed models with their size on disk, and presets."""
from __future__ import annotations

import json
from typing import Optional

import typer

from lingen_model.environment import runtime_environment
from lingen_cli.common import CLIError, console, fail


def info(
    name: Optional[str] = typer.Argument(None, help="Show one model's details (registry name or path)."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as one JSON object."),
) -> None:
    """Show the environment, installed models and presets."""
    from rich.table import Table

    from lingen_model.hub import installed_models, resolve_model
    from lingen_model.io.files import format_bytes
    from lingen_model.presets import load_tiers

    try:
        if name is not None:
            from lingen_model.generation.checkpoint import read_config

            path = resolve_model(name, allow_download=False)
            cfg = read_config(path)
            data = {"name": name, "path": str(path), "config": cfg}
            console.print_json(json.dumps(data)) if not json_out else print(json.dumps(data))
            return
        env = runtime_environment()
        models = installed_models()
        tiers = {k: vars(v) for k, v in load_tiers().items()}
    except (CLIError, ValueError) as e:
        raise fail(str(e))
    if json_out:
        print(json.dumps({"environment": env, "models": models, "presets": tiers}, default=str))
        return
    t = Table(title="environment", show_header=False)
    for k in ("python", "torch", "cpu_threads", "omp_wait_policy", "cpu_branches", "cuda_available", "cuda", "mamba_ssm", "scan_backend", "auto_preset"):
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
