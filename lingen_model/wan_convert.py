"""Wan 2.1 (diffusers layout) → LinGen ``arch="wan"`` weights and configs.

Every Wan transformer weight is copied (self-attention q/k/v/o become the TE-branch,
:class:`~lingen_model.wan_denoiser.WanTESA`); the MA-branch is freshly initialised with
its ``out_proj`` at zero, so the converted model with a full window equals Wan.
Initialising a sub-quadratic student from a pretrained transformer's weights follows
"The Mamba in the Llama" (Wang et al., arXiv 2408.15237) and LinVideo (data-free
attention replacement in Wan); here the attention is kept, windowed.

Pure functions on state dicts; :mod:`lingen_cli.convert` does the file handling.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from lingen_model.wan_denoiser import WanDenoiser, WanDenoiserConfig


class WanConvertError(ValueError):
    """The input is not a Wan 2.1 text-to-video transformer this converter understands."""


#: diffusers ``WanTransformer3DModel`` config keys whose value must be as below (T2V only).
_FIXED = {"image_dim": None, "added_kv_proj_dim": None, "pos_embed_seq_len": None, "cross_attn_norm": True,
          "qk_norm": "rms_norm_across_heads"}


def config_from_diffusers(dconf: dict[str, Any], **options: Any) -> WanDenoiserConfig:
    """Our config from a diffusers ``transformer/config.json`` dict plus LinGen options
    (``window``, ``mixer``, ``review_size``, ``d_state``, ``headdim``, ``expand``, ...).

    Raises:
        WanConvertError: not a ``WanTransformer3DModel`` config, an image-conditioned (I2V)
            variant, a temporal patch other than 1, or values our variant cannot express.
    """
    cls = dconf.get("_class_name")
    if cls != "WanTransformer3DModel":
        raise WanConvertError(f"expected a WanTransformer3DModel config, got _class_name={cls!r}")
    for k, want in _FIXED.items():
        if k in dconf and dconf[k] != want:
            raise WanConvertError(f"unsupported Wan variant: {k}={dconf[k]!r} (only text-to-video Wan 2.1 converts)")
    patch = list(dconf.get("patch_size", (1, 2, 2)))
    if len(patch) != 3 or patch[0] != 1 or patch[1] != patch[2]:
        raise WanConvertError(f"patch_size must be (1, p, p), got {patch}")
    heads, head_dim = int(dconf.get("num_attention_heads", 40)), int(dconf.get("attention_head_dim", 128))
    in_ch = int(dconf.get("in_channels", 16))
    try:
        return WanDenoiserConfig(
            in_channels=in_ch, out_channels=int(dconf.get("out_channels") or in_ch), patch_size=int(patch[1]),
            width=heads * head_dim, depth=int(dconf.get("num_layers", 40)), num_heads=heads,
            ffn_dim=int(dconf.get("ffn_dim", 13824)), text_dim=int(dconf.get("text_dim", 4096)),
            freq_dim=int(dconf.get("freq_dim", 256)), eps=float(dconf.get("eps", 1e-6)), **options)
    except (TypeError, ValueError) as e:
        raise WanConvertError(str(e)) from None


def _block_map(i: int) -> dict[str, tuple[str, ...]]:
    """our key → the diffusers key(s) concatenated along dim 0, for block ``i``."""
    a, o = f"blocks.{i}.", f"blocks.{i}."
    m: dict[str, tuple[str, ...]] = {}
    for s in ("weight", "bias"):
        m[f"{o}te.qkv.{s}"] = tuple(f"{a}attn1.to_{n}.{s}" for n in "qkv")
        m[f"{o}te.proj.{s}"] = (f"{a}attn1.to_out.0.{s}",)
        m[f"{o}cross.q.{s}"] = (f"{a}attn2.to_q.{s}",)
        m[f"{o}cross.kv.{s}"] = (f"{a}attn2.to_k.{s}", f"{a}attn2.to_v.{s}")
        m[f"{o}cross.proj.{s}"] = (f"{a}attn2.to_out.0.{s}",)
        m[f"{o}norm2.{s}"] = (f"{a}norm2.{s}",)
        m[f"{o}ffn.fc1.{s}"] = (f"{a}ffn.net.0.proj.{s}",)
        m[f"{o}ffn.fc2.{s}"] = (f"{a}ffn.net.2.{s}",)
    for n in ("q", "k"):
        m[f"{o}te.norm_{n}.weight"] = (f"{a}attn1.norm_{n}.weight",)
        m[f"{o}cross.norm_{n}.weight"] = (f"{a}attn2.norm_{n}.weight",)
    m[f"{o}ada_table"] = (f"{a}scale_shift_table",)
    return m


def key_map(depth: int) -> dict[str, tuple[str, ...]]:
    """Our state-dict key → diffusers key(s) for every weight taken from Wan."""
    m: dict[str, tuple[str, ...]] = {"final_table": ("scale_shift_table",)}
    for s in ("weight", "bias"):
        m[f"patch_embed.{s}"] = (f"patch_embedding.{s}",)
        m[f"t_embed.0.{s}"] = (f"condition_embedder.time_embedder.linear_1.{s}",)
        m[f"t_embed.2.{s}"] = (f"condition_embedder.time_embedder.linear_2.{s}",)
        m[f"t_block.1.{s}"] = (f"condition_embedder.time_proj.{s}",)
        m[f"text_proj.0.{s}"] = (f"condition_embedder.text_embedder.linear_1.{s}",)
        m[f"text_proj.2.{s}"] = (f"condition_embedder.text_embedder.linear_2.{s}",)
        m[f"final_linear.{s}"] = (f"proj_out.{s}",)
    for i in range(depth):
        m.update(_block_map(i))
    return m


def convert_state_dict(wan_state: dict[str, torch.Tensor], model: WanDenoiser) -> dict[str, str]:
    """Copy Wan's weights into ``model`` in place (MA-branch left as is; call
    ``model.zero_ma_out()`` for a Wan-equivalent start). Returns ``{our key: wan key(s)}``.

    Raises:
        WanConvertError: a Wan weight is missing, has the wrong shape, or is left over
            (e.g. an image-conditioned variant's extra weights).
    """
    mapping = key_map(model.config.depth)
    own = model.state_dict()
    used: set[str] = set()
    with torch.no_grad():
        for ours, theirs in mapping.items():
            missing = [k for k in theirs if k not in wan_state]
            if missing:
                raise WanConvertError(f"Wan checkpoint lacks {missing[0]} (expected for {model.config.depth} layers)")
            value = torch.cat([wan_state[k] for k in theirs], dim=0) if len(theirs) > 1 else wan_state[theirs[0]]
            value = value.reshape(own[ours].shape) if value.numel() == own[ours].numel() else value
            if tuple(value.shape) != tuple(own[ours].shape):
                raise WanConvertError(f"{theirs[0]} has shape {tuple(wan_state[theirs[0]].shape)}, "
                                      f"the config implies {tuple(own[ours].shape)}")
            own[ours].copy_(value.to(own[ours].dtype))
            used.update(theirs)
    left = sorted(k for k in wan_state if k not in used and not re.search(r"norm_added_q", k))
    if left:
        raise WanConvertError(f"Wan checkpoint has {len(left)} weight(s) this converter does not know, e.g. {left[0]}")
    return {k: "+".join(v) for k, v in mapping.items()}


def convert_wan(wan_state: dict[str, torch.Tensor], dconf: dict[str, Any], seed: int = 0, **options: Any) -> WanDenoiser:
    """Build the LinGen-Wan denoiser (float32) for a diffusers Wan config and state dict.

    MA-branch parameters are drawn with ``torch.manual_seed(seed)`` (mamba_ssm's init) and
    its ``out_proj`` is zero. ``options`` go to :func:`config_from_diffusers`.

    Raises:
        WanConvertError: see :func:`config_from_diffusers` and :func:`convert_state_dict`.
    """
    cfg = config_from_diffusers(dconf, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanDenoiser(cfg)
    convert_state_dict(wan_state, model)
    model.zero_ma_out()
    return model.eval()
