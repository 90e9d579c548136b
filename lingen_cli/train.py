"""``lingen train CONFIG.yaml``: run a VAE, denoiser or distill training stage (resumable; torchrun for FSDP2)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from lingen_cli.common import fail


def train(
    config: Path = typer.Argument(..., help="Training YAML (see recipes/lingen-tiny/*.yaml)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override the total number of steps."),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", help="Override the run directory."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the per-process batch size."),
    export: Optional[Path] = typer.Option(
        None, "--export", help="Denoiser and distill stages: write the pipeline checkpoint that `lingen generate` loads here, "
                               "at every save and at the end (on a finished run: at once, without training)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Plain log lines instead of a progress bar."),
) -> None:
    """Train a stage; re-running the same command resumes from the run directory."""
    from lingen_model.training.config import load_train_config

    try:
        cfg = load_train_config(config, {"steps": steps, "run_dir": run_dir, "batch_size": batch_size})
    except ValueError as e:
        raise fail(str(e))
    if export is not None:
        if cfg["stage"] == "vae":
            raise fail("--export is for the denoiser and distill stages (a VAE run dir is itself what the denoiser "
                       "stage loads)")
        cfg["export"] = {**(cfg["export"] or {}), "dir": str(export)}
    if getattr(cfg.get("data"), "source", None) == "folder":
        from lingen_model.training.data import list_folder

        try:
            list_folder(cfg["data"].path)
        except (ValueError, OSError) as e:
            raise fail(f"{config}: data: {e}")
    import logging

    data_log = logging.getLogger("lingen.data")  # skipped clips: "warning: ..." lines on this run's stderr
    for h in [h for h in data_log.handlers if getattr(h, "lingen_cli", False)]:
        data_log.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.lingen_cli = True
    data_log.addHandler(handler)
    bars = not quiet and sys.stderr.isatty()
    try:
        trainer, result = _run(cfg, bars)
    except (ValueError, OSError) as e:
        raise fail(str(e), 1)
    from lingen_model.training.distributed import finish_distributed

    finish_distributed()  # torchrun: tear the process group down on every rank before exit
    if trainer.rank == 0:
        print(f"done: step {result['step']}, {result['elapsed_s'] / 60:.1f} min of training, run dir {cfg['run_dir']}",
              file=sys.stderr)


def _check_resume(trainer, cfg) -> None:
    if trainer.step > cfg["steps"]:
        raise fail(f"the run in {cfg['run_dir']} is already at step {trainer.step}, past the {cfg['steps']} steps asked "
                   "(--steps); give more steps or a new run_dir")


def _run(cfg, bars):
    from lingen_model.training.trainer import Trainer

    if not bars:
        trainer = _make(Trainer, cfg, lambda s: print(s, file=sys.stderr, flush=True), None)
        _check_resume(trainer, cfg)
        result = trainer.train()
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from lingen_cli.common import err_console

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=err_console) as progress:
            task = progress.add_task(f"train {cfg['stage']}", total=cfg["steps"], info="")

            def on_step(step: int, rec: dict) -> None:
                progress.update(task, completed=step, info=f"loss {rec['loss']:.4f}")

            trainer = _make(Trainer, cfg, progress.console.print, on_step)
            _check_resume(trainer, cfg)
            progress.update(task, completed=trainer.step)
            result = trainer.train()
    return trainer, result


def _make(cls, cfg, log, on_step):
    try:
        return cls(cfg, log=log, on_step=on_step)
    except (ValueError, FileNotFoundError) as e:
        raise fail(str(e))


def register(app: typer.Typer) -> None:
    """Add ``train`` to the app."""
    app.command("train")(train)
