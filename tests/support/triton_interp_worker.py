"""Subprocess body of the Triton-interpreter parity test (see ``triton_interp``).

``TRITON_INTERPRET=1 python triton_interp_worker.py OUT.json [CASE ...]`` runs each case
with ``backend="triton"`` (mamba-ssm's kernels, interpreted on CPU) and with
``backend="torch"`` on the same float32 inputs and parameters, and writes per case the
largest errors measured and how many times the Triton kernel ran. Errors are
``max|triton − torch|`` (``abs``) and that divided by ``max|torch|`` (``rel``), for the
output and for every gradient. The parent test asserts on them; this file asserts nothing.
Seeds are fixed and written to the JSON.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ → ``support`` importable
from support.triton_interp import install_shims  # noqa: E402

install_shims()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mamba_ssm.ops.triton import ssd_combined  # noqa: E402

CALLS = {"n": 0}
_kernel = ssd_combined.mamba_chunk_scan_combined


def _counted(*args, **kwargs):
    CALLS["n"] += 1
    return _kernel(*args, **kwargs)


ssd_combined.mamba_chunk_scan_combined = _counted  # lingen_model.models.ssd imports it lazily, after this

from lingen_model.models import ssd  # noqa: E402
from lingen_model.models.denoiser import build_denoiser  # noqa: E402
from lingen_model.models.mamba2 import BiMamba2  # noqa: E402

torch.set_num_threads(1)


def err(a: torch.Tensor, ref: torch.Tensor) -> dict:
    """``abs`` = max|a − ref|, ``rel`` = abs / max|ref| (both float), ``shape``."""
    a, ref = a.detach().double(), ref.detach().double()
    d = (a - ref).abs().max().item()
    return {"abs": d, "rel": d / max(ref.abs().max().item(), 1e-30), "shape": list(ref.shape)}


def with_backend(name: str):
    """Force the scan backend through the product's switch (``LINGEN_SCAN_BACKEND``)."""
    os.environ["LINGEN_SCAN_BACKEND"] = name


def case_scan(seed: int = 1601) -> dict:
    """ssd_scan: L=27 with chunk 16 (L not a multiple), 4 heads in 2 groups, D, dt = softplus(dt_raw + dt_bias)."""
    b, l, h, p, g, n, q = 2, 27, 4, 8, 2, 16, 16
    gen = torch.Generator().manual_seed(seed)
    leaves = {
        "x": torch.randn(b, l, h, p, generator=gen),
        "dt_raw": torch.randn(b, l, h, generator=gen),
        "dt_bias": torch.randn(h, generator=gen) - 2.0,
        "A_log": torch.rand(h, generator=gen) * 2.0,
        "B": torch.randn(b, l, g, n, generator=gen),
        "C": torch.randn(b, l, g, n, generator=gen),
        "D": torch.randn(h, generator=gen),
    }
    gy = torch.randn(b, l, h, p, generator=gen)
    runs = {}
    for backend in ("triton", "torch"):
        t = {k: v.clone().requires_grad_() for k, v in leaves.items()}
        dt = F.softplus(t["dt_raw"] + t["dt_bias"])
        y = ssd.ssd_scan(t["x"], dt, -torch.exp(t["A_log"]), t["B"], t["C"], chunk_size=q, D=t["D"], backend=backend)
        y.backward(gy)
        runs[backend] = (y, {k: v.grad for k, v in t.items()})
    (y_tr, g_tr), (y_to, g_to) = runs["triton"], runs["torch"]
    out = {"seed": seed, "shape": {"B": b, "L": l, "H": h, "P": p, "G": g, "N": n, "chunk": q},
           "y": err(y_tr, y_to), "grads": {k: err(g_tr[k], g_to[k]) for k in leaves}}
    # the float64 recurrence as a third opinion (not asserted on: torch's own tests cover it)
    dt64 = F.softplus(leaves["dt_raw"].double() + leaves["dt_bias"].double())
    y64 = ssd.ssd_reference(leaves["x"].double(), dt64, -torch.exp(leaves["A_log"].double()), leaves["B"].double(),
                            leaves["C"].double(), leaves["D"].double())
    out["y_triton_vs_float64"] = err(y_tr, y64)
    out["y_torch_vs_float64"] = err(y_to, y64)
    return out


def case_bimamba(seed: int = 1602) -> dict:
    """BiMamba2 both directions (15 tokens incl. 2 review tokens, chunk 8, 4 heads, 2 groups), fwd + all grads."""
    torch.manual_seed(seed)
    m = BiMamba2(d_model=16, d_state=8, expand=2, headdim=8, d_conv=4, ngroups=2, chunk_size=8)
    gen = torch.Generator().manual_seed(seed + 1)
    u0 = torch.randn(2, 15, 16, generator=gen)
    gy = torch.randn(2, 15, 16, generator=gen)
    runs = {}
    for backend in ("triton", "torch"):
        with_backend(backend)
        m.zero_grad(set_to_none=True)
        u = u0.clone().requires_grad_()
        y = m(u, num_prefix=2)
        y.backward(gy)
        grads = {name: p.grad.clone() for name, p in m.named_parameters()}
        grads["u"] = u.grad.clone()
        runs[backend] = (y.detach(), grads)
    (y_tr, g_tr), (y_to, g_to) = runs["triton"], runs["torch"]
    grads = {k: err(g_tr[k], g_to[k]) for k in g_to}
    per_dir = {}
    for d in (0, 1):  # the per-direction SSM parameters, so both directions are seen separately
        per_dir[str(d)] = {k: err(g_tr[k][d], g_to[k][d]) for k in ("dt_bias", "A_log", "D")}
        per_dir[str(d)][f"conv.{d}.weight"] = grads[f"conv.{d}.weight"]
    return {"seed": seed, "y": err(y_tr, y_to), "grads": grads, "per_direction": per_dir}


def case_denoiser(seed: int = 1603) -> dict:
    """One forward of a randomised ``tiny`` denoiser (depth 2), latents 1×8×2×8×8, 5 text tokens."""
    torch.manual_seed(seed)
    m = build_denoiser("tiny", depth=2).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # random non-zero weights: the zero-initialised output layer would hide everything
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p.shape[-1]) ** 0.5) + (p == 1).float())
    cfg = m.config
    lat = torch.randn(1, cfg.in_channels, 2, 8, 8, generator=gen)
    t = torch.tensor([0.7])
    ctx = torch.randn(1, 5, cfg.text_dim, generator=gen)
    mask = torch.ones(1, 5, dtype=torch.bool)
    outs = {}
    for backend in ("triton", "torch"):
        with_backend(backend)
        with torch.no_grad():
            outs[backend] = m(lat, t, ctx, mask)
    return {"seed": seed, "config": {"depth": cfg.depth, "width": cfg.width, "heads": cfg.mamba_heads,
                                     "d_state": cfg.d_state, "chunk": cfg.chunk_size},
            "velocity": err(outs["triton"], outs["torch"])}


CASES = {"scan": case_scan, "bimamba": case_bimamba, "denoiser": case_denoiser}


def main(argv: list[str]) -> int:
    out_path, names = Path(argv[0]), argv[1:] or list(CASES)
    result = {"triton_interpret": os.environ.get("TRITON_INTERPRET"), "cases": {}}
    for name in names:
        CALLS["n"] = 0
        t0 = time.perf_counter()
        res = CASES[name]()
        res["triton_kernel_calls"] = CALLS["n"]
        res["seconds"] = round(time.perf_counter() - t0, 2)
        result["cases"][name] = res
        print(f"{name}: {res['seconds']} s", file=sys.stderr, flush=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
