"""torch.distributed set-up shared by batch generation and training (torchrun launches)."""
from __future__ import annotations

import os


def init_distributed() -> tuple[int, int]:
    """(rank, world size) from torchrun's ``WORLD_SIZE``; initialises the process group once
    (NCCL on CUDA, gloo on CPU). A plain (non-torchrun) run returns (0, 1) and touches nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def finish_distributed() -> None:
    """Tear down the process group that :func:`init_distributed` made (a no-op when none exists).

    Every rank waits at a barrier first, so none destroys the group while a peer is still in a
    collective: gloo then aborted the peer at exit ("terminate called without an active
    exception"), after all of its work was done. Raises nothing of its own; a failed peer
    surfaces as torch.distributed's error from the barrier.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        # Collect now what the group left behind, while the interpreter is whole: without it, a
        # `torchrun lingen generate --cp 2` rank sometimes aborted during interpreter teardown, after
        # every atexit handler ("terminate called without an active exception"; 3 of 16 runs of
        # tests/test_context_parallel.py's torchrun test on a loaded 2-core VM, 0 of 40 with it).
        import gc

        gc.collect()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it: bind to port 0), for a
    ``MASTER_PORT`` of processes this process spawns itself (benchmarks, tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
