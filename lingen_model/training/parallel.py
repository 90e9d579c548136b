"""FSDP2 sharding and activation checkpointing of the training models (denoiser and VAE).

Layout (PyTorch FSDP2, ``torch.distributed.fsdp.fully_shard``; the per-block recipe of
torchtitan): every block is its own FSDP unit, the root module holds the rest (embeddings,
final layer; for the VAE the encoder's and decoder's stems), all on a 1-D :class:`DeviceMesh`
whose single axis ``dp_shard`` shards parameters, gradients and optimizer state (ZeRO-3).
A forward all-gathers one block's parameters at a time (and prefetches the next); backward
reduce-scatters its gradients, averaged over ranks, while earlier blocks still run. With
``dp_replicate > 1`` the mesh is 2-D ``(dp_replicate, dp_shard)`` and FSDP2 runs HSDP
(shard within a group of ranks, all-reduce across groups).

Mixed precision (CUDA): parameters are gathered and computed in bf16, gradients reduced in
float32, the sharded master weights and Adam moments stay float32
(:func:`mixed_precision_policy`). On CPU/gloo the same code runs in float32.

Activation checkpointing (``torch.distributed._composable.checkpoint``) recomputes a block's
activations in backward; it composes with FSDP2 without renaming parameters, so state dicts
and checkpoints are the same with and without it.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def device_mesh(world: int, device: torch.device, dp_replicate: int = 1):
    """The data-parallel :class:`torch.distributed.device_mesh.DeviceMesh` of ``world`` ranks.

    1-D ``("dp_shard",)`` when ``dp_replicate == 1``, else 2-D ``("dp_replicate", "dp_shard")``
    of shape ``(dp_replicate, world // dp_replicate)``. Needs an initialised process group.

    Raises:
        ValueError: ``dp_replicate`` does not divide ``world``.
    """
    from torch.distributed.device_mesh import init_device_mesh

    if dp_replicate < 1 or world % dp_replicate:
        raise ValueError(f"dp_replicate {dp_replicate} must be a positive divisor of the world size {world}")
    if dp_replicate == 1:
        return init_device_mesh(device.type, (world,), mesh_dim_names=("dp_shard",))
    return init_device_mesh(device.type, (dp_replicate, world // dp_replicate),
                            mesh_dim_names=("dp_replicate", "dp_shard"))


def mixed_precision_policy(device: torch.device, bf16: bool):
    """bf16 parameters and compute with float32 gradient reduction on CUDA when ``bf16``;
    None (everything float32) otherwise, in particular on CPU/gloo."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not bf16 or device.type != "cuda":
        return None
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def sharding_units(model: nn.Module) -> list[nn.Module]:
    """The blocks that become FSDP units (and activation-checkpoint units), in forward order.

    Denoiser and the Wan-converted ``WanDenoiser``: ``blocks[i]`` (each ``WanBlock``). CausalVideoVAE: the encoder's blocks and middle block, then the
    decoder's middle block and blocks (the encoder and decoder themselves are units too, see
    :func:`apply_fsdp`). Raises TypeError for another model.
    """
    from lingen_model.models.denoiser import Denoiser
    from lingen_model.models.vae import CausalVideoVAE
    from lingen_model.wan.denoiser import WanDenoiser

    if isinstance(model, (Denoiser, WanDenoiser)):
        return list(model.blocks)
    if isinstance(model, CausalVideoVAE):
        return [*model.encoder.blocks, model.encoder.mid, model.decoder.mid, *model.decoder.blocks]
    raise TypeError(f"no sharding plan for {type(model).__name__}")


def apply_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Recompute each unit of :func:`sharding_units` in backward (non-reentrant checkpointing);
    works with and without FSDP. Returns ``model`` (changed in place)."""
    from torch.distributed._composable import checkpoint

    for unit in sharding_units(model):
        checkpoint(unit)
    return model


def apply_fsdp(model: nn.Module, mesh, mp_policy=None) -> nn.Module:
    """Shard ``model`` in place with FSDP2: each unit of :func:`sharding_units`, then (VAE) the
    encoder and decoder, then the root.

    Parameters must be identical on all ranks before the call (same seed or loaded weights):
    each rank keeps its slice. The root keeps its parameters gathered after forward (they are
    used again at once by backward). The VAE's loss calls ``encode_distribution`` and
    ``decode_raw`` rather than ``forward``; both are registered as FSDP forward methods.
    The root does not cast its inputs (flow-matching times and text stay float32; the units
    cast their own inputs to the parameter dtype).
    """
    import warnings

    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from lingen_model.models.vae import CausalVideoVAE

    # The denoiser returns a view (cropped unpatchify); FSDP2 warns that an in-place op on it would
    # skip its backward hook. The losses here only read the output (flow_matching_loss is out of place).
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDP(Wan)?Denoiser\) returned a view tensor")

    kw = {"mesh": mesh}
    if mp_policy is not None:
        kw["mp_policy"] = mp_policy
    for unit in sharding_units(model):
        fully_shard(unit, **kw)
    if isinstance(model, CausalVideoVAE):
        fully_shard(model.encoder, **kw)
        fully_shard(model.decoder, **kw)
    root_kw = dict(kw)
    if mp_policy is not None:
        root_kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=mp_policy.param_dtype,
                                                    reduce_dtype=mp_policy.reduce_dtype, cast_forward_inputs=False)
    fully_shard(model, reshard_after_forward=False, **root_kw)
    if isinstance(model, CausalVideoVAE):
        register_fsdp_forward_method(model, "encode_distribution")
        register_fsdp_forward_method(model, "decode_raw")
    return model


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself otherwise)."""
    return t.to_local() if hasattr(t, "to_local") else t


def full_tensors(tensors: dict[str, torch.Tensor], keep: bool) -> dict[str, torch.Tensor]:
    """Gather sharded tensors (DTensors) one by one to full CPU tensors.

    Collective when any value is a DTensor: every rank must call it with the same keys.
    Returns the full tensors where ``keep`` (e.g. on rank 0 only), else an empty dict, so only
    one tensor at a time is ever held in full on a rank that does not keep them.
    """
    out = {}
    for k, v in tensors.items():
        full = v.full_tensor() if hasattr(v, "full_tensor") else v
        if keep:
            out[k] = full.detach().cpu()
    return out
