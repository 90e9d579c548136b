#!/usr/bin/env python
"""Per-rank memory of a denoiser training step under FSDP2, from the sharded state (no GPU).

The model is built on the meta device (shapes only) and sharded with the trainer's own
``lingen_model.training.parallel.apply_fsdp`` on a fake process group of N ranks
(``torch.testing._internal.distributed.fake_pg``), so every number below comes from the
DTensor shards FSDP2 actually makes (dim-0 shards, padded to a multiple of N), not from a
formula. Per rank, with the CUDA mixed-precision policy of ``lingen train`` (bf16 compute
parameters, float32 master weights, gradients reduced in float32) and AdamW + EMA:

* state (lives all step): float32 parameter shards, their float32 gradients, AdamW's two
  moments, the float32 EMA shards;
* transient, peak during backward: the root's parameters (kept gathered, bf16), two blocks'
  gathered bf16 parameters (the one computing and the one prefetched) and one block's
  unsharded float32 gradient before its reduce-scatter;
* the same sum without FSDP (one rank holds everything) for comparison.

Activations are not in the table: they do not depend on the number of ranks (each rank keeps
its own clips); ``--activations`` measures them for one clip with
``torch.distributed._tools.fsdp2_mem_tracker.FSDPMemTracker`` under ``FakeTensorMode``
(FakeTensors: no memory used, no GPU) on the model cut to 2 blocks, with per-block activation
checkpointing and bf16 autocast: the activations at the step's memory peak (one block
recomputed in backward). The other blocks of the full depth each keep only their checkpointed
input (B×N×width, bf16), added analytically. The SSD scan runs the torch reference path
here (``lingen_model.models.ssd``; mamba_ssm's Triton kernel needs a GPU), which materialises the
per-chunk decay matrices; the fused kernel would need less.

Usage::

    python scripts/fsdp_memory.py [--size 4b] [--ranks 8 64] [--activations --frames 17 --height 512 --width 512]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch

GiB = 1024 ** 3


def _fake_world(world: int):
    """A fake process group of ``world`` ranks (this process is rank 0) and its 1-D mesh."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
    return init_device_mesh("cpu", (world,), mesh_dim_names=("dp_shard",))


def _bf16_policy():
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def state_memory(size: str, world: int) -> dict[str, float]:
    """Bytes per rank of a training step's state and transient FSDP buffers (see the module docstring)."""
    from lingen_model.models.config import get_config
    from lingen_model.models.denoiser import Denoiser
    from lingen_model.training.parallel import apply_fsdp, sharding_units

    mesh = _fake_world(world)
    with torch.device("meta"):
        model = Denoiser(get_config(size))
    full_numel = sum(p.numel() for p in model.parameters())
    units = sharding_units(model)
    unit_numel = max(sum(p.numel() for p in u.parameters()) for u in units)
    in_units = {id(p) for u in units for p in u.parameters()}
    root_numel = sum(p.numel() for p in model.parameters() if id(p) not in in_units)
    apply_fsdp(model, mesh, _bf16_policy())
    shard_numel = sum(p.to_local().numel() for p in model.parameters())  # padded dim-0 shards
    f32, bf16 = 4, 2
    out = {
        "parameters": full_numel,
        "params (fp32 shards)": shard_numel * f32,
        "grads (fp32 shards)": shard_numel * f32,
        "AdamW moments (2 x fp32)": 2 * shard_numel * f32,
        "EMA (fp32 shards)": shard_numel * f32,
        "root params gathered (bf16)": root_numel * bf16,
        "2 blocks gathered (bf16)": 2 * unit_numel * bf16,
        "1 block unsharded grad (fp32)": unit_numel * f32,
    }
    out["state"] = sum(out[k] for k in ("params (fp32 shards)", "grads (fp32 shards)", "AdamW moments (2 x fp32)",
                                        "EMA (fp32 shards)"))
    out["transient"] = sum(out[k] for k in ("root params gathered (bf16)", "2 blocks gathered (bf16)",
                                            "1 block unsharded grad (fp32)"))
    out["total"] = out["state"] + out["transient"]
    out["without FSDP"] = full_numel * 5 * f32  # weights, grads, 2 moments, EMA (fp32): one rank holds all
    return out


def activation_memory(size: str, frames: int, height: int, width: int, depth: int) -> float:
    """Peak activation bytes of one training step (batch 1, per-block checkpointing, bf16 autocast)
    of ``size`` cut to ``depth`` blocks, as FSDPMemTracker counts them under FakeTensorMode."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

    from lingen_model.models.config import get_config
    from lingen_model.models.denoiser import Denoiser
    from lingen_model.training.parallel import apply_activation_checkpointing, apply_fsdp

    from lingen_model.models import scan_order

    scan_order._perm.cache_clear()  # index tensors cached under an earlier FakeTensorMode
    mesh = _fake_world(8)
    cfg = get_config(size, depth=depth)
    # the input checks read tensor values, which FakeTensors do not have; the shapes are right by construction
    Denoiser._check_inputs = lambda self, *a: None
    t_lat = 1 + (frames - 1) // 4
    with FakeTensorMode():
        model = Denoiser(cfg)
        apply_activation_checkpointing(model)
        apply_fsdp(model, mesh, _bf16_policy())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        inputs = (torch.randn(1, cfg.in_channels, t_lat, height // 8, width // 8), torch.rand(1),
                  torch.randn(1, 77, cfg.text_dim), torch.ones(1, 77, dtype=torch.bool))
        tracker = FSDPMemTracker(mod=model, optm=opt)
        tracker.track_inputs(inputs)
        with tracker:
            for i in range(2):  # the second step has the optimizer state in place
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(*inputs)
                out.float().square().mean().backward()
                opt.step()
                opt.zero_grad()
                if i == 0:
                    tracker.reset_mod_stats()
        peak = tracker.get_tracker_snapshot("peak")
    return float(sum(v.get("Activation", 0) for v in peak.values()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4b")
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--activations", action="store_true", help="also measure activations of one clip (slow)")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=512)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows = {n: state_memory(args.size, n) for n in args.ranks}
    from lingen_model.models.config import get_config
    first = rows[args.ranks[0]]
    print(f"denoiser '{args.size}': {first['parameters'] / 1e9:.3f} B parameters; per-rank GiB, FSDP2, "
          "bf16 compute / fp32 master + reduce, AdamW, EMA")
    keys = ["params (fp32 shards)", "grads (fp32 shards)", "AdamW moments (2 x fp32)", "EMA (fp32 shards)", "state",
            "root params gathered (bf16)", "2 blocks gathered (bf16)", "1 block unsharded grad (fp32)", "transient",
            "total"]
    print("| per rank | " + " | ".join(f"{n} ranks" for n in args.ranks) + " |")
    print("|---|" + "---|" * len(args.ranks))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{rows[n][k] / GiB:.2f}" for n in args.ranks) + " |")
    print(f"| without FSDP (1 rank: weights, grads, 2 moments, EMA, fp32) | {first['without FSDP'] / GiB:.2f} |")
    if args.activations:
        t_lat = 1 + (args.frames - 1) // 4
        tokens = t_lat * (args.height // 16) * (args.width // 16)
        t0 = time.time()
        cfg = get_config(args.size)
        a2 = activation_memory(args.size, args.frames, args.height, args.width, 2)
        saved = (cfg.depth - 2) * tokens * cfg.width * 2
        print(f"\nactivations, one {args.frames}-frame {args.height}x{args.width} clip ({tokens} tokens), batch 1 per "
              f"rank, per-block checkpointing, bf16: {a2 / GiB:.2f} GiB measured at the peak of a 2-block model "
              f"+ {cfg.depth - 2} more checkpointed block inputs {saved / GiB:.2f} GiB = {(a2 + saved) / GiB:.2f} GiB "
              f"at depth {cfg.depth} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    sys.exit(main())
