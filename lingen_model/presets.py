"""Presets: hardware tiers (``presets/tiers.yaml``) and named sizes (``presets/sizes.yaml``).

Validated on load: unknown keys, missing keys or bad values raise ``InputError`` naming the
file and entry. ``pick_tier("auto")`` chooses from the detected device.
"""
from __future__ import annotations

import functools
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lingen_model.errors import InputError
from lingen_model.schema import from_dict


def presets_dir() -> Path:
    """Directory of the preset YAML files: ``lingen_model/preset_files`` when installed (pyproject
    maps the repo's ``presets/`` there), the repo's ``presets/`` when run from a checkout."""
    installed = Path(__file__).resolve().parent / "preset_files"
    return installed if (installed / "tiers.yaml").is_file() else Path(__file__).resolve().parent.parent / "presets"


@dataclass(frozen=True)
class Tier:
    """One hardware tier (see presets/tiers.yaml for the meaning of each field). The tier's
    ``name`` is its key in the file; every other field must be given there."""

    device: str = field(metadata={"choices": ("cpu", "cuda")})
    min_memory_gb: float = field(metadata={"ge": 0})
    dtype: str = field(metadata={"choices": ("float32", "bfloat16", "float16")})
    text_encoder_offload: bool
    vae_chunk_frames: int = field(metadata={"ge": 0})
    max_params_m: float = field(metadata={"ge": 0})
    max_length_s: float = field(metadata={"ge": 0})
    name: str = ""


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
        if isinstance(entry, dict) and "name" in entry:
            raise InputError(f"{p}: tier {name!r}: unknown key(s) name (the tier's name is its key)")
        tier = from_dict(Tier, entry, f"{p}: tier {name!r}")
        tiers[str(name)] = dataclasses.replace(tier, name=str(name))
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
