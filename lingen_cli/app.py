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
    """Console-script entry point: runs the app; Ctrl-C at any moment → one line and exit code 130;
    a closed stdout never produces a traceback."""
    import sys

    from lingen_cli.interrupt import EXIT_INTERRUPTED, STATE, arm

    arm()
    code = 0
    try:
        rv = app(standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as e:  # click's Exit (typer vendors click, so classes are taken from typer)
        code = e.exit_code
    except typer.Abort:
        STATE["interrupted"] = True
    except KeyboardInterrupt:
        STATE["interrupted"] = True
    except Exception as e:
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):  # click's ClickException
            if not STATE["interrupted"]:
                e.show()
            code = e.exit_code
        elif not STATE["interrupted"]:
            raise
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        if not STATE["interrupted"]:
            raise
    try:  # the command is over: a late Ctrl-C must not interrupt the interpreter's shutdown (threads, atexit)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    if STATE["interrupted"]:
        if not STATE["reported"]:
            STATE["reported"] = True
            print("error: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing more can reach the reader; no traceback at exit
    sys.exit(code)
