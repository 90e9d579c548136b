"""The triton scan backend (mamba-ssm's fused SSD kernels) vs the torch backend, on CPU.

Every CUDA user runs the ``triton`` backend, and CI has no GPU. Triton's interpreter
(``TRITON_INTERPRET=1``) runs the same kernels on CPU tensors, so this test drives our
``ssd_scan(backend="triton")``, ``BiMamba2`` (both directions) and a tiny ``Denoiser``
through them and compares forward outputs and gradients with ``backend="torch"`` in
float32 (the interpreter's ``tl.dot`` has no bf16; the CUDA tests cover bf16).

The kernels run in subprocesses (the variable must be set before triton is imported;
shims in ``support/triton_interp.py``); triton, einops and mamba-ssm come from the
environment or are installed once into a cache folder (``support.triton_interp``). The
test skips, saying why, where they cannot be had. Seeds are fixed in the worker; the
measured errors are written to ``.pytest_cache/d/triton-interp/errors.json`` (a temporary
folder without the cache plugin) and printed in the terminal summary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lingen_model
from lingen_model.models import ssd
from support import triton_interp

WORKER = Path(__file__).resolve().parent / "support" / "triton_interp_worker.py"
#: float32 bound on max|triton − torch| / max|torch|: ~100 float32 ulps of accumulated rounding
#: (measured: ≤ 6e-7); a wrong argument, layout, group map or direction gives O(1).
REL_TOL = 1e-5
#: the worker's cases, split over two subprocesses run side by side (CI has 2 cores)
GROUPS = (("bimamba",), ("scan", "denoiser"))
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def interp_results(request, tmp_path_factory):
    extra, note = triton_interp.ensure_interp_packages()
    if extra is None:
        triton_interp.LAST_RESULTS.update(skipped=note)
        pytest.skip(f"Triton interpreter parity skipped: {note}")
    repo = Path(lingen_model.__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "LINGEN_SCAN_BACKEND"}
    env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(repo), extra, os.environ.get("PYTHONPATH", "")) if p))
    out_dir = tmp_path_factory.mktemp("triton-interp")
    procs = []
    for i, cases in enumerate(GROUPS):
        out = out_dir / f"group{i}.json"
        log = open(out_dir / f"group{i}.log", "w+")
        procs.append((subprocess.Popen([sys.executable, str(WORKER), str(out), *cases], env=env, cwd=repo,
                                       stdout=log, stderr=subprocess.STDOUT), out, log))
    results = {}
    for proc, out, log in procs:
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout"
        log.seek(0)
        text = log.read()
        log.close()
        if rc != 0:
            for p, _, _ in procs:
                p.kill()
            pytest.fail(f"interpreter worker failed ({rc}):\n{text[-4000:]}", pytrace=False)
        results.update(json.loads(out.read_text())["cases"])
    record = {"note": note, "rel_tol": REL_TOL, "cases": results}
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    path = (Path(cache.mkdir("triton-interp")) if cache else out_dir) / "errors.json"
    path.write_text(json.dumps(record, indent=1))
    triton_interp.LAST_RESULTS.update(record, path=str(path))
    return results


def _assert_close(name: str, e: dict) -> None:
    assert e["rel"] <= REL_TOL, f"{name}: max|triton − torch| = {e['abs']:.3g} ({e['rel']:.3g} of max|torch|)"


def test_scan_forward_and_grads(interp_results):
    """L=27, chunk 16 (L not a multiple), 4 heads in 2 groups, D, dt = softplus(dt_raw + dt_bias)."""
    r = interp_results["scan"]
    assert r["triton_kernel_calls"] == 1
    _assert_close("y", r["y"])
    assert set(r["grads"]) == {"x", "dt_raw", "dt_bias", "A_log", "B", "C", "D"}
    for k, e in r["grads"].items():
        _assert_close(f"d{k}", e)
    # both backends agree with the float64 recurrence too (a shared mistake would not hide)
    _assert_close("y vs float64", r["y_triton_vs_float64"])


def test_bimamba_both_directions(interp_results):
    """BiMamba2 with review tokens: output, input and every parameter gradient, per direction."""
    r = interp_results["bimamba"]
    assert r["triton_kernel_calls"] == 2  # one scan per direction
    _assert_close("y", r["y"])
    for k, e in r["grads"].items():
        _assert_close(f"d{k}", e)
    for d in ("0", "1"):
        for k, e in r["per_direction"][d].items():
            _assert_close(f"direction {d} d{k}", e)


def test_denoiser_forward(interp_results):
    """A randomised tiny Denoiser (depth 2): velocity with the triton backend vs torch."""
    r = interp_results["denoiser"]
    assert r["triton_kernel_calls"] == 2 * r["config"]["depth"]  # every block, both directions
    _assert_close("velocity", r["velocity"])


def test_triton_backend_on_cpu_needs_the_interpreter(monkeypatch):
    """Outside the interpreter the triton backend refuses CPU tensors and auto never picks it."""
    x, dt, A, B, C = torch.zeros(1, 4, 2, 4), torch.ones(1, 4, 2), -torch.ones(2), torch.zeros(1, 4, 1, 4), torch.zeros(1, 4, 1, 4)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(ssd, "_triton_kernel", lambda: (lambda *a, **k: x))
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        ssd.ssd_scan(x, dt, A, B, C, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("LINGEN_SCAN_BACKEND", "auto")
    assert ssd.select_backend("cpu") == "torch"
    monkeypatch.setenv("LINGEN_SCAN_BACKEND", "triton")
    assert ssd.select_backend("cpu") == "triton"
    assert ssd.ssd_scan(x, dt, A, B, C, backend="triton") is x
    monkeypatch.setattr(ssd, "_triton_kernel", lambda: None)  # interpreter on, mamba-ssm missing
    with pytest.raises(RuntimeError, match="mamba-ssm"):
        ssd.select_backend("cpu")
