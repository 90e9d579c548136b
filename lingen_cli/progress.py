"""Per-phase progress: rich bars on a terminal, plain one-line summaries otherwise.

Phases of ``lingen generate``: load, encode text, denoise (step k/N with ETA),
decode (chunk k/M), write. Everything goes to stderr, so ``--json`` output on stdout
stays machine-readable.
"""
from __future__ import annotations

import sys
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lingen_cli.common import err_console

PHASE_LABELS = {"load": "load model", "encode": "encode text", "denoise": "denoise", "decode": "VAE decode",
                "write": "write mp4"}


class PhaseProgress:
    """Context manager; call ``update(phase, done, total)`` from the pipeline's progress callback.

    ``bars=False`` prints one plain line per finished phase (for --quiet and non-terminals).
    """

    def __init__(self, bars: bool | None = None, prefix: str = ""):
        self.bars = sys.stderr.isatty() if bars is None else bars
        self.prefix = prefix
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._start: dict[str, float] = {}
        self.durations: dict[str, float] = {}

    def __enter__(self) -> "PhaseProgress":
        if self.bars:
            self._progress = Progress(
                TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=err_console, transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, phase: str, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` units of ``phase`` are finished."""
        now = time.perf_counter()
        if phase not in self._start:
            self._start[phase] = now
            if self._progress is not None:
                self._tasks[phase] = self._progress.add_task(self.prefix + PHASE_LABELS.get(phase, phase), total=total)
        if self._progress is not None:
            self._progress.update(self._tasks[phase], completed=done, total=total)
        if done >= total and phase not in self.durations:
            self.durations[phase] = now - self._start[phase]
            if self._progress is None:
                unit = {"denoise": " steps", "decode": " chunks"}.get(phase, "")
                print(f"{self.prefix}{PHASE_LABELS.get(phase, phase)}: {total}{unit} in {self.durations[phase]:.1f}s",
                      file=sys.stderr, flush=True)


def rich_tqdm_class(progress: Progress) -> type:
    """A ``tqdm`` subclass that draws into the rich ``progress`` display instead of printing its
    own bar, for huggingface_hub's ``tqdm_class`` (one display, no tqdm lines mixed into rich
    output). Each bar huggingface_hub opens becomes a rich task; ``update(n)`` advances it."""
    from tqdm.auto import tqdm

    class RichTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k != "name"}  # huggingface_hub's own keyword
            desc = kwargs.get("desc") or "download"
            kwargs["disable"] = True  # tqdm draws nothing; rich does
            super().__init__(*args, **kwargs)
            self._task = progress.add_task(str(desc)[:40], total=kwargs.get("total"))

        def update(self, n=1):
            progress.advance(self._task, n or 0)

        def reset(self, total=None):
            progress.reset(self._task, total=total)

        def set_description(self, desc=None, refresh=True):
            progress.update(self._task, description=str(desc or "")[:40])

        def set_description_str(self, desc=None, refresh=True):
            self.set_description(desc)

        def close(self):
            task = progress._tasks.get(self._task)  # noqa: SLF001 (rich has no public lookup)
            if task is not None and task.total is None:
                progress.update(self._task, total=task.completed)

        def __setattr__(self, name, value):
            object.__setattr__(self, name, value)
            if name == "total" and "_task" in self.__dict__:
                progress.update(self._task, total=value)

    return RichTqdm


def download_progress() -> Progress:
    """The rich display ``lingen download`` shows on stderr: file, bar, bytes, speed, ETA."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    return Progress(TextColumn("{task.description:<40}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False)
