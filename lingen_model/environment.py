"""Facts about this machine and install, gathered in one place: package versions (for sidecars),
the machine (for benchmark reports) and the runtime environment (for ``lingen info``). No network."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """Versions that decide a render's bytes: lingen (``source`` in a checkout), torch, numpy, Python."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:
        lingen_version = version("lingen")
    except PackageNotFoundError:
        lingen_version = "source"
    return {"lingen": lingen_version, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``; may be empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def gpus() -> list[dict[str, Any]]:
    """Visible CUDA devices: index, name, total memory (bytes)."""
    import torch

    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": p.name, "memory_bytes": int(p.total_memory)})
    return out


def machine_facts(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The machine a measurement ran on: CPU model, logical/usable cores, RAM (bytes), torch threads,
    torch/Python/platform, the GPU's name and memory when ``device`` is CUDA, and the load average."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["ram_bytes"] = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = list(os.getloadavg())
    return info


def runtime_environment() -> dict[str, Any]:
    """What decides how lingen runs here: Python, platform, torch and its threads, the OpenMP wait
    policy and the CPU branches (models/branches.py), CUDA and GPUs (memory in GiB), mamba-ssm, the
    active scan backend, the bundled ffmpeg, and the preset ``--preset auto`` would pick."""
    import torch

    from lingen_model.models import branches, ssd

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                           "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
                           "gpus": [{"index": g["index"], "name": g["name"], "memory_gib": round(g["memory_bytes"] / 2**30, 1)}
                                    for g in gpus()]}
    try:
        import mamba_ssm  # noqa: F401

        env["mamba_ssm"] = getattr(mamba_ssm, "__version__", "installed")
    except Exception as e:  # ImportError, or missing CUDA extensions on a CPU machine
        env["mamba_ssm"] = f"not importable ({type(e).__name__})"
    env["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "OpenMP's default")
    env["cpu_branches"] = branches.describe()
    try:
        env["scan_backend"] = ssd.active_backend()
    except (ValueError, RuntimeError) as e:
        env["scan_backend"] = f"error: {e}"
    try:
        from lingen_model.io.video import ffmpeg_exe

        exe = ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20).stdout.splitlines()
        env["ffmpeg"] = {"path": exe, "version": first[0] if first else "unknown"}
    except Exception as e:  # missing binary or broken install
        env["ffmpeg"] = {"path": None, "version": f"unavailable ({type(e).__name__})"}
    from lingen_model.presets import pick_tier

    env["auto_preset"] = pick_tier("auto").name
    return env
