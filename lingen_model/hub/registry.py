"""The model registry: a validated YAML catalogue of models (``presets/models.yaml`` plus the user's
``$LINGEN_HOME/models.yaml``), repo ids, revisions and safe file names."""
from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from lingen_model.errors import InputError
from lingen_model.hub.env import lingen_home
from lingen_model.io.files import UNSAFE_SUFFIXES

# ---------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------

KINDS = ("bundled", "pipeline", "text_encoder", "vae")
REGISTRY_VERSION = 1
MANIFEST_NAME = "installed.json"
USER_REGISTRY_NAME = "models.yaml"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REF_RE = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/-]{1,255}(?<![/.])$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")

_ENTRY_KEYS = ("kind", "description", "license", "memory_tier", "repo", "revision", "files", "package", "path", "layout")
_FILE_KEYS = ("path", "sha256", "size", "pattern")
_LAYOUT_KEYS = ("config_keys", "weights", "denoiser_size", "text_encoder")


class RegistryError(InputError):
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
    ``lingen_model.models.config.DENOISER_CONFIGS`` size; ``text_encoder`` a registry entry."""

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
    """Path of the packaged ``models.yaml`` (see :func:`lingen_model.presets.presets_dir`)."""
    from lingen_model.presets import presets_dir

    return presets_dir() / "models.yaml"


def memory_tiers() -> tuple[str, ...]:
    """Tier names, smallest first, as ``presets/tiers.yaml`` defines them (:func:`lingen_model.presets.load_tiers`)."""
    from lingen_model.presets import load_tiers

    return tuple(load_tiers())


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


def _download_command(spec: RepoSpec) -> str:
    return f"lingen download {spec.label}"


def _escape_glob(name: str) -> str:
    """fnmatch pattern matching exactly ``name`` (``*``, ``?``, ``[`` bracketed)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else error.__class__.__name__
