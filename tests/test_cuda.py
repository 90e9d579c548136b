"""The GPU path on a real CUDA device (marker ``cuda``; every test skips without one).

Run with ``pytest -m cuda`` (``scripts/gpu_check.sh`` does, and collects the numbers
recorded through ``LINGEN_TEST_RECORD``). Errors are ``max|a − ref| / max|ref|`` ("rel")
or, for whole models, ``‖a − ref‖ / ‖ref‖`` ("rel L2"). Tolerances, fixed before any
run on hardware and stated per test:

* float32 scans: mamba-ssm's Triton kernels multiply float32 tiles with ``tl.dot``, which
  uses TF32 (10-bit mantissa, ~5e-4 per product) on Ampere and later, so the triton
  backend gets 5e-3 against a float64 recurrence; the torch backend (TF32 off) 1e-4.
* bfloat16 scans: inputs and output are bfloat16 (8-bit mantissa, 3.9e-3 per rounding)
  and the kernels' dots read bfloat16 tiles: 3e-2 (output), 5e-2 (gradients).
* whole denoiser in bfloat16: each backend is compared with the float32 model; the triton
  run may be at most twice as far from it as the torch run (plus 1e-2), i.e. the fused
  kernels must not cost more precision than bfloat16 itself does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lingen_model.models import ssd
from lingen_model.models.denoiser import build_denoiser
from support.record import record

HAS_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]
needs_triton = pytest.mark.skipif(HAS_CUDA and not ssd.triton_available(),
                                  reason="needs mamba-ssm's Triton kernels (pip install 'lingen[cuda]')")

SCAN_TOL = {"float32": {"y": 5e-3, "grad": 5e-3}, "bfloat16": {"y": 3e-2, "grad": 5e-2}}


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    return ((a - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def rel_l2(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    return ((a - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@pytest.fixture
def strict_fp32():
    """TF32 off for torch's own matmuls and convolutions for the duration of a test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@needs_triton
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_scan_triton_vs_torch_fwd_bwd(dtype, strict_fp32):
    """L=300 (chunk 64: not a multiple), 8 heads in 2 groups, P=N=64, D, dt = softplus(dt_raw + dt_bias)."""
    seed = 1611
    b, l, h, p, g, n, q = 2, 300, 8, 64, 2, 64, 64
    gen = torch.Generator().manual_seed(seed)
    dt_ = getattr(torch, dtype)
    leaves = {  # model-dtype tensors as BiMamba2 hands them over; A stays float32 as there
        "x": torch.randn(b, l, h, p, generator=gen).to(dt_),
        "dt_raw": torch.randn(b, l, h, generator=gen).to(dt_),
        "dt_bias": (torch.randn(h, generator=gen) - 2.0).to(dt_),
        "A_log": torch.rand(h, generator=gen) * 2.0,
        "B": torch.randn(b, l, g, n, generator=gen).to(dt_),
        "C": torch.randn(b, l, g, n, generator=gen).to(dt_),
        "D": torch.randn(h, generator=gen).to(dt_),
    }
    gy = torch.randn(b, l, h, p, generator=gen).to(dt_)

    def run(backend, device, cast):
        t = {k: cast(v).to(device).detach().clone().requires_grad_() for k, v in leaves.items()}
        dt = F.softplus(t["dt_raw"] + t["dt_bias"])
        A = -torch.exp(t["A_log"])
        if backend == "reference":
            y = ssd.ssd_reference(t["x"], dt, A, t["B"], t["C"], t["D"])
        else:
            y = ssd.ssd_scan(t["x"], dt, A, t["B"], t["C"], chunk_size=q, D=t["D"], backend=backend)
        y.backward(cast(gy).to(device))
        return y, {k: v.grad for k, v in t.items()}

    y_ref, g_ref = run("reference", "cpu", lambda v: v.double())  # float64 recurrence of the same rounded inputs
    errs = {}
    for backend in ("triton", "torch"):
        y, grads = run(backend, "cuda", lambda v: v)
        assert y.dtype == dt_
        errs[backend] = {"y": rel(y, y_ref), **{f"d{k}": rel(grads[k], g_ref[k]) for k in leaves}}
    record(f"scan_{dtype}", seed=seed, errors=errs, tol=SCAN_TOL[dtype])
    tol = SCAN_TOL[dtype]
    for backend, e in errs.items():
        for k, v in e.items():
            bound = tol["y" if k == "y" else "grad"] if backend == "triton" or dtype == "bfloat16" else 1e-4
            assert v <= bound, f"{backend} {dtype} {k}: {v:.3g} > {bound:g} (all: {errs})"


def _randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random non-zero weights: zero-initialised gates/output would hide the mixer
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p.shape[-1]) ** 0.5) + (p == 1).float())
    return model


@needs_triton
def test_small_denoiser_bf16_fwd_bwd_both_backends(monkeypatch, strict_fp32):
    """``small`` (768 wide, 16 blocks) in bfloat16, forward + backward, triton vs torch vs the float32 model."""
    seed = 1612
    torch.manual_seed(seed)
    m32 = _randomize(build_denoiser("small"), seed).cuda()
    cfg = m32.config
    gen = torch.Generator().manual_seed(seed + 1)
    lat = torch.randn(2, cfg.in_channels, 3, 16, 16, generator=gen)
    t = torch.rand(2, generator=gen)
    ctx = torch.randn(2, 7, cfg.text_dim, generator=gen)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    gv = torch.randn(lat.shape, generator=gen)

    def run(model, backend, dtype):
        monkeypatch.setenv("LINGEN_SCAN_BACKEND", backend)
        model.zero_grad(set_to_none=True)
        v = model(lat.cuda().to(dtype), t.cuda(), ctx.cuda().to(dtype), mask.cuda())
        v.float().backward(gv.cuda())
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
        return v.float().detach(), grads

    v_ref, g_ref = run(m32, "torch", torch.float32)
    m16 = _randomize(build_denoiser("small"), seed).cuda().to(torch.bfloat16)
    errs = {}
    for backend in ("triton", "torch"):
        v, g = run(m16, backend, torch.bfloat16)
        assert torch.isfinite(v).all() and torch.isfinite(g).all()
        errs[backend] = {"velocity": rel_l2(v, v_ref), "grads": rel_l2(g, g_ref)}
    record("small_denoiser_bf16", seed=seed, errors=errs)
    for k in ("velocity", "grads"):
        assert errs["triton"][k] <= 2 * errs["torch"][k] + 1e-2, errs


def _pipeline_frames(device, steps=8):
    from lingen_model.generation.pipeline import LinGenPipeline

    pipe = LinGenPipeline.from_pretrained(None, device=device, dtype=torch.float32, allow_download=False)
    return pipe("a red circle moving right", num_frames=9, steps=steps, seed=3).astype(np.int16)


@pytest.mark.parametrize("mode", ["strict", "default"])
def test_pipeline_cuda_matches_cpu_float32(mode, monkeypatch, strict_fp32):
    """Same prompt, seed and steps on CPU and CUDA in float32 give the same uint8 frames.

    strict (torch scan backend, TF32 off everywhere): only float32 summation order differs:
    every pixel within 2 levels (of 255), mean |Δ| ≤ 0.1. default (what a CUDA user runs:
    triton scan backend, cuDNN TF32 on for the VAE's convolutions): mean |Δ| ≤ 1 level,
    99.9 % of values within 8 levels.
    """
    if mode == "strict":
        monkeypatch.setenv("LINGEN_SCAN_BACKEND", "torch")
    else:  # torch's defaults (the fixture restores whatever was set before)
        monkeypatch.setenv("LINGEN_SCAN_BACKEND", "auto")
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    cpu = _pipeline_frames("cpu")
    gpu = _pipeline_frames("cuda")
    assert cpu.shape == gpu.shape and cpu.shape[0] == 9
    d = np.abs(cpu - gpu)
    stats = {"max": int(d.max()), "mean": float(d.mean()), "p999": float(np.percentile(d, 99.9)),
             "scan_backend": ssd.select_backend("cuda")}
    record(f"pipeline_cuda_vs_cpu_{mode}", **stats)
    assert cpu.std() > 1.0  # a real clip, not a constant image
    if mode == "strict":
        assert stats["max"] <= 2 and stats["mean"] <= 0.1, stats
    else:
        assert stats["mean"] <= 1.0 and stats["p999"] <= 8, stats


def test_generate_preset_auto_on_gpu(tmp_path):
    """``lingen generate --preset auto`` on a GPU picks a CUDA tier and writes the clip."""
    env = {k: v for k, v in os.environ.items() if k != "LINGEN_SCAN_BACKEND"}
    r = subprocess.run([sys.executable, "-m", "lingen_cli", "generate", "a yellow ball drifting left", "--preset", "auto",
                        "--length", "2s", "--seed", "5", "--out", str(tmp_path), "--json", "--quiet", "--no-download"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    record("generate_preset_auto", **{k: rec.get(k) for k in ("preset", "device", "dtype", "num_frames", "timings_s")})
    assert rec["device"].startswith("cuda") and rec["preset"] != "cpu"
    from lingen_model.io.video import read_mp4

    frames, _ = read_mp4(Path(rec["path"]))
    assert frames.shape[0] == rec["num_frames"] and frames.std() > 1.0


@pytest.mark.parametrize("mixer", ["mate", "attention"])
def test_benchmark_cuda_worker(mixer):
    """The benchmark's worker process on CUDA: timings, CUDA peak memory, the scan backend used."""
    from lingen_cli import benchmark as bm

    spec = {"model": "tiny", "mixer": mixer, "latent": [3, 16, 16], "batch": 1, "text_len": 8, "device": "cuda",
            "dtype": "bfloat16", "threads": None, "warmup": 1, "repeats": 2, "overrides": {}}
    res = bm.run_worker(spec, timeout=300)
    record(f"benchmark_worker_{mixer}", **{k: res.get(k) for k in ("status", "median_s", "peak_memory_bytes",
                                                                     "scan_backend", "message")})
    assert res["status"] == "ok", res
    assert len(res["times_s"]) == 2 and res["median_s"] > 0
    assert res["peak_memory_bytes"] > 0 and res["memory_method"].startswith("torch.cuda")
    expected = ("triton" if ssd.triton_available() else "torch") if mixer == "mate" else None
    assert res["scan_backend"] == expected
