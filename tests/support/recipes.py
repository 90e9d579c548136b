"""Load a script of ``recipes/lingen-tiny/`` (not a package) as a module, fresh on each call, for its tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "lingen-tiny"


def load_recipe(name: str) -> ModuleType:
    """The module of ``recipes/lingen-tiny/{name}.py``, executed anew (its patches are not installed by loading).

    Raises FileNotFoundError when there is no such script."""
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
