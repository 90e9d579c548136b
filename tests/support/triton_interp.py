"""Run mamba-ssm's Triton SSD kernels on CPU under Triton's interpreter (test support only).

Triton's interpreter (``TRITON_INTERPRET=1``, Triton's own debugging mode) executes
``@triton.jit`` kernels in Python/NumPy on CPU tensors. mamba-ssm's kernel wrappers assume
a GPU in a few places; :func:`install_shims` bridges them **inside a dedicated
subprocess** (the variable must be set before triton and mamba_ssm are imported):

* ``mamba_ssm/__init__`` imports the CUDA extension ``selective_scan_cuda``: a bare
  ``mamba_ssm`` package object is registered so that only the Triton submodules load;
* the wrappers enter ``torch.cuda.device(t.device.index)``: a no-op context manager;
* the backward asks ``torch.cuda.get_device_properties(d).multi_processor_count``:
  answered with :data:`INTERP_SM_COUNT` (an H100 SXM's count, so the tiny test shapes take
  the same work split as on a real GPU);
* ``@triton.autotune`` benchmarks its configs through a GPU driver: only the first
  config is kept (one config means no benchmarking);
* bf16 is not supported by the interpreter's ``tl.dot``: tests use float32 only.

:func:`ensure_interp_packages` finds triton, einops and mamba-ssm in the running
environment or installs the missing ones once into a cache folder (pinned versions, the
ones measured to work with torch 2.13 on CPU), returning the folder to put on the
subprocess's ``PYTHONPATH``. mamba-ssm ships as a source distribution whose build compiles
CUDA code; ``MAMBA_SKIP_CUDA_BUILD=TRUE`` installs only its Python/Triton code.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import types
from pathlib import Path

#: pip requirement per importable module, for what the running environment lacks.
PINNED = {"triton": "triton==3.7.1", "einops": "einops==0.8.2", "mamba_ssm": "mamba-ssm==2.3.2.post1"}
#: streaming multiprocessor count reported to mamba-ssm's backward (NVIDIA H100 SXM: 132).
INTERP_SM_COUNT = 132
#: environment variables of the installer: cache folder; "1" forbids installing (skip instead).
CACHE_ENV, NO_INSTALL_ENV = "LINGEN_TEST_CACHE", "LINGEN_TEST_NO_INSTALL"
#: what the parity test measured this session (or why it skipped), for the terminal summary
LAST_RESULTS: dict = {}


def cache_root() -> Path:
    """``$LINGEN_TEST_CACHE``, else ``$XDG_CACHE_HOME/lingen-tests``, else ``~/.cache/lingen-tests``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lingen-tests"


def _missing_modules() -> list[str]:
    return [m for m in PINNED if importlib.util.find_spec(m) is None]


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "is ignored" not in ln]
    return lines[-1].strip() if lines else "no output"


def ensure_interp_packages(timeout_s: float = 600.0) -> tuple[str | None, str]:
    """Make triton, einops and mamba-ssm importable for the interpreter subprocess.

    Returns ``(extra_path, note)``: ``extra_path`` is a folder to prepend to ``PYTHONPATH``
    ("" when the environment already has all three), or None when they cannot be had, with
    ``note`` saying why (for the skip reason). Installs into
    ``cache_root()/<python tag>-<requirements>`` through a temporary folder renamed into
    place, so concurrent runs never see a half-installed cache. Never raises.
    """
    missing = _missing_modules()
    if not missing:
        return "", "triton, einops and mamba-ssm found in the environment"
    reqs = [PINNED[m] for m in missing]
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    target = cache_root() / (tag + "-" + "-".join(r.replace("==", "") for r in reqs))
    if (target / ".complete").exists():
        return str(target), f"{', '.join(reqs)} from the test cache {target}"
    if os.environ.get(NO_INSTALL_ENV) == "1":
        return None, f"{', '.join(missing)} not installed and {NO_INSTALL_ENV}=1"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    except OSError as e:
        return None, f"cannot create the test cache folder {target.parent}: {e}"
    try:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(tmp)]
        plain = [r for r in reqs if not r.startswith("mamba-ssm")]
        if "mamba_ssm" in missing:  # its setup.py imports torch, so it builds without isolation, with:
            plain += [m for m in ("setuptools", "wheel", "packaging") if importlib.util.find_spec(m) is None]
        steps = []
        if plain:
            steps.append((pip + plain, os.environ.copy()))
        if "mamba_ssm" in missing:
            env = dict(os.environ, MAMBA_FORCE_BUILD="TRUE", MAMBA_SKIP_CUDA_BUILD="TRUE",
                       CAUSAL_CONV1D_SKIP_CUDA_BUILD="TRUE",
                       PYTHONPATH=os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH", "")) if p))
            steps.append((pip + ["--no-deps", "--no-build-isolation", PINNED["mamba_ssm"]], env))
        for cmd, env in steps:
            try:
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return None, f"installing {cmd[-1]} took over {timeout_s:.0f} s"
            if r.returncode != 0:
                return None, f"pip could not install {cmd[-1]}: {_tail(r.stderr or r.stdout)}"
        (tmp / ".complete").write_text(" ".join(reqs) + "\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another run finished first: use its copy
            if not (target / ".complete").exists():
                return None, f"cannot move the installed packages into {target}"
        return str(target), f"installed {', '.join(reqs)} into the test cache {target}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _NoDevice(contextlib.nullcontext):
    """Stand-in for ``torch.cuda.device(index)``: nothing to switch on CPU."""

    def __init__(self, device=None):
        super().__init__()


def install_shims() -> None:
    """Patch triton, torch.cuda and the ``mamba_ssm`` package object for the interpreter.

    Call in the interpreter subprocess before anything imports mamba_ssm's Triton code
    (``lingen_model.models.ssd`` imports it lazily, on the first triton scan).
    Raises:
        RuntimeError: ``TRITON_INTERPRET`` is not ``1`` (the shims would hide real GPU paths).
        ImportError: triton or mamba_ssm cannot be found.
    """
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("install_shims() is for the Triton interpreter only (set TRITON_INTERPRET=1)")
    import torch
    import triton

    original_autotune = triton.autotune

    def first_config_only(configs, key, **kwargs):
        return original_autotune(configs=list(configs)[:1], key=key, **kwargs)

    triton.autotune = first_config_only

    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mamba_ssm is not installed")
    pkg = types.ModuleType("mamba_ssm", "mamba_ssm without its CUDA-extension imports (Triton interpreter)")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__file__ = spec.origin
    sys.modules["mamba_ssm"] = pkg

    torch.cuda.device = _NoDevice
    torch.cuda.get_device_properties = lambda device=None: types.SimpleNamespace(
        multi_processor_count=INTERP_SM_COUNT, name="triton-interpreter")
