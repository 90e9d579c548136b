"""Wan 2.1 (diffusers layout, or the original Wan2.1 repository's layout) → LinGen ``arch="wan"`` weights and configs.

Every Wan transformer weight is copied (self-attention q/k/v/o become the TE-branch,
:class:`~lingen_model.wan.denoiser.WanTESA`); the MA-branch is freshly initialised with
its ``out_proj`` at zero, so the converted model with a full window equals Wan.
Initialising a sub-quadratic student from a pretrained transformer's weights follows
"The Mamba in the Llama" (Wang et al., arXiv 2408.15237) and LinVideo (data-free
attention replacement in Wan); here the attention is kept, windowed.

Two transformer layouts are read and told apart by their keys (:func:`detect_layout`): diffusers'
``WanTransformer3DModel`` and the original ``WanModel`` of the Wan2.1 repository (``wan/modules/model.py``:
``self_attn``/``cross_attn``/``ffn.0``/``modulation``/``head.head`` keys, a ``config.json`` with
``dim``/``num_heads``/``in_dim``...). The original layout is renamed onto diffusers' keys
(:func:`original_to_diffusers`, :func:`config_from_original`) and then converted the same way.

Pure functions on state dicts; :mod:`lingen_cli.convert` does the file handling.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from lingen_model.wan.denoiser import WanDenoiser, WanDenoiserConfig


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


# ----------------------------------------------------------------------------- original Wan2.1 layout

#: Original ``WanModel`` module names → diffusers ``WanTransformer3DModel`` names, outside the blocks
#: (each has ``.weight`` and ``.bias``). ``head.modulation`` is handled apart (a bare parameter).
ORIGINAL_TOP = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
}
#: The same inside ``blocks.N.``. The original block applies norm1, then ``norm3`` (the affine
#: LayerNorm before cross-attention, diffusers' ``norm2``), then norm2 (no weights, before the FFN).
ORIGINAL_BLOCK = {
    **{f"self_attn.{n}": f"attn1.to_{n}" for n in "qkv"}, "self_attn.o": "attn1.to_out.0",
    **{f"cross_attn.{n}": f"attn2.to_{n}" for n in "qkv"}, "cross_attn.o": "attn2.to_out.0",
    **{f"{a}.norm_{n}": f"attn{i}.norm_{n}" for i, a in ((1, "self_attn"), (2, "cross_attn")) for n in "qk"},
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
#: Sizes every original ``config.json`` must state, and the optional keys with ``WanModel``'s defaults.
_ORIGINAL_SIZES = ("dim", "ffn_dim", "num_heads", "num_layers")
_ORIGINAL_DEFAULTS = {"patch_size": [1, 2, 2], "text_len": 512, "in_dim": 16, "out_dim": 16, "freq_dim": 256,
                      "text_dim": 4096, "eps": 1e-6}


def detect_layout(keys) -> str:
    """``"diffusers"`` or ``"original"`` from a transformer state dict's keys.

    Raises:
        WanConvertError: neither layout (one line naming a key), or keys of both.
    """
    keys = list(keys)
    diff = any(k.startswith("condition_embedder.") or re.match(r"blocks\.\d+\.attn1\.", k) for k in keys)
    orig = any(k.startswith(("time_embedding.", "text_embedding.")) or re.match(r"blocks\.\d+\.self_attn\.", k)
               for k in keys)
    if diff and orig:
        raise WanConvertError("the transformer weights mix the diffusers and the original Wan layouts")
    if not (diff or orig):
        raise WanConvertError("unknown transformer layout: neither diffusers' WanTransformer3DModel nor the original "
                              f"WanModel (first key: {keys[0] if keys else 'none'})")
    return "diffusers" if diff else "original"


def original_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original-layout ``WanModel`` state dict onto diffusers' keys (tensors shared, not copied).

    Raises:
        WanConvertError: a key outside the T2V model (e.g. ``img_emb.*`` of I2V/FLF2V, ``k_img`` of
            image cross-attention), named in the message.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = None
        if key == "head.modulation":
            new = "scale_shift_table"
        elif m := re.fullmatch(r"blocks\.(\d+)\.modulation", key):
            new = f"blocks.{m[1]}.scale_shift_table"
        elif m := re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key):
            if m[2] in ORIGINAL_BLOCK:
                new = f"blocks.{m[1]}.{ORIGINAL_BLOCK[m[2]]}.{m[3]}"
        elif m := re.fullmatch(r"(.+)\.(weight|bias)", key):
            if m[1] in ORIGINAL_TOP:
                new = f"{ORIGINAL_TOP[m[1]]}.{m[2]}"
        if new is None:
            raise WanConvertError(f"original Wan checkpoint has a weight this converter does not know: {key} "
                                  "(only text-to-video Wan 2.1 converts)")
        out[new] = value
    return out


def config_from_original(conf: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A diffusers-style ``WanTransformer3DModel`` config and ``text_len`` from an original ``WanModel``
    ``config.json`` (``dim``, ``ffn_dim``, ``num_heads``, ``num_layers`` required; ``patch_size``,
    ``text_len``, ``in_dim``, ``out_dim``, ``freq_dim``, ``text_dim``, ``eps`` default as in ``WanModel``).

    Raises:
        WanConvertError: another model type than ``t2v``, windowed attention, no QK-norm or
            cross-attention norm, a missing size, or non-integer sizes.
    """
    if conf.get("_class_name", "WanModel") != "WanModel":
        raise WanConvertError(f"expected a WanModel config, got _class_name={conf.get('_class_name')!r}")
    if conf.get("model_type", "t2v") != "t2v":
        raise WanConvertError(f"unsupported Wan variant: model_type={conf['model_type']!r} (only text-to-video Wan 2.1 converts)")
    for k, want in (("qk_norm", True), ("cross_attn_norm", True)):
        if conf.get(k, want) is not want:
            raise WanConvertError(f"unsupported Wan variant: {k}={conf[k]!r}")
    if list(conf.get("window_size", [-1, -1])) != [-1, -1]:
        raise WanConvertError(f"unsupported Wan variant: window_size={conf['window_size']!r} (global attention only)")
    missing = [k for k in _ORIGINAL_SIZES if k not in conf]
    if missing:
        raise WanConvertError(f"original Wan config lacks {missing[0]}")
    c = {**_ORIGINAL_DEFAULTS, **conf}
    try:
        dim, heads = int(c["dim"]), int(c["num_heads"])
        if heads < 1 or dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {heads}")
        dconf = {"_class_name": "WanTransformer3DModel", "patch_size": list(c["patch_size"]),
                 "num_attention_heads": heads, "attention_head_dim": dim // heads, "in_channels": int(c["in_dim"]),
                 "out_channels": int(c["out_dim"]), "text_dim": int(c["text_dim"]), "freq_dim": int(c["freq_dim"]),
                 "ffn_dim": int(c["ffn_dim"]), "num_layers": int(c["num_layers"]), "eps": float(c["eps"]),
                 "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads"}
        return dconf, int(c["text_len"])
    except (TypeError, ValueError) as e:
        raise WanConvertError(f"original Wan config: {e}") from None


def is_original_config(conf: dict[str, Any]) -> bool:
    """Whether a transformer ``config.json`` is the original ``WanModel``'s (``_class_name`` WanModel,
    or ``dim`` without diffusers' ``num_attention_heads``)."""
    return conf.get("_class_name") == "WanModel" or ("dim" in conf and "num_attention_heads" not in conf)


def to_diffusers(state: dict[str, torch.Tensor], conf: dict[str, Any],
                 options: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(state, config, layout)`` in diffusers form from a transformer of either layout; for the
    original layout its ``text_len`` goes into ``options`` unless given there.

    Raises:
        WanConvertError: unknown layout, or weights and config of different layouts.
    """
    layout = detect_layout(state)
    if is_original_config(conf) != (layout == "original"):
        raise WanConvertError(f"the transformer weights are in the {layout} layout but its config.json is not")
    if layout == "diffusers":
        return state, conf, layout
    dconf, text_len = config_from_original(conf)
    options.setdefault("text_len", text_len)
    return original_to_diffusers(state), dconf, layout


# ----------------------------------------------------------------------------- diffusers layout


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
    """Build the LinGen-Wan denoiser (float32) for a Wan config and state dict, in diffusers layout
    or in the original Wan2.1 layout (detected from the keys, :func:`to_diffusers`).

    MA-branch parameters are drawn with ``torch.manual_seed(seed)`` (mamba_ssm's init) and
    its ``out_proj`` is zero. ``options`` go to :func:`config_from_diffusers`.

    Raises:
        WanConvertError: see :func:`config_from_diffusers` and :func:`convert_state_dict`.
    """
    wan_state, dconf, _ = to_diffusers(wan_state, dconf, options)
    cfg = config_from_diffusers(dconf, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanDenoiser(cfg)
    convert_state_dict(wan_state, model)
    model.zero_ma_out()
    return model.eval()


# ----------------------------------------------------------------------------- directories

WAN_NATIVE = {"fps": 16, "height": 480, "width": 832}
"""Wan 2.1 T2V-1.3B's native clip format (frames/s, pixels)."""
WAN_SAMPLING = {"steps": 50, "cfg_scale": 5.0, "shift": 5.0}
"""Wan 2.1's sampling defaults (its shared config: 50 steps, guide scale 5, sample shift 5)."""
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _read_json(path):
    import json

    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WanConvertError(f"{path} is missing or not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(d, dict):
        raise WanConvertError(f"{path} must hold a JSON object")
    return d


def _load_safetensors_dir(folder, what: str) -> dict[str, torch.Tensor]:
    """All tensors of the ``*.safetensors`` files of a diffusers model folder (sharded or not).

    Raises:
        WanConvertError: only pickle weights (.bin/.pt…: refused, they can run code), no
            weights, or a corrupt file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise WanConvertError(f"refusing pickle-only {what} weights in {folder} ({', '.join(pickles)}); "
                                  "safetensors only")
        raise WanConvertError(f"no safetensors {what} weights in {folder}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise WanConvertError(f"{f} is truncated or corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return state


def _notice(src, cfg: WanDenoiserConfig, seed: int) -> str:
    from datetime import datetime, timezone

    win = "whole grid" if cfg.window == (0, 0, 0) else "×".join(str(w) if w else "all" for w in cfg.window)
    return (
        "This directory holds a model derived from Wan 2.1 (Wan Team, Alibaba; https://github.com/Wan-Video/Wan2.1),\n"
        "released under the Apache License 2.0 (see LICENSE). It was converted by `lingen convert`\n"
        f"on {datetime.now(timezone.utc).date().isoformat()} from: {src}\n\n"
        "Changes made to the original weights (Apache-2.0 §4(b)):\n"
        "- transformer weights re-keyed and re-shaped for lingen's arch=\"wan\" denoiser (q/k/v fused, no values changed);\n"
        f"- self-attention now runs inside TESA windows ({win} latent tokens"
        f"{', shifted on odd layers' if cfg.shift_windows else ''}) instead of over the whole clip;\n"
        + (f"- an MA-branch (bidirectional Mamba2, d_state {cfg.d_state}, review tokens {cfg.review_size}×{cfg.review_size}) "
           f"was added to every block, randomly initialised (seed {seed}) with its output projection at zero;\n"
           if cfg.mixer == "mate" else "")
        + "- VAE weights copied unchanged; the UMT5 text encoder is referenced in place, not copied.\n"
        "With a window covering the whole latent grid and the MA-branch at zero the model computes what Wan computes.\n"
    )


_APACHE_POINTER = (
    "The Wan 2.1 weights are licensed under the Apache License, Version 2.0 (the \"License\");\n"
    "you may not use these files except in compliance with the License. You may obtain a copy at\n"
    "    http://www.apache.org/licenses/LICENSE-2.0\n"
    "(the source directory carried no LICENSE file to copy).\n")


def convert_wan_directory(src, out, *, seed: int = 0, dtype: torch.dtype = torch.float32, name: str | None = None,
                          transformer=None, **options: Any):
    """Convert a Wan 2.1 T2V pipeline in diffusers layout into a lingen checkpoint directory.

    ``src`` holds ``transformer/`` (``WanTransformer3DModel`` config + safetensors, sharded
    or not), ``vae/`` (``AutoencoderKLWan``), ``text_encoder/`` (UMT5) and ``tokenizer/``.
    The transformer may instead be in the original Wan2.1 layout (``WanModel`` ``config.json`` +
    ``diffusion_pytorch_model*.safetensors``, e.g. the root of ``Wan-AI/Wan2.1-T2V-1.3B``), in
    ``src/transformer/`` or in the folder ``transformer``; the layout is detected from the keys.
    (The original repository's VAE and UMT5 are pickle ``.pth`` files, which are not read: they
    come from the diffusers layout.)
    ``out`` receives ``config.json`` (denoiser arch ``wan``, VAE arch ``wan``, text encoder
    ``umt5`` pointing at ``src``'s folders, native 832×480 at 16 fps, Wan's sampling defaults
    and negative prompt), ``denoiser.safetensors``, ``vae.safetensors``, ``LICENSE`` (copied
    from ``src`` when present) and ``NOTICE`` (what was changed). Written to a temporary
    sibling and renamed, so a failure leaves nothing at ``out``.

    Args:
        options: :class:`WanDenoiserConfig` fields — ``window``, ``mixer``, ``review_size``,
            ``d_state``, ``headdim``, ``expand``, ``shift_windows``, ``text_len``, ...
        seed: RNG seed of the MA-branch initialisation. dtype: storage dtype of the denoiser
            (float32 islands stay float32).

    Returns:
        The written path.

    Raises:
        WanConvertError: any problem with the input (one line).
    """
    from pathlib import Path

    from lingen_model.generation.checkpoint import save_checkpoint
    from lingen_model.models.text_encoder import WAN_NEGATIVE_PROMPT

    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise WanConvertError(f"no such directory: {src}")
    if transformer is not None:
        tdir = Path(transformer).expanduser()
        if not (tdir / "config.json").is_file():
            raise WanConvertError(f"{tdir} holds no transformer (no config.json)")
    else:
        tdir = src / "transformer" if (src / "transformer").is_dir() else src
        if not (tdir / "config.json").is_file():
            raise WanConvertError(f"{src} is not a Wan model in diffusers layout (no transformer/config.json)")
    conf = _read_json(tdir / "config.json")
    original = is_original_config(conf)
    for sub in ("vae", "text_encoder", "tokenizer"):
        if not (src / sub).is_dir():
            if original and transformer is None:
                raise WanConvertError(f"{src} is the original Wan layout, whose VAE and UMT5 are pickle .pth files "
                                      "(not read): pass the diffusers pipeline as SRC and this folder as --transformer")
            raise WanConvertError(f"{src} lacks {sub}/ (expected the whole diffusers pipeline layout)")
    options = dict(options)
    if original:  # checks the config before reading gigabytes
        dconf, text_len = config_from_original(conf)
        options.setdefault("text_len", text_len)
    else:
        dconf = conf
    cfg = config_from_diffusers(dconf, **options)
    vconf = _read_json(src / "vae" / "config.json")
    if vconf.get("_class_name") != "AutoencoderKLWan":
        raise WanConvertError(f"{src / 'vae'} is not an AutoencoderKLWan (_class_name={vconf.get('_class_name')!r})")
    tconf = _read_json(src / "text_encoder" / "config.json")
    if tconf.get("model_type") not in ("umt5", "t5", "mt5"):
        raise WanConvertError(f"{src / 'text_encoder'} is not a T5-family encoder (model_type={tconf.get('model_type')!r})")
    if int(tconf.get("d_model", -1)) != cfg.text_dim:
        raise WanConvertError(f"text encoder width {tconf.get('d_model')} != transformer text_dim {cfg.text_dim}")
    if not any((src / "text_encoder").glob("*.safetensors")):
        _load_safetensors_dir(src / "text_encoder", "text encoder")  # raises: pickle-only or no weights
    model = convert_wan(_load_safetensors_dir(tdir, "transformer"), conf, seed=seed, **options)

    from lingen_model.wan.vae import WanVAE, WanVAEConfig

    try:
        vae = WanVAE(WanVAEConfig(vconf))
    except (ImportError, TypeError, ValueError) as e:
        raise WanConvertError(f"{src / 'vae'}: {e}") from None
    vstate = _load_safetensors_dir(src / "vae", "VAE")
    result = vae.model.load_state_dict(vstate, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise WanConvertError(f"{src / 'vae'} weights do not match its config (e.g. {bad})")
    if vae.latent_channels != cfg.in_channels:
        raise WanConvertError(f"VAE z_dim {vae.latent_channels} != transformer in_channels {cfg.in_channels}")

    licence = next((p for p in (src / n for n in ("LICENSE", "LICENSE.txt", "LICENSE.md")) if p.is_file()), None)
    files = {"LICENSE": licence.read_text(errors="replace") if licence else _APACHE_POINTER,
             "NOTICE": _notice(src.resolve(), cfg, seed)}
    text_encoder = {"backend": "umt5", "path": str((src / "text_encoder").resolve()),
                    "tokenizer_path": str((src / "tokenizer").resolve()), "dim": cfg.text_dim, "max_length": cfg.text_len,
                    "dtype": "bfloat16"}  # Wan runs UMT5-XXL in bf16 (11 GB; 23 GB in float32)
    extra = {"source": {"format": "original" if original else "diffusers", "path": str(src.resolve()),
                        "transformer": conf.get("_class_name"), "diffusers_version": conf.get("_diffusers_version")},
             "license": "Apache-2.0"}
    if transformer is not None:
        extra["source"]["transformer_path"] = str(tdir.resolve())
    return save_checkpoint(out, model.to(dtype), vae, text_encoder, WAN_NATIVE,
                           {**WAN_SAMPLING, "negative_prompt": WAN_NEGATIVE_PROMPT},
                           name=name or out.name, extra=extra, files=files)
