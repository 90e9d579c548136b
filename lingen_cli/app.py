"""The ``lingen`` Typer application: each command module registers its verbs here."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="lingen",
    help="Text-to-video generation at linear cost (LinGen, arXiv 2412.09856).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, each exposing ``register(app)``. Imports stay light: heavy work
# (torch, transformers) is imported inside the command functions.
_COMMAND_MODULES: list[str] = ["generate", "train", "eval", "info", "zoo", "benchmark", "convert", "preprocess"]


_MODULE_FILES = {"eval": "evaluate"}  # verb → module where they differ


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"lingen_cli.{_MODULE_FILES.get(name, name)}").register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()
