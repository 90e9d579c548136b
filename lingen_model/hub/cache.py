"""Find cached models (``resolve_model`` for ``lingen generate --model``), list them
(``installed_models`` for ``lingen info``/``lingen models``) and remove them."""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingen_model.errors import InputError, LinGenError, OperationError
from lingen_model.hub.download import _registry_or_fail, download, resolve_target
from lingen_model.hub.env import bundled_dir, hub_cache_dir, is_offline
from lingen_model.hub.manifest import _read_manifest, _record_key, _update_manifest
from lingen_model.hub.registry import (
    _REPO_RE,
    ModelEntry,
    PlannedFile,
    RepoSpec,
    check_layout,
)
from lingen_model.hub.snapshot import (
    _expected_files,
    _locate_cached,
    _snapshot_problems,
)

# ---------------------------------------------------------------------------------------
# resolve_model: what `lingen generate --model` calls
# ---------------------------------------------------------------------------------------


def resolve_model(name_or_path: str | None, allow_download: bool = True) -> Path:
    """Folder of the model to load for ``lingen generate --model``.

    Accepts, in this order: ``None`` (the embedded lingen-tiny), an existing local folder
    (must hold ``config.json``), a registry name, or ``ORG/REPO[@REV]``. Hub models come
    from the cache; when absent and ``allow_download`` and not offline, they are downloaded
    first (with progress). No network call is made when the cache holds a complete snapshot.

    Raises:
        LinGenError: one-line reason: unknown name, bad repo id, embedded model not installed,
            local folder without config.json, incomplete cached snapshot, or a missing model
            (naming the ``lingen download`` command that would fetch it).
    """
    if name_or_path is None:
        name_or_path = "lingen-tiny"
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise InputError(f"{local} is not a lingen checkpoint folder: it has no config.json")
        return local.resolve()
    registry = _registry_or_fail(None)
    entry = registry.get(name_or_path)
    if entry is not None and entry.source_kind == "bundled":
        folder = bundled_dir(entry)
        if not (folder / "config.json").is_file():
            raise OperationError(f"the embedded model {entry.name} is not installed (expected {folder}/config.json); "
                           "reinstall lingen")
        return folder
    if entry is not None and entry.source_kind == "package":
        try:
            importlib.metadata.distribution(entry.package or "")
        except importlib.metadata.PackageNotFoundError:
            raise OperationError(f"{entry.name} is not installed: run `pip install {entry.package}`") from None
        raise InputError(f"{entry.name} is a text encoder loaded from the {entry.package} package, not a model folder")
    if entry is None and ("/" in name_or_path or os.sep in name_or_path) and not _REPO_RE.fullmatch(name_or_path.partition("@")[0]):
        raise InputError(f"model folder {name_or_path} does not exist")
    spec = resolve_target(name_or_path, None, registry)
    try:
        return _locate_cached(spec)[0]
    except LinGenError as missing:
        if not allow_download or is_offline():
            why = "offline (HF_HUB_OFFLINE=1)" if is_offline() else "--no-download"
            raise type(missing)(f"{missing} [{why}]") from None
    try:
        result = download(spec.label if spec.entry else name_or_path, registry=registry)
    except LinGenError as e:
        if spec.entry is None and isinstance(e, InputError):  # e.g. 404: maybe a mistyped local path
            raise InputError(f"{e} (and there is no local folder {name_or_path})") from None
        raise
    assert result.path is not None
    return result.path


# ---------------------------------------------------------------------------------------
# installed_models: what `lingen info` lists
# ---------------------------------------------------------------------------------------


def _tree_size(root: Path, files: list[PlannedFile] | None = None) -> int:
    if files:
        paths = [root / f.path for f in files]
    else:
        paths = [p for p in root.rglob("*") if ".cache" not in p.relative_to(root).parts]
    total = 0
    for p in paths:
        try:
            if p.is_file():
                total += p.stat().st_size  # follows the cache symlink to the blob
        except OSError:
            pass
    return total


def installed_models(registry: dict[str, ModelEntry] | None = None) -> list[dict[str, Any]]:
    """Models present on this machine, for ``lingen info``. No network call.

    Covers the bundled entries, every cached snapshot of a registry entry's repo and every
    model ``lingen download`` recorded (repo ids, ``--local-dir`` folders).

    Returns:
        one dict per model: ``name`` (registry name or None), ``kind``, ``repo`` (None for
        bundled), ``revision`` (commit, or None), ``size_bytes`` (on disk, bytes),
        ``complete`` (bool), ``missing`` (list of problems), ``path`` (str).
    """
    registry = _registry_or_fail(registry)
    out: list[dict[str, Any]] = []
    for entry in registry.values():
        if entry.source_kind != "bundled":
            continue
        folder = bundled_dir(entry)
        if folder.is_dir():
            problems = check_layout(folder, entry.layout) if entry.layout else []
            out.append(dict(name=entry.name, kind=entry.kind, repo=None, revision=None, size_bytes=_tree_size(folder),
                            complete=not problems, missing=problems, path=str(folder)))

    by_repo: dict[str, list[ModelEntry]] = {}
    for entry in registry.values():
        if entry.source_kind == "hub" and entry.repo:
            by_repo.setdefault(entry.repo, []).append(entry)
    records = _read_manifest()
    recorded_repos = {r["repo"] for r in records if not r.get("local_dir")}
    seen: set[tuple] = set()
    cache = hub_cache_dir()
    try:
        from huggingface_hub import scan_cache_dir

        cache_info = scan_cache_dir(cache) if cache.is_dir() else None
    except Exception:  # CacheNotFound or a corrupted cache: report what lingen recorded
        cache_info = None
    for repo_info in sorted(cache_info.repos if cache_info else [], key=lambda r: r.repo_id):
        if repo_info.repo_type != "model" or (repo_info.repo_id not in by_repo and repo_info.repo_id not in recorded_repos):
            continue
        for rev in sorted(repo_info.revisions, key=lambda r: r.commit_hash):
            entries = by_repo.get(repo_info.repo_id, [])
            entry = next((e for e in entries if e.revision == rev.commit_hash or e.revision in rev.refs), None)
            spec = RepoSpec(repo_info.repo_id, entry.revision if entry else rev.commit_hash, entry)
            root = Path(rev.snapshot_path)
            files = _expected_files(spec, rev.commit_hash, None, root)
            problems = _snapshot_problems(root, files) if files else ([] if any(root.iterdir()) else ["no files"])
            out.append(dict(name=entry.name if entry else None, kind=entry.kind if entry else None, repo=repo_info.repo_id,
                            revision=rev.commit_hash, size_bytes=_tree_size(root, files), complete=not problems,
                            missing=problems, path=str(root)))
            seen.add((repo_info.repo_id, rev.commit_hash, None))
    for r in records:
        key = _record_key(r)
        if key in seen or not r.get("local_dir"):
            continue
        root = Path(r["local_dir"])
        if not root.is_dir():
            continue
        files = [PlannedFile(f["path"], f.get("size")) for f in r.get("files", [])]
        problems = _snapshot_problems(root, files)
        entry = registry.get(r.get("name") or "")
        out.append(dict(name=r.get("name"), kind=entry.kind if entry else None, repo=r["repo"], revision=r.get("commit"),
                        size_bytes=_tree_size(root, files), complete=not problems and bool(r.get("complete")),
                        missing=problems, path=str(root)))
    return out


# ---------------------------------------------------------------------------------------
# remove
# ---------------------------------------------------------------------------------------


@dataclass
class RemovePlan:
    """Cached revisions of one repo to delete: ``commits``, their snapshot ``paths`` and the bytes freed."""

    spec: RepoSpec
    commits: list[str]
    paths: list[Path]
    freed_bytes: int
    strategy: Any = None


def plan_remove(target: str, registry: dict[str, ModelEntry] | None = None) -> RemovePlan:
    """What :func:`remove` would delete from the huggingface_hub cache (nothing is deleted).

    ``NAME`` / ``ORG/REPO@REV`` select the cached revisions whose commit or ref matches the
    revision; a bare ``ORG/REPO`` selects all of them.

    Raises:
        LinGenError: unknown name, bundled/package/template entries, or nothing cached.
    """
    from lingen_model.hub.env import check_local_dirs

    check_local_dirs()  # before anything is deleted: the manifest must be writable afterwards
    registry = _registry_or_fail(registry)
    entry = registry.get(target)
    if entry is not None and entry.source_kind == "bundled":
        raise InputError(f"{entry.name} is bundled with lingen and cannot be removed")
    spec = resolve_target(target, None, registry)
    from huggingface_hub import scan_cache_dir

    cache = hub_cache_dir()
    try:
        info = scan_cache_dir(cache)
    except Exception:
        info = None
    commits: list[str] = []
    paths: list[Path] = []
    for repo_info in info.repos if info else []:
        if repo_info.repo_type != "model" or repo_info.repo_id != spec.repo:
            continue
        for rev in repo_info.revisions:
            if spec.revision is None or rev.commit_hash == spec.revision or spec.revision in rev.refs:
                commits.append(rev.commit_hash)
                paths.append(Path(rev.snapshot_path))
    if not commits:
        raise InputError(f"{spec.label} is not installed (nothing cached in {cache})")
    strategy = info.delete_revisions(*commits)
    return RemovePlan(spec=spec, commits=commits, paths=paths, freed_bytes=strategy.expected_freed_size, strategy=strategy)


def remove(target: str, registry: dict[str, ModelEntry] | None = None) -> RemovePlan:
    """Delete a model's cached revisions (huggingface_hub's ``delete_revisions``) and lingen's records of them.

    Folders made with ``--local-dir`` are never deleted. Returns the executed plan
    (``freed_bytes`` in bytes).

    Raises:
        LinGenError: see :func:`plan_remove`.
    """
    plan = plan_remove(target, registry)
    plan.strategy.execute()
    gone = set(plan.commits)
    _update_manifest(lambda rs: [
        r for r in rs if not (r.get("repo") == plan.spec.repo and r.get("commit") in gone and not r.get("local_dir"))
    ])
    return plan


