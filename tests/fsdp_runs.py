"""Test helper run under torchrun: several training runs in one process group (one launch).

``python -m torch.distributed.run --nproc-per-node N tests/fsdp_runs.py PLAN.json``; the plan is
a list of ``{"config": yaml path, "overrides": {...}, "copy": [src, dst] (optional, done by rank 0
before the run), "dump": path (optional)}``. With ``dump`` every rank writes the run's final
weights and EMA (``ema.*``), gathered to full tensors, to ``<dump>.rank<R>.safetensors`` (to compare
the ranks, and runs, without reading checkpoints back through the loader under test).
"""
import json
import shutil
import sys
import time

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from lingen_model.training.distributed import finish_distributed, init_distributed
from lingen_model.training.parallel import full_tensors
from lingen_model.training.config import load_train_config
from lingen_model.training.trainer import Trainer


def main(plan_file: str) -> None:
    rank, world = init_distributed()
    t0 = time.time()
    for run in json.load(open(plan_file)):
        if "copy" in run and rank == 0:
            shutil.copytree(*run["copy"])
        dist.barrier()
        trainer = Trainer(load_train_config(run["config"], run.get("overrides", {})))
        trainer.train()
        if "dump" in run:
            weights = full_tensors(trainer.model.state_dict(), keep=True)
            weights.update({f"ema.{k}": v for k, v in full_tensors(trainer.ema.shadow, keep=True).items()})
            save_file({k: v.contiguous() for k, v in weights.items()}, f"{run['dump']}.rank{rank}.safetensors")
        dist.barrier()
        if rank == 0:
            print(f"{run['config']}: done at {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    finish_distributed()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
