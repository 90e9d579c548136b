"""lingen's record of what ``lingen download`` fetched (``$LINGEN_HOME/installed.json``): repo,
commit, file list with hashes; lets offline runs tell a complete snapshot from a partial one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lingen_model.hub.env import lingen_home
from lingen_model.hub.registry import MANIFEST_NAME
from lingen_model.io.files import atomic_path

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


