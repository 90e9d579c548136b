"""lingen checkpoints: a directory with ``config.json`` and safetensors weights.

Layout::

    <dir>/config.json            {"format": "lingen", "version": 1, "name": ...,
                                  "denoiser": DenoiserConfig, "vae": VAEConfig,
                                  "text_encoder": {"backend": "minilm"},
                                  "native": {"fps": 8, "height": 128, "width": 128},
                                  "sampling": {"steps": 20, "cfg_scale": 5.0}}
    <dir>/denoiser.safetensors   Denoiser.state_dict()
    <dir>/vae.safetensors        CausalVideoVAE.state_dict()

Loading never executes code (safetensors only). Saving writes into a temporary sibling
directory and renames it, so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from lingen_model.errors import InputError

REQUIRED_KEYS = ("denoiser", "vae", "text_encoder", "native")
NATIVE_KEYS = ("fps", "height", "width")
WEIGHT_FILES = {"denoiser": "denoiser.safetensors", "vae": "vae.safetensors"}


class CheckpointError(InputError):
    """A checkpoint directory is missing, incomplete or corrupt (one-line message)."""


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and validate ``<path>/config.json``.

    Raises:
        CheckpointError: no directory, no/invalid JSON, missing keys (named), bad ``native`` values.
    """
    path = Path(path)
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise CheckpointError(f"{cfg_path} is missing key(s): {', '.join(missing)}")
    native = cfg["native"]
    if not isinstance(native, dict) or any(k not in native for k in NATIVE_KEYS):
        raise CheckpointError(f"{cfg_path}: 'native' must hold {', '.join(NATIVE_KEYS)}")
    for k in NATIVE_KEYS:
        if not isinstance(native[k], (int, float)) or native[k] <= 0:
            raise CheckpointError(f"{cfg_path}: native.{k} must be a positive number, got {native[k]!r}")
    return cfg


def _load_weights(module: torch.nn.Module, file: Path, what: str) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise CheckpointError(f"{what} weights missing: {file}")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{file} is truncated or corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s) e.g. {unexpected[0]}")
    if reshaped:  # load_state_dict would raise a RuntimeError for these, whatever ``strict`` says
        k = reshaped[0]
        problems.append(f"{len(reshaped)} tensor(s) of another shape e.g. {k} {tuple(state[k].shape)} in the file, "
                        f"{tuple(expected[k].shape)} for the config")
    if problems:
        raise CheckpointError(f"{file} does not match its config: {'; '.join(problems)}")
    module.load_state_dict(state)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    max_params: float | None = None):
    """Load ``(denoiser, vae, config_dict)`` from a checkpoint directory (eval mode).

    The config's sizes are checked before anything is built: absolute caps, and the denoiser's
    parameter count (from the config alone) against ``max_params``
    (:func:`lingen_model.generation.estimate.check_checkpoint_config`).

    Raises:
        CheckpointError: see :func:`read_config`, plus missing/truncated/corrupt or
            mismatching safetensors files, config values the models reject, sizes past a cap.
    """
    from lingen_model.models.config import DenoiserConfig
    from lingen_model.models.denoiser import Denoiser
    from lingen_model.models.vae import CausalVideoVAE, VAEConfig

    path = Path(path)
    cfg = read_config(path)
    from lingen_model.generation.estimate import check_checkpoint_config

    try:
        check_checkpoint_config(cfg, str(path / "config.json"), max_params)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    try:
        if isinstance(cfg["denoiser"], dict) and cfg["denoiser"].get("arch") == "wan":  # Wan-converted (lingen convert)
            from lingen_model.wan.denoiser import WanDenoiser, WanDenoiserConfig

            denoiser = WanDenoiser(WanDenoiserConfig.from_dict(cfg["denoiser"]))
        else:
            denoiser = Denoiser(DenoiserConfig.from_dict(cfg["denoiser"], "denoiser"))
        if isinstance(cfg["vae"], dict) and cfg["vae"].get("arch") == "wan":
            from lingen_model.wan.vae import WanVAE, WanVAEConfig

            vae = WanVAE(WanVAEConfig.from_dict(cfg["vae"]))
        else:
            vae = CausalVideoVAE(VAEConfig.from_dict(cfg["vae"], "vae"))
    except (TypeError, ValueError, ImportError) as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None
    if denoiser.config.in_channels != vae.latent_channels:
        raise CheckpointError(
            f"{path / 'config.json'}: denoiser in_channels {denoiser.config.in_channels} != VAE latent_channels {vae.latent_channels}")
    _load_weights(denoiser, path / WEIGHT_FILES["denoiser"], "denoiser")
    _load_weights(vae, path / WEIGHT_FILES["vae"], "VAE")
    denoiser.to(device=device, dtype=dtype).eval()
    vae.to(device=device).eval()  # the VAE stays float32: it is small and decode quality matters
    return denoiser, vae, cfg


def save_checkpoint(path: str | Path, denoiser, vae, text_encoder: dict, native: dict,
                    sampling: dict | None = None, name: str | None = None, extra: dict | None = None,
                    files: dict[str, str] | None = None) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename; an old one is replaced).

    Args:
        denoiser: a :class:`~lingen_model.models.denoiser.Denoiser`; vae: a ``CausalVideoVAE``.
        text_encoder: the text-encoder spec (see ``text_encoder.build_text_encoder``).
        native: ``{"fps", "height", "width"}`` the model was trained at (frames/s, pixels).
        sampling: default sampler settings (``steps``, ``cfg_scale``, ...).
        files: extra text files to write beside the weights, ``{name: text}`` (e.g. LICENSE, NOTICE).
    Returns the final path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = {
        "format": "lingen", "version": 1, "name": name or path.name,
        "denoiser": denoiser.config.to_dict(), "vae": vae.config.to_dict(),
        "text_encoder": dict(text_encoder), "native": dict(native), "sampling": dict(sampling or {}),
    }
    if extra:
        cfg.update(extra)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in denoiser.state_dict().items()}, str(tmp / WEIGHT_FILES["denoiser"]))
        save_file({k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()}, str(tmp / WEIGHT_FILES["vae"]))
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        for fname, text in (files or {}).items():
            (tmp / Path(fname).name).write_text(text)
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():  # mkdtemp/safetensors give 0700/0600: use the usual permissions
            os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "ckpt")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def average_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """Write the uniform average of the denoiser weights of ``paths`` to the checkpoint ``out``.

    Checkpoint averaging along one training run (Vaswani et al. 2017, §6.1; stochastic weight
    averaging, Izmailov et al. 2018): the mean of EMA snapshots taken a few hundred steps apart
    smooths the step-to-step noise that a single snapshot carries. Every tensor is averaged in
    float64 and stored in float32. The VAE, text-encoder spec, native size, sampling defaults
    and other config keys come from the last path; ``training.averaged_steps`` lists the training
    step of each input (``null`` where a checkpoint does not record it). Written atomically
    (see :func:`save_checkpoint`); ``out`` may be one of the inputs.

    Args:
        paths: one or more checkpoint directories with the same denoiser config and identical
            VAE weights (snapshots of one run).
        out: the directory to write.

    Returns:
        The final path.

    Raises:
        CheckpointError: no paths, an unreadable checkpoint (see :func:`load_checkpoint`), a
            denoiser config that differs from the first one's, or VAE weights that differ.
    """
    if not paths:
        raise CheckpointError("average_checkpoints needs at least one checkpoint")
    total: dict[str, torch.Tensor] = {}
    first_cfg = first_vae = None
    steps = []
    for p in paths:
        denoiser, vae, cfg = load_checkpoint(p)
        if first_cfg is None:
            first_cfg, first_vae = cfg, vae.state_dict()
            total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in denoiser.state_dict().items()}
        elif cfg["denoiser"] != first_cfg["denoiser"]:
            raise CheckpointError(f"{p}: denoiser config differs from that of {paths[0]}; only snapshots of one run can be averaged")
        elif any(not torch.equal(v, first_vae[k]) for k, v in vae.state_dict().items()):
            raise CheckpointError(f"{p}: VAE weights differ from those of {paths[0]}; only snapshots of one run can be averaged")
        for k, v in denoiser.state_dict().items():
            total[k] += v.double()
        steps.append(cfg.get("training", {}).get("steps"))
    with torch.no_grad():
        for k, v in denoiser.state_dict().items():
            v.copy_((total[k] / len(paths)).to(v.dtype))
    extra = {k: v for k, v in cfg.items() if k not in ("format", "version", "name", "sampling", *REQUIRED_KEYS)}
    extra["training"] = {**cfg.get("training", {}), "averaged_steps": steps}
    return save_checkpoint(out, denoiser, vae, cfg["text_encoder"], cfg["native"], cfg.get("sampling"),
                           name=cfg.get("name"), extra=extra)
