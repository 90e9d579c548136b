"""A small stand-in for the Hugging Face Hub, served on 127.0.0.1 for the zoo tests.

It answers the four requests that ``huggingface_hub`` 2.x makes for a model download
(measured against huggingface_hub 2.4 with the ``httpx2`` transport):

- ``GET  /api/models/{repo}/revision/{rev}``            → ``{"id", "sha", "siblings"}``
  (``GET /api/models/{repo}`` — no revision given — answers for ``main``)
- ``GET  /api/models/{repo}/tree/{rev}?recursive=true`` → ``[{"type", "path", "size", "oid"}, ...]``;
  LFS files (weights) also carry ``"lfs": {"oid": sha256, "size", "pointerSize"}``, as on the Hub
- ``HEAD /{repo}/resolve/{rev}/{file}``                 → ``ETag``, ``X-Repo-Commit``, ``Content-Length``
- ``GET  /{repo}/resolve/{rev}/{file}``                 → the bytes (``Range: bytes=N-`` → 206)

Errors carry the Hub's ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) so that huggingface_hub raises its specific exceptions. Any other
path answers 404 (huggingface_hub's side look-ups, e.g. ``/api/agent-harnesses``, land
here when the tests point ``constants.ENDPOINT`` at this server).

Faults for the tests, armed per (repo, file):

- :meth:`FakeHub.cut_next_get` — the next GET sends the headers (full ``Content-Length``)
  and the first ``n`` bytes of the body, then closes the socket: a connection cut mid-file.
- :meth:`FakeHub.fail_gets` — the next ``k`` GETs answer ``500``.
- :meth:`FakeHub.add_repo` with ``lfs_sha256={path: hex}`` — the listing announces that LFS
  sha256 instead of the content's (a corrupted upload or a tampered mirror).

Every request is logged in :attr:`FakeHub.requests` for assertions.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


def git_blob_oid(data: bytes) -> str:
    """Git's object id of a blob: sha1 over ``b"blob {len}\\0" + data`` (40 hex)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_hex(data: bytes) -> str:
    """sha256 of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeRepo:
    """One model repository at one commit; ``refs`` maps branch/tag names to that commit."""

    repo_id: str
    files: dict[str, bytes]
    sha: str
    refs: dict[str, str] = field(default_factory=dict)
    lfs_sha256: dict[str, str] = field(default_factory=dict)  # announced LFS sha256 overrides

    def lfs_info(self, path: str) -> dict | None:
        """The tree listing's ``lfs`` object of an LFS file (None for a plain git file)."""
        if not path.endswith(LFS_SUFFIXES):
            return None
        data = self.files[path]
        return {"oid": self.lfs_sha256.get(path, sha256_hex(data)), "size": len(data), "pointerSize": 134}

    def etag(self, path: str) -> str:
        """The Hub's ETag: sha256 of the content for LFS files, the git blob id otherwise."""
        data = self.files[path]
        return sha256_hex(data) if path.endswith(LFS_SUFFIXES) else git_blob_oid(data)


@dataclass
class Request:
    """One logged request: method, repo-relative path (unquoted) and the Range header if any."""

    method: str
    path: str
    range: str | None


class FakeHub:
    """A threaded HTTP server imitating the Hub's model-download API (see module docstring).

    Use as a context manager or call :meth:`start` / :meth:`stop`. :attr:`url` is the
    endpoint to put in ``HF_ENDPOINT``.
    """

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Request] = []
        self._cuts: dict[tuple[str, str], int] = {}
        self._fails: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes], refs: tuple[str, ...] = ("main",),
                 lfs_sha256: dict[str, str] | None = None) -> str:
        """Publish ``files`` (path → bytes) as ``repo_id`` at a fresh random commit; return its 40-hex sha.

        ``lfs_sha256`` (path → 64 hex) replaces the LFS sha256 the tree listing announces for those files.
        """
        sha = secrets.token_hex(20)
        self.repos[repo_id] = FakeRepo(repo_id, dict(files), sha, {r: sha for r in refs}, dict(lfs_sha256 or {}))
        return sha

    def cut_next_get(self, repo_id: str, path: str, after_bytes: int) -> None:
        """Make the next GET of ``path`` close the connection after ``after_bytes`` body bytes."""
        with self._lock:
            self._cuts[(repo_id, path)] = after_bytes

    def fail_gets(self, repo_id: str, path: str, times: int) -> None:
        """Make the next ``times`` GETs of ``path`` answer HTTP 500."""
        with self._lock:
            self._fails[(repo_id, path)] = times

    def gets_of(self, repo_id: str, path: str) -> list[Request]:
        """The logged GET requests of one file."""
        target = f"/{repo_id}/resolve/"
        return [r for r in self.requests if r.method == "GET" and r.path.startswith(target) and r.path.endswith("/" + path)]

    # -- life cycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults (called from handler threads) -------------------------------------------
    def _take_cut(self, key: tuple[str, str]) -> int | None:
        with self._lock:
            return self._cuts.pop(key, None)

    def _take_fail(self, key: tuple[str, str]) -> bool:
        with self._lock:
            left = self._fails.get(key, 0)
            if left <= 0:
                return False
            self._fails[key] = left - 1
            return True


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<op>revision|tree)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # silence the default stderr log
        pass

    # -- helpers ------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, payload: object) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, extra: dict[str, str] | None = None, head: bool = False) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}
        headers.update(extra or {})
        self._send(status, b"" if head else json.dumps({"error": code}).encode(), headers, head=head)

    def _repo_at(self, repo_id: str, rev: str, head: bool = False) -> FakeRepo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", head=head)
            return None
        if rev != repo.sha and rev not in repo.refs:
            self._error(404, "RevisionNotFound", head=head)
            return None
        return repo

    # -- verbs --------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.fake.requests.append(Request("HEAD" if head else "GET", path, self.headers.get("Range")))
        m = _API.match(path)
        if m and not head:
            repo = self._repo_at(m["repo"], m["rev"] or "main")
            if repo is None:
                return
            if m["op"] in ("revision", None):
                self._json({"id": repo.repo_id, "sha": repo.sha, "siblings": [{"rfilename": p} for p in repo.files]})
            else:
                listing = []
                for p, data in repo.files.items():
                    item = {"type": "file", "path": p, "size": len(data), "oid": git_blob_oid(data)}
                    lfs = repo.lfs_info(p)
                    if lfs is not None:
                        item["lfs"] = lfs
                    listing.append(item)
                self._json(listing)
            return
        m = _RESOLVE.match(path)
        if m:
            repo = self._repo_at(m["repo"], m["rev"], head=head)
            if repo is None:
                return
            self._serve_file(repo, m["file"], head)
            return
        self._send(404, b"not found", head=head)

    def _serve_file(self, repo: FakeRepo, name: str, head: bool) -> None:
        if name not in repo.files:
            self._error(404, "EntryNotFound", {"X-Repo-Commit": repo.sha}, head=head)
            return
        data = repo.files[name]
        meta = {"ETag": f'"{repo.etag(name)}"', "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if head:
            self.send_response(200)
            for k, v in meta.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        key = (repo.repo_id, name)
        if self.fake._take_fail(key):
            self._send(500, b"internal error")
            return
        start = 0
        status = 200
        rng = self.headers.get("Range")
        if rng:
            rm = _RANGE.match(rng.strip())
            if rm is None or int(rm[1]) >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            start, status = int(rm[1]), 206
            meta["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = self.fake._take_cut(key)
        self.send_response(status)
        for k, v in meta.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut is None:
            self.wfile.write(body)
            return
        # Connection cut mid-file: part of the body, then close the socket.
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
