"""Presets: hardware tiers (``presets/tiers.yaml``) and named sizes (``presets/sizes.yaml``).

Validated on load: unknown keys, missing keys or bad values raise ``InputError`` naming the
file and entry. ``pick_tier("auto")`` chooses from the detected device.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from lingen_model.errors import InputError


def presets_dir() -> Path:
    """Directory of the preset YAML files: ``lingen_model/preset_files`` when installed (pyproject
    maps the repo's ``presets/`` there), the repo's ``presets/`` when run from a checkout."""
    installed = Path(__file__).resolve().parent / "preset_files"
    return installed if (installed / "tiers.yaml").is_file() else Path(__file__).resolve().parent.parent / "presets"


@dataclass(frozen=True)
class Tier:
    """One hardware tier (see presets/tiers.yaml for the meaning of each field)."""

    name: str
    device: str
    min_memory_gb: float
    dtype: str
    text_encoder_offload: bool
    vae_chunk_frames: int
    max_params_m: float
    max_length_s: float


_TIER_TYPES = {"device": str, "min_memory_gb": (int, float), "dtype": str, "text_encoder_offload": bool,
               "vae_chunk_frames": int, "max_params_m": (int, float), "max_length_s": (int, float)}
_ALLOWED = {"device": ("cpu", "cuda"), "dtype": ("float32", "bfloat16", "float16")}


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"cannot read preset file {path}: {str(e).splitlines()[0]}") from None


@functools.lru_cache(maxsize=4)
def load_tiers(path: str | None = None) -> dict[str, Tier]:
    """Load and validate the tiers file → {name: Tier}. Raises InputError naming file and entry."""
    p = Path(path) if path else presets_dir() / "tiers.yaml"
    data = _load_yaml(p)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{p}: expected a mapping of tier names")
    tiers = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(f"{p}: tier {name!r} must be a mapping")
        unknown = sorted(set(entry) - set(_TIER_TYPES))
        missing = sorted(set(_TIER_TYPES) - set(entry))
        if unknown:
            raise InputError(f"{p}: tier {name!r} has unknown key(s): {', '.join(unknown)}")
        if missing:
            raise InputError(f"{p}: tier {name!r} is missing key(s): {', '.join(missing)}")
        for key, typ in _TIER_TYPES.items():
            val = entry[key]
            if not isinstance(val, typ) or (typ is not bool and isinstance(val, bool)):
                raise InputError(f"{p}: tier {name!r}: {key} has a bad value {val!r}")
            if key in _ALLOWED and val not in _ALLOWED[key]:
                raise InputError(f"{p}: tier {name!r}: {key} must be one of {', '.join(_ALLOWED[key])}, got {val!r}")
            if typ is not str and typ is not bool and val < 0:
                raise InputError(f"{p}: tier {name!r}: {key} must be >= 0, got {val!r}")
        tiers[str(name)] = Tier(name=str(name), **entry)
    return tiers


@functools.lru_cache(maxsize=4)
def load_sizes(path: str | None = None) -> dict[str, dict[str, str]]:
    """Load named resolutions and lengths → {"resolutions": {...}, "lengths": {...}}."""
    p = Path(path) if path else presets_dir() / "sizes.yaml"
    data = _load_yaml(p)
    if not isinstance(data, dict) or set(data) - {"resolutions", "lengths"}:
        raise InputError(f"{p}: expected only 'resolutions' and 'lengths' sections")
    out = {}
    for section in ("resolutions", "lengths"):
        entries = data.get(section) or {}
        if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
            raise InputError(f"{p}: '{section}' must map names to strings")
        out[section] = {str(k): v for k, v in entries.items()}
    return out


def detect_device() -> tuple[str, float]:
    """(``"cuda"`` or ``"cpu"``, total GPU memory in GiB — 0 on CPU)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_properties(0).total_memory / 2**30
    return "cpu", 0.0


def pick_tier(name: str = "auto") -> Tier:
    """The tier called ``name``, or for ``auto`` the largest that fits the detected device.

    Raises InputError for an unknown name (listing the known ones).
    """
    tiers = load_tiers()
    if name != "auto":
        if name not in tiers:
            raise InputError(f"unknown preset {name!r}; known: auto, {', '.join(tiers)}")
        return tiers[name]
    device, mem = detect_device()
    fitting = [t for t in tiers.values() if t.device == device and t.min_memory_gb <= mem + 0.5]
    if not fitting:
        return next(t for t in tiers.values() if t.device == "cpu")
    return max(fitting, key=lambda t: t.min_memory_gb)


def fields_of_tier() -> list[str]:
    """Names of the tier fields (for ``lingen info``)."""
    return [f.name for f in fields(Tier)]
