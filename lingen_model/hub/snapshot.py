"""Locate a complete cached snapshot of a repo (hub cache or ``--local-dir``) and list its expected files."""
from __future__ import annotations

import fnmatch
from pathlib import Path

from lingen_model.errors import OperationError
from lingen_model.hub.env import hub_cache_dir
from lingen_model.hub.manifest import _find_record, _read_manifest
from lingen_model.hub.registry import (
    PlannedFile,
    RepoSpec,
    _download_command,
    _escape_glob,
    _first_line,
    is_unsafe_type,
    unsafe_path_reason,
)

# ---------------------------------------------------------------------------------------
# Locating cached models
# ---------------------------------------------------------------------------------------


def _expected_files(spec: RepoSpec, commit: str, local_dir: str | None, root: Path) -> list[PlannedFile]:
    """Files a complete snapshot must hold: lingen's download record, else the registry entry,
    else huggingface_hub's cached tree listing (minus refused types); sizes where known."""
    record = _find_record(spec.repo, commit, local_dir)
    entry = spec.entry
    use_registry = entry is not None and (entry.revision == spec.revision)
    if record is not None:
        out = {f["path"]: PlannedFile(path=f["path"], size=f.get("size"), sha256=f.get("sha256"), hash_source=f.get("hash_source"))
               for f in record.get("files", [])}
        for fs in entry.files if entry is not None else ():
            if fs.path is None:
                continue
            pf = out.setdefault(fs.path, PlannedFile(fs.path, None))
            if use_registry:
                pf.size = fs.size if fs.size is not None else pf.size
                if fs.sha256:
                    pf.sha256, pf.hash_source = fs.sha256, "registry"
        return list(out.values())
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = {f.path: f.size for f in get_cached_repo_tree(spec.repo, revision=commit, cache_dir=str(hub_cache_dir()),
                                                             local_dir=local_dir)}
    except (CachedRepoTreeNotFoundError, ValueError, OSError):
        tree = None
    if entry is not None:
        out: dict[str, PlannedFile] = {}
        for fs in entry.files:
            if fs.path is not None:
                out[fs.path] = PlannedFile(fs.path, fs.size if use_registry else None,
                                           fs.sha256 if use_registry else None, "registry" if use_registry and fs.sha256 else None)
            else:
                names = tree if tree is not None else {
                    p.relative_to(root).as_posix(): None for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts
                }
                for p in names:
                    if fnmatch.fnmatchcase(p, fs.pattern or "") and not is_unsafe_type(p):
                        out.setdefault(p, PlannedFile(p, names.get(p)))
        for p, pf in out.items():
            if pf.size is None and tree is not None:
                pf.size = tree.get(p)
        return list(out.values())
    if tree is not None:
        return [PlannedFile(p, s) for p, s in tree.items() if not is_unsafe_type(p) and not unsafe_path_reason(p)]
    return []


def _snapshot_problems(root: Path, files: list[PlannedFile]) -> list[str]:
    problems = []
    for pf in files:
        f = root / pf.path
        if not f.is_file():
            problems.append(f"missing {pf.path}")
        elif pf.size is not None and f.stat().st_size != pf.size:
            problems.append(f"{pf.path} has {f.stat().st_size} bytes, expected {pf.size}")
    return problems


def _locate_cached(spec: RepoSpec, local_dir: str | None = None) -> tuple[Path, list[PlannedFile], str]:
    """Find a complete cached snapshot of ``spec`` without any network call.

    Returns:
        (folder, expected files, commit).

    Raises:
        LinGenError (exit 1): not cached (names the ``lingen download`` command), or cached but
            incomplete (names the missing files and the command that completes it).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    cmd = _download_command(spec)
    hf_says: str | None = None
    try:
        folder = snapshot_download(
            spec.repo, revision=spec.revision, cache_dir=str(hub_cache_dir()), local_dir=local_dir,
            local_files_only=True, allow_patterns=_allow_patterns(spec),
        )
    except IncompleteSnapshotError as e:
        # huggingface_hub compared the folder with its cached tree listing; list the gaps ourselves below.
        folder, hf_says = e.snapshot_path, _first_line(e)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise OperationError(f"{spec.label} is not in the cache ({hub_cache_dir()}); run `{cmd}` to fetch it") from None
    root = Path(folder)
    commit = root.name if local_dir is None else (_local_commit(spec, local_dir) or "")
    files = _expected_files(spec, commit, local_dir, root)
    problems = _snapshot_problems(root, files)
    if not files and not any(root.iterdir()):
        problems.append("no files")
    if not problems and hf_says:
        problems.append(hf_says)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; … {len(problems) - 3} more" if len(problems) > 3 else "")
        raise OperationError(f"the cached snapshot of {spec.label} is incomplete ({shown}); run `{cmd}` to complete it")
    return root, files, commit


def _local_commit(spec: RepoSpec, local_dir: str) -> str | None:
    for r in _read_manifest():
        if r.get("repo") == spec.repo and r.get("local_dir") == local_dir:
            return r.get("commit")
    return None


def _allow_patterns(spec: RepoSpec) -> list[str] | None:
    """Patterns that keep huggingface_hub's offline completeness check to the files lingen fetches."""
    if spec.entry is not None:
        return [_escape_glob(fs.path) if fs.path else (fs.pattern or "") for fs in spec.entry.files]
    return None


