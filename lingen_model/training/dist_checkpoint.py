"""Resumable training state as a distributed checkpoint (torch.distributed.checkpoint, DCP).

A checkpoint is a directory of safetensors files, one per rank that holds data
(``shard-0000R-model-00001-of-00001.safetensors``), written with DCP's
``HuggingFaceStorageWriter(save_distributed=True)``: each rank writes only its shards of the
model parameters, the AdamW moments and the EMA weights, with their offsets in the global
tensor (DCP's ``DCP_SHARDING_INFO`` safetensors metadata). Reading plans from those headers
alone (``HuggingFaceStorageReader``), so loading never unpickles anything, and it reshards:
a checkpoint written by N ranks loads on M ranks, or into an unsharded single-process model
(PyTorch DCP; state dicts keyed by parameter name through
``torch.distributed.checkpoint.state_dict.get_state_dict``/``set_state_dict``).

Tensor keys: ``model.<param>``, ``optim.<param>.{exp_avg,exp_avg_sq,step}``, ``ema.<key>``,
``rng.rank<R>.<name>`` (per-rank RNG states as uint8 tensors). The optimizer's param groups
(hyper-parameters) are JSON, returned to the caller to store beside the checkpoint.

A checkpoint is first written to ``<dir>.tmp`` and renamed when every rank has finished, so a
crash never leaves a half-written ``<dir>``.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


def _rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def save_training_checkpoint(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer,
                             ema: dict[str, torch.Tensor], rng: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Write model, optimizer moments, EMA and this rank's RNG states to the directory ``path``.

    Collective under torch.distributed: every rank calls it with the same ``path``.
    ``model`` may be FSDP2-sharded or a plain module; ``ema`` maps state-dict keys to tensors
    sharded like the model's (DTensors under FSDP2); ``rng`` maps names to uint8 state tensors
    of this rank. Returns the optimizer's param groups (JSON-able, parameters by name).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_state_dict

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    msd, osd = get_state_dict(model, opt)
    state = {"model": msd, "optim": osd["state"], "ema": ema, "rng": {f"rank{_rank()}": rng}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(state, storage_writer=HuggingFaceStorageWriter(str(tmp), save_distributed=True),
                 no_dist=_dist() is None)
    _barrier()
    if _rank() == 0:
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    _barrier()
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd["param_groups"]]


def checkpoint_keys(path: str | Path) -> set[str]:
    """The flattened tensor keys stored in a checkpoint directory (reads safetensors headers only)."""
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    return set(HuggingFaceStorageReader(str(path)).read_metadata().state_dict_metadata)


def load_training_checkpoint(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer | None,
                             ema: dict[str, torch.Tensor], param_groups: list[dict] | None,
                             rng: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load a :func:`save_training_checkpoint` directory into ``model``, ``opt`` and ``ema``
    (in place), resharding to the current world size.

    ``opt`` None leaves the optimizer untouched; ``param_groups`` (from the save) restores its
    hyper-parameters. ``rng`` gives the names and shapes of this rank's RNG states; they are
    read from this rank's entry, or from rank 0's when the checkpoint was written by fewer
    ranks (the trainer keeps every rank's generators in lockstep). Returns the loaded RNG states.
    Collective under torch.distributed.

    Raises:
        ValueError: ``path`` is not a checkpoint directory or lacks a tensor the model needs.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict

    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"training checkpoint not found: {path}")
    try:
        keys = checkpoint_keys(path)
    except Exception as e:  # unreadable safetensors headers
        raise ValueError(f"{path}: cannot read the training checkpoint: {str(e).strip().splitlines()[0]}") from None
    src = f"rank{_rank()}" if any(k.startswith(f"rng.rank{_rank()}.") for k in keys) else "rank0"
    rng_out = {k: torch.empty_like(v) for k, v in rng.items()}
    if opt is not None:
        msd, osd = get_state_dict(model, opt)
        state = {"model": msd, "optim": osd["state"], "ema": ema, "rng": {src: rng_out}}
    else:
        msd, osd = get_model_state_dict(model), None
        state = {"model": msd, "ema": ema, "rng": {src: rng_out}}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, storage_reader=HuggingFaceStorageReader(str(path)), no_dist=_dist() is None)
    except (CheckpointException, Exception) as e:  # DCP raises CheckpointException (a BaseException)
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: cannot load the training checkpoint: {msg}") from None
    if opt is not None:
        if param_groups is not None:
            osd["param_groups"] = [{**g, **{k: (tuple(v) if k == "betas" else v) for k, v in saved.items()}}
                                   for g, saved in zip(osd["param_groups"], param_groups)]
        set_state_dict(model, opt, model_state_dict=msd, optim_state_dict=osd)
    else:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, msd)
    return rng_out


def load_full_state(model: nn.Module, opt: torch.optim.Optimizer | None, ema: dict[str, torch.Tensor],
                    weights: dict[str, torch.Tensor], ema_weights: dict[str, torch.Tensor],
                    optim_state: dict | None) -> None:
    """Load full (unsharded) tensors, e.g. the single-file state of older run directories, into a
    possibly FSDP2-sharded ``model``, its optimizer and the EMA: each rank keeps its shards.

    ``optim_state``: ``{"state": {param name: {...}}, "param_groups": [... params by name ...]}``
    (None = leave the optimizer as it is). Collective under torch.distributed.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    full = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=full)
    if optim_state is not None:
        set_optimizer_state_dict(model, opt, optim_state, options=full)
    for k, target in ema.items():
        src = ema_weights[k]
        if hasattr(target, "device_mesh"):
            from torch.distributed.tensor import distribute_tensor

            shard = distribute_tensor(src.to(target.device, target.dtype), target.device_mesh, target.placements)
            target.to_local().copy_(shard.to_local())
        else:
            target.copy_(src)
