"""OpenMP wait policy vs denoise and decode time of one 4 s clip, on a quiet and on a busy CPU.

Each (policy, machine state) runs in a fresh process (the policy is read when OpenMP starts):
``lingen-tiny``, 10 sampling steps with CFG (batch 2), no step caching, then the VAE decode;
2 torch threads. "busy" starts one spinning process per usable core next to it (what another
job or a second render does to a 2-core machine). Policies: ``PASSIVE`` (idle threads sleep),
``default`` (unset: libgomp spins a while, then sleeps), ``ACTIVE`` (spin). This is the
measurement behind ``lingen_cli.wait_policy`` (docs/benchmarks.md, "OpenMP wait policy").

    python scripts/bench_wait_policy.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

CHILD = r"""
import json, time, torch
from lingen_model.generation.pipeline import LinGenPipeline
torch.set_num_threads(2)
pipe = LinGenPipeline.from_pretrained()
ctx, mask = pipe.encode_prompt(["a red circle moving to the right", ""])
noise = pipe.prepare_latents(33, 128, 128, seed=1)
kw = dict(steps=10, cfg_scale=5.0, cache="none")
with torch.inference_mode():
    pipe.denoise(noise, ctx[:1], mask[:1], ctx[1:], mask[1:], **{**kw, "steps": 2})
    t0 = time.perf_counter(); lat = pipe.denoise(noise, ctx[:1], mask[:1], ctx[1:], mask[1:], **kw)
    t1 = time.perf_counter(); pipe.decode(lat); t2 = time.perf_counter()
print(json.dumps({"denoise_s": t1 - t0, "decode_s": t2 - t1}))
"""


def _spin(stop):
    while not stop.is_set():
        pass


def run(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    cores = len(os.sched_getaffinity(0))
    for state in ("quiet", "busy"):
        stop, spinners = mp.Event(), []
        if state == "busy":
            spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(cores)]
            for p in spinners:
                p.start()
            time.sleep(1.0)
        try:
            for policy in ("PASSIVE", "default", "ACTIVE"):
                res = run(policy)
                rows.append({"machine": state, "policy": policy, **res})
                print(f"{state:5s} {policy:8s} denoise {res['denoise_s']:6.2f} s   decode {res['decode_s']:5.2f} s",
                      flush=True)
        finally:
            stop.set()
            for p in spinners:
                p.join()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": cores, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
