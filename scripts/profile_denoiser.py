"""Per-step latency and per-module CPU profile of the embedded denoiser: two code trees side by side.

Each code tree (a checkout root, e.g. an old commit from ``git worktree add /tmp/old <sha>``
and this worktree) gets one persistent worker process that imports ``lingen_model`` from that
root, loads ``lingen-tiny`` (from the NEW tree's weights, so both run the same numbers) and
builds the same fixed input (seeded noise, CFG batch 2 — or its conditional half with
``--batch 1`` — and random text context). The parent then alternates: one timed forward in
old, one in new, ... ``--rounds`` times, so both see the same machine state; the ratio is the median over rounds of old ÷ new. Then the workers run
``torch.profiler`` over ``--profile-steps`` forwards each, alternating one forward at a time,
with a ``record_function`` range around each part (forward hooks on modules; the SSD scan function wrapped), and the parent prints the
per-part CPU time side by side, plus the largest relative difference between the two trees'
outputs on the same input (the speed work must not change the model's maths).

    python scripts/profile_denoiser.py --old /tmp/i19-old --new . --length 4s,60s

Workers run with ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-wait-policy``) and the glibc malloc thresholds of
``lingen benchmark`` (unless already set), ``torch.set_num_threads(--threads)``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# ------------------------------------------------------------------------------------ worker

PARTS = [  # (label, module-class name or attribute path) in the order printed
    ("ssd_scan", None),  # 16 calls per forward in trees that scan one direction at a time, 8 in batched ones
    ("mamba_in_proj", "in_proj"),
    ("mamba_out_proj", "out_proj"),
    ("mamba_conv", "conv"),
    ("mamba_gated_norm", "norm"),
    ("BiMamba2 (total)", "BiMamba2"),
    ("MABranch (total: + RMS permutation, review tokens)", "MABranch"),
    ("TESA", "TESA"),
    ("cross_attention", "CrossAttention"),
    ("ffn", "SwiGLU"),
    ("forward (total)", "Denoiser"),
]


def _worker(weights: str, threads: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    import lingen_model
    # the layout since the architecture refactor (#18), or the flat one before it (an old commit);
    # decided by the tree's files: an editable install would serve a missing subpackage from elsewhere
    if (Path(lingen_model.__file__).parent / "models").is_dir():
        import lingen_model.models.mamba2 as mamba2
        from lingen_model.generation.checkpoint import load_checkpoint
    else:
        import lingen_model.mamba2 as mamba2
        from lingen_model.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    denoiser, _, _ = load_checkpoint(weights)
    denoiser.eval()
    cfg = denoiser.config
    ranges: dict[int, object] = {}

    def pre(mod, _inp, label):
        r = record_function(label)
        r.__enter__()
        ranges.setdefault(id(mod), []).append(r)

    def post(mod, _inp, _out):
        ranges[id(mod)].pop().__exit__(None, None, None)

    for name, mod in denoiser.named_modules():
        cls = type(mod).__name__
        leaf = name.rsplit(".", 1)[-1]
        label = None
        if cls in ("BiMamba2", "MABranch", "TESA", "CrossAttention", "SwiGLU", "Denoiser"):
            label = {"BiMamba2": "BiMamba2 (total)", "MABranch": "MABranch (total: + RMS permutation, review tokens)",
                     "TESA": "TESA", "CrossAttention": "cross_attention", "SwiGLU": "ffn",
                     "Denoiser": "forward (total)"}[cls]
        elif ".mamba." in name + "." and leaf in ("in_proj", "out_proj", "norm"):
            label = f"mamba_{ {'norm': 'gated_norm'}.get(leaf, leaf) }".replace(" ", "")
        elif ".mamba.conv" in name and cls == "Conv1d":
            label = "mamba_conv"
        if label:
            mod.register_forward_pre_hook(lambda m, i, _l=label: pre(m, i, _l))
            mod.register_forward_hook(post)
    # one direction at a time (older trees: ssd_scan) or both in one batched scan (ssd_scan_multi)
    for attr in ("ssd_scan", "ssd_scan_multi"):
        fn = getattr(mamba2, attr, None)
        if fn is not None:
            def profiled(*a, _fn=fn, **k):
                with record_function("ssd_scan"):
                    return _fn(*a, **k)

            setattr(mamba2, attr, profiled)
    conv = getattr(mamba2, "causal_depthwise_conv_silu", None)  # the new tree's conv (a function, no module)
    if conv is not None:
        def conv_profiled(*a, **k):
            with record_function("mamba_conv"):
                return conv(*a, **k)

        mamba2.causal_depthwise_conv_silu = conv_profiled
    inputs = {}
    print(json.dumps({"ready": True, "module": lingen_model.__file__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        key = (cmd["frames"], cmd.get("stagger", 0.0), cmd.get("batch", 2))
        if key not in inputs:
            gen = torch.Generator().manual_seed(0)
            t_lat = 1 + (cmd["frames"] - 1) // 4
            z = torch.randn(2, cfg.in_channels, t_lat, 16, 16, generator=gen)
            ctx = torch.randn(2, 12, cfg.text_dim, generator=gen)
            mask = torch.ones(2, 12, dtype=torch.bool)
            mask[0, 1:] = False  # the unconditional half: the encoded "" (one token)
            t = torch.full((2,), 0.6)
            if key[1] > 0:  # per-frame times: one step of a staggered run, t_k = clamp(0.2 + λ·k, 0, 1)
                t = (0.2 + key[1] * torch.arange(t_lat, dtype=torch.float32)).clamp(0.0, 1.0).expand(2, -1)
            if key[2] == 1:  # the conditional half alone (lingen benchmark's batch)
                z, t, ctx, mask = z[1:], t[1:], ctx[1:], mask[1:]
            inputs[key] = (z, t, ctx, mask)
        z, t, ctx, mask = inputs[key]
        with torch.no_grad():
            if cmd["op"] == "time":
                t0 = time.perf_counter()
                c0 = time.process_time()
                out = denoiser(z, t, ctx, mask)
                res = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
            elif cmd["op"] == "output":
                out = denoiser(z, t, ctx, mask)
                path = cmd["path"]
                torch.save(out, path)
                res = {"path": path}
            else:  # profile
                denoiser(z, t, ctx, mask)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(cmd["steps"]):
                        denoiser(z, t, ctx, mask)
                totals = {}
                for ev in prof.key_averages():
                    if ev.key in dict(PARTS):
                        totals[ev.key] = ev.cpu_time_total / 1e3 / cmd["steps"]  # ms per forward
                ops = sorted(((ev.key, ev.self_cpu_time_total / 1e3 / cmd["steps"]) for ev in prof.key_averages()
                              if not ev.key.startswith(("mamba_", "ssd_", "BiMamba", "MABranch", "TESA", "cross_",
                                                        "ffn", "forward"))), key=lambda kv: -kv[1])[:12]
                res = {"parts": totals, "ops": ops}
        print(json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------ parent


class Worker:
    def __init__(self, root: Path, weights: Path, threads: int, wait_policy: str = "PASSIVE"):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root)
        env.pop("OMP_WAIT_POLICY", None)
        if wait_policy != "default":
            env["OMP_WAIT_POLICY"] = wait_policy
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
        env.setdefault("MALLOC_TRIM_THRESHOLD_", "1073741824")
        env["OMP_NUM_THREADS"] = str(threads)
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(weights), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(root))
        hello = json.loads(self.proc.stdout.readline())
        self.module = hello["module"]

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("worker died")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _frames(length: str) -> int:
    seconds = float(length.rstrip("s"))
    return 1 + 4 * round(seconds * 8 / 4)  # 8 fps, frames = 1 + 4k (the CLI's rule)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default=None, help="root of the old code tree (required)")
    ap.add_argument("--new", default=".", help="root of the new code tree")
    ap.add_argument("--length", default="4s,60s")
    ap.add_argument("--rounds", type=int, default=10, help="alternating timed forwards per tree and length")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile-steps", type=int, default=4, help="profiled forwards per tree (alternating)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                    help="OpenMP wait policy of both workers (default: PASSIVE, as lingen benchmark; "
                         "'default' leaves it unset, as lingen generate on a quiet machine)")
    ap.add_argument("--stagger", type=float, default=0.0,
                    help="λ > 0: per-frame times t_k = clamp(0.2 + λ·k, 0, 1), as one step of a staggered run "
                         "(default 0: one time per sample)")
    ap.add_argument("--mid", default=None,
                    help="root of a third code tree (e.g. the commit before the latest change), timed in the same "
                         "rotating rounds: prints old÷mid and mid÷new as well (not profiled)")
    ap.add_argument("--batch", type=int, default=2, choices=[1, 2],
                    help="2: a CFG batch (unconditional + conditional, as lingen generate runs it; default); "
                         "1: the conditional sample alone (as lingen benchmark times a step)")
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args.worker, args.threads)
    if not args.old:
        ap.error("--old is required (e.g. git worktree add /tmp/old <commit>)")
    new_root = Path(args.new).resolve()
    weights = new_root / "lingen_model" / "weights" / "lingen-tiny"
    import torch

    workers = {"old": Worker(Path(args.old).resolve(), weights, args.threads, args.omp_wait_policy),
               "new": Worker(new_root, weights, args.threads, args.omp_wait_policy)}
    if args.mid:  # a third tree, timed in the same rounds (not profiled)
        workers["mid"] = Worker(Path(args.mid).resolve(), weights, args.threads, args.omp_wait_policy)
    for k, w in workers.items():
        print(f"{k}: {w.module}")
    report = {"load_before": os.getloadavg(), "threads": args.threads, "omp_wait_policy": args.omp_wait_policy,
              "stagger": args.stagger, "batch": args.batch,
              "lengths": {}}
    for length in args.length.split(","):
        frames = _frames(length)
        for _ in range(args.warmup):
            for w in workers.values():
                w.ask(op="time", frames=frames, stagger=args.stagger, batch=args.batch)
        runs = {k: [] for k in workers}
        for i in range(args.rounds):
            order = list(workers)[i % len(workers):] + list(workers)[:i % len(workers)]  # rotate who goes first
            for k in (order if i % 2 == 0 else order[::-1]):
                runs[k].append(workers[k].ask(op="time", frames=frames, stagger=args.stagger, batch=args.batch))
        ratios = [o["wall"] / n["wall"] for o, n in zip(runs["old"], runs["new"])]
        cpu_ratios = [o["cpu"] / n["cpu"] for o, n in zip(runs["old"], runs["new"])]
        outs = {}
        for k, w in ((k, workers[k]) for k in ("old", "new")):
            path = f"/tmp/profile_denoiser_{os.getpid()}_{k}.pt"
            w.ask(op="output", frames=frames, path=path, stagger=args.stagger, batch=args.batch)
            outs[k] = torch.load(path, weights_only=True)
            os.unlink(path)
        rel = ((outs["new"] - outs["old"]).abs().max() / outs["old"].abs().max()).item()
        # profiles alternate too (one forward per tree per round), summed over the rounds
        prof = {k: {"parts": {}, "ops": {}} for k in ("old", "new")}
        for i in range(args.profile_steps):
            for k in (("old", "new") if i % 2 == 0 else ("new", "old")):
                res = workers[k].ask(op="profile", frames=frames, steps=1, stagger=args.stagger, batch=args.batch)
                for label, v in res["parts"].items():
                    prof[k]["parts"][label] = prof[k]["parts"].get(label, 0.0) + v / args.profile_steps
                for name, v in res["ops"]:
                    prof[k]["ops"][name] = prof[k]["ops"].get(name, 0.0) + v / args.profile_steps
        for k in prof:
            prof[k]["ops"] = sorted(prof[k]["ops"].items(), key=lambda kv: -kv[1])[:12]
        med = {k: statistics.median(r["wall"] for r in v) for k, v in runs.items()}
        medc = {k: statistics.median(r["cpu"] for r in v) for k, v in runs.items()}
        print(f"\n## {length} ({frames} frames, 128², {'CFG batch 2' if args.batch == 2 else 'batch 1'}, "
              f"{args.threads} threads, "
              f"{f'per-frame times (stagger {args.stagger}), ' if args.stagger else ''}"
              f"OMP_WAIT_POLICY {args.omp_wait_policy}, "
              f"load average {os.getloadavg()[0]:.2f})")
        print(f"per-step latency: old {med['old'] * 1e3:.0f} ms, new {med['new'] * 1e3:.0f} ms; "
              f"old÷new median over {args.rounds} alternating rounds {statistics.median(ratios):.2f}× "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}); CPU time {medc['old'] * 1e3:.0f} → "
              f"{medc['new'] * 1e3:.0f} ms ({statistics.median(cpu_ratios):.2f}×)")
        if "mid" in runs:  # the step from old to mid and from mid to new, per round
            om = [o["wall"] / m["wall"] for o, m in zip(runs["old"], runs["mid"])]
            mn = [m["wall"] / n["wall"] for m, n in zip(runs["mid"], runs["new"])]
            print(f"mid ({workers['mid'].module}): {med['mid'] * 1e3:.0f} ms; old÷mid {statistics.median(om):.2f}× "
                  f"(min {min(om):.2f}, max {max(om):.2f}), mid÷new {statistics.median(mn):.2f}× "
                  f"(min {min(mn):.2f}, max {max(mn):.2f})")
        print(f"max |new − old| / max |old| on the same input: {rel:.2e}")
        print("\n| part (CPU ms per forward, torch.profiler) | old | new | old÷new |\n|---|---:|---:|---:|")
        for label, _ in PARTS:
            o, n = prof["old"]["parts"].get(label), prof["new"]["parts"].get(label)
            fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
            ratio = f"{o / n:.2f}×" if o and n else ""
            print(f"| {label} | {fmt(o)} | {fmt(n)} | {ratio} |")
        for k in ("old", "new"):
            print(f"\ntop ops by self CPU ({k}): " + ", ".join(f"{n} {v:.1f}" for n, v in prof[k]["ops"]))
        report["lengths"][length] = {"frames": frames, "runs": runs, "ratio_median": statistics.median(ratios),
                                     "cpu_ratio_median": statistics.median(cpu_ratios), "max_rel_diff": rel,
                                     "profile": prof}
    report["load_after"] = os.getloadavg()
    for w in workers.values():
        w.close()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
