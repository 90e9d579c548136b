#!/usr/bin/env python
"""Peak memory and time of chunked VAE decoding: a 4 s clip vs a 60 s clip.

Each case runs in a fresh Python subprocess, which builds the default-config
:class:`lingen_model.models.vae.CausalVideoVAE` (random weights: memory and time do not depend on
the weight values), draws random latents for ``1 + fps·seconds`` frames, decodes them with
``decode(latents, chunk_frames=...)`` under ``torch.no_grad`` and reports

* ``peak_rss``: the process's peak resident set size, ``VmHWM`` from
  ``/proc/self/status`` (bytes; falls back to ``resource.getrusage``), which includes the
  Python + torch baseline, the model, the full float32 output video and the chunk's
  activations;
* ``base_rss``: the resident set just before decoding (bytes);
* ``decode_s``: wall-clock decode time (seconds).

The child sets ``OMP_WAIT_POLICY=PASSIVE`` unless told otherwise: on a CPU shared with
other processes, spinning OpenMP threads otherwise make these runs several times slower.

Modes (``--modes``): ``decode`` holds the whole float32 output video (the API's
``decode``); ``uint8`` uses ``decode_uint8`` (the whole video as 8-bit frames, a quarter of
the float size); ``stream`` uses ``iter_decode`` and drops each chunk (what a video writer
does), so the output video is never held.

The parent prints one table row per case and, per resolution and mode, the ratio
``peak_rss(60 s) / peak_rss(4 s)``, and exits with status 1 if any ratio exceeds
``--max-ratio`` (1.5).

Usage::

    python scripts/vae_memory.py                     # 128×128, 4 s and 60 s, 8 fps
    python scripts/vae_memory.py --res 128 256 --chunk 2 --modes decode uint8 stream
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MiB = 1024 * 1024


def _status_bytes(key: str) -> int:
    """A ``kB`` field of /proc/self/status (e.g. VmHWM, VmRSS) in bytes; -1 if unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def _peak_rss() -> int:
    """Peak resident set size of this process in bytes."""
    peak = _status_bytes("VmHWM")
    if peak < 0:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    return peak


def child(res: int, frames: int, chunk: int, threads: int, mode: str) -> dict:
    """Run one case in this process and return its measurements."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from lingen_model.geometry import latent_frames
    from lingen_model.models.vae import CausalVideoVAE

    torch.manual_seed(0)
    vae = CausalVideoVAE().eval()
    fs, ft = vae.spatial_factor, vae.temporal_factor
    t_lat = latent_frames(frames, ft)
    z = torch.randn(1, vae.latent_channels, t_lat, res // fs, res // fs)
    with torch.no_grad():  # warm-up on one latent frame (allocator, oneDNN kernels)
        vae.decode(z[:, :, :1])
    base = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    out_bytes = 0
    with torch.no_grad():
        if mode == "stream":
            for _, y in vae.iter_decode(z, chunk_frames=chunk):
                out_bytes = max(out_bytes, y.numel() * y.element_size())
                del y
        elif mode == "uint8":
            y = vae.decode_uint8(z, chunk_frames=chunk)
            assert y.shape[1] == frames
            out_bytes = y.numel() * y.element_size()
        else:
            y = vae.decode(z, chunk_frames=chunk)
            assert y.shape[2] == frames
            out_bytes = y.numel() * y.element_size()
    dt = time.perf_counter() - t0
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "res": res, "frames": frames,
            "latent_frames": t_lat, "chunk": chunk, "mode": mode, "threads": torch.get_num_threads(), "decode_s": dt, "base_rss": base,
            "peak_rss": _peak_rss(), "output_bytes": out_bytes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", type=int, nargs="+", default=[128], help="square resolutions (pixels)")
    ap.add_argument("--seconds", type=float, nargs="+", default=[4, 60], help="clip lengths (s)")
    ap.add_argument("--fps", type=int, default=8, help="frames per second")
    ap.add_argument("--chunk", type=int, default=2, help="latent frames per decode chunk")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--modes", nargs="+", default=["decode", "uint8"], choices=["decode", "uint8", "stream"],
                    help="decode = float32 video held; uint8 = decode_uint8; stream = iter_decode")
    ap.add_argument("--max-ratio", type=float, default=1.5, help="allowed peak ratio long/short")
    ap.add_argument("--no-omp-passive", dest="omp_passive", action="store_false",
                    help="do not set OMP_WAIT_POLICY=PASSIVE in the child (spinning OpenMP threads "
                         "slow CPU runs down many-fold when other processes share the cores)")
    ap.add_argument("--json", type=str, default="", help="also write the results to this JSON file")
    ap.add_argument("--child", type=str, default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        c = json.loads(args.child)
        print(json.dumps(child(**c)))
        return 0

    rows = []
    modes = args.modes
    for res in args.res:
        for mode in modes:
            for sec in args.seconds:
                steps = round(args.fps * sec)
                frames = 1 + 4 * ((steps + 3) // 4)  # 1 + 4k frames covering the length
                spec = {"res": res, "frames": frames, "chunk": args.chunk, "threads": args.threads,
                        "mode": mode}
                env = dict(os.environ)
                if args.omp_passive:
                    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                                      capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return 2
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["seconds"] = sec
                rows.append(r)
                print(f"  done: {res}x{res} {sec:g}s {mode} {r['decode_s']:.1f}s", file=sys.stderr, flush=True)

    print(f"default VAEConfig, chunk_frames={args.chunk}, {args.fps} fps, torch threads="
          f"{rows[0]['threads'] if rows else '?'}, OMP_WAIT_POLICY={rows[0]['omp_wait_policy'] if rows else '?'}")
    hdr = (f"{'res':>7} {'mode':>6} {'len':>5} {'frames':>6} {'chunk':>5} {'decode s':>8} "
           f"{'ms/frame':>8} {'base MiB':>8} {'peak MiB':>8} {'out MiB':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{str(r['res']) + 'x' + str(r['res']):>7}",
              f"{r['mode']:>6} {r['seconds']:>4g}s {r['frames']:>6} {r['chunk']:>5} "
              f"{r['decode_s']:>8.2f} {1000 * r['decode_s'] / r['frames']:>8.1f} {r['base_rss'] / MiB:>8.0f} "
              f"{r['peak_rss'] / MiB:>8.0f} {r['output_bytes'] / MiB:>7.1f}")
    ok = True
    lo, hi = min(args.seconds), max(args.seconds)
    for res in args.res:
        for mode in modes:
            sel = {r["seconds"]: r for r in rows if r["res"] == res and r["mode"] == mode}
            if lo == hi or lo not in sel or hi not in sel:
                continue
            ratio = sel[hi]["peak_rss"] / sel[lo]["peak_rss"]
            extra = ((sel[hi]["peak_rss"] - sel[hi]["base_rss"]) / MiB,
                     (sel[lo]["peak_rss"] - sel[lo]["base_rss"]) / MiB)
            flag = "OK" if ratio <= args.max_ratio else "FAIL"
            ok &= ratio <= args.max_ratio
            print(f"{res}x{res} {mode}: peak RSS {hi:g}s / {lo:g}s = {ratio:.3f} "
                  f"(limit {args.max_ratio}) {flag}; peak above pre-decode RSS: "
                  f"{extra[0]:.0f} MiB vs {extra[1]:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
