"""Where the Hub, its cache and lingen's own folder are, read from the environment at call time."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lingen_model.errors import InputError, OperationError

# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from lingen_model.hub.registry import ModelEntry


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now or was set when huggingface_hub was imported."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The Hub URL to use now: ``HF_ENDPOINT`` if set, else huggingface_hub's default."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder now, with huggingface_hub's precedence: ``HF_HUB_CACHE``,
    legacy ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expandvars(base)).expanduser() / "huggingface" / "hub"


def check_local_dirs() -> None:
    """Check that lingen's folder (``LINGEN_HOME``) and the Hugging Face cache (``HF_HOME`` /
    ``HF_HUB_CACHE``) can be folders: no part of either path is an existing non-folder.

    Raises:
        InputError: naming the variable and the file in the way (before anything is deleted or fetched).
    """
    for what, path in (("LINGEN_HOME", lingen_home()), ("the Hugging Face cache (HF_HOME/HF_HUB_CACHE)", hub_cache_dir())):
        for part in (path, *path.parents):
            if part.exists() and not part.is_dir():
                raise InputError(f"{what} is {path}, but {part} is a file, not a folder")
            if part.exists():
                break


def lingen_home() -> Path:
    """lingen's own folder: ``LINGEN_HOME``, else ``$XDG_CACHE_HOME/lingen``, else ``~/.cache/lingen``."""
    if os.environ.get("LINGEN_HOME"):
        return Path(os.path.expandvars(os.environ["LINGEN_HOME"])).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "lingen"


def bundled_dir(entry: ModelEntry) -> Path:
    """Folder of a bundled entry inside the installed ``lingen_model`` package (may not exist)."""
    spec = importlib.util.find_spec("lingen_model")
    if spec is None or not spec.submodule_search_locations:
        raise OperationError("the lingen_model package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / (entry.path or entry.name)


