"""Model zoo tests against a fake Hub on 127.0.0.1 (no real network).

Environment: every test points ``HF_ENDPOINT``/``HF_HOME``/``HF_HUB_CACHE``/``LINGEN_HOME``
at the fake server and temporary folders. lingen passes ``endpoint=``/``cache_dir=`` to
huggingface_hub explicitly (its constants are read at import); the fixture also points
huggingface_hub's import-time constants at the fake server so that its side requests
(e.g. the agent-harness registry used in its User-Agent) never leave the machine.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
import yaml
from fake_hub import FakeHub, sha256_hex
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lingen_cli.app import app

from lingen_model import hub as zoo
from lingen_model.errors import LinGenError
from lingen_model.io import files as iofiles

# ---------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        yield server


@pytest.fixture
def env(hub, tmp_path, monkeypatch):
    """Fresh HF cache, LINGEN_HOME and Hub endpoint for one test; returns the paths."""
    from huggingface_hub import constants

    hf_home, lingen_home = tmp_path / "hf", tmp_path / "lingen"
    cache = hf_home / "hub"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("LINGEN_HOME", str(lingen_home))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub's import-time constants: keep its own side requests on the fake Hub.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(hf_home / "agents.json"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    return {"cache": cache, "lingen_home": lingen_home, "tmp": tmp_path}


def publish(hub: FakeHub, files: dict[str, bytes]) -> tuple[str, str]:
    """Publish files under a fresh repo id; return (repo_id, commit)."""
    repo = f"org{uuid.uuid4().hex[:6]}/model-{uuid.uuid4().hex[:8]}"
    return repo, hub.add_repo(repo, files)


def random_bytes(rng_seed: int, n: int) -> bytes:
    """n pseudo-random bytes (fresh per test via the seed)."""
    import random

    return random.Random(rng_seed).randbytes(n)


def write_user_registry(lingen_home: Path, models: dict) -> Path:
    path = lingen_home / "models.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "models": models}, sort_keys=False))
    return path


def pinned_entry(repo: str, commit: str, files: dict[str, bytes], sha_override: dict[str, str] | None = None) -> dict:
    sha_override = sha_override or {}
    return {
        "kind": "pipeline",
        "description": "test checkpoint",
        "license": "Apache-2.0",
        "memory_tier": "cpu",
        "repo": repo,
        "revision": commit,
        "files": [{"path": p, "sha256": sha_override.get(p, sha256_hex(d)), "size": len(d)} for p, d in files.items()],
    }


def snapshot(env, repo: str, commit: str) -> Path:
    return env["cache"] / ("models--" + repo.replace("/", "--")) / "snapshots" / commit


def resolve_requests(hub: FakeHub, repo: str) -> list:
    return [r for r in hub.requests if r.path.startswith(f"/{repo}/resolve/")]


runner = CliRunner()


def lingen(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def checkpoint_files(seed: int, weight_bytes: int = 200_000) -> dict[str, bytes]:
    cfg = {"denoiser": {"width": 8}, "vae": {}, "text_encoder": {"backend": "minilm"}, "native": {"fps": 8, "height": 64, "width": 64}}
    return {
        "config.json": json.dumps(cfg).encode(),
        "denoiser.safetensors": random_bytes(seed, weight_bytes),
        "vae.safetensors": random_bytes(seed + 1, weight_bytes // 3),
    }


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------


def test_packaged_registry_is_valid_and_consistent():
    from lingen_model.models.config import DENOISER_CONFIGS

    reg = zoo.load_registry()
    assert reg["lingen-tiny"].kind == "bundled" and reg["lingen-tiny"].source_kind == "bundled"
    encoders = [e for e in reg.values() if e.kind == "text_encoder"]
    assert {"package", "hub"} <= {e.source_kind for e in encoders}
    layouts = [e for e in reg.values() if e.source_kind == "layout"]
    assert layouts, "paper-scale layout entries are missing"
    for e in reg.values():
        if e.layout and e.layout.denoiser_size:
            assert e.layout.denoiser_size in DENOISER_CONFIGS, e.name
        if e.layout and e.layout.text_encoder:
            assert reg[e.layout.text_encoder].kind == "text_encoder"
        for f in e.files:  # nothing invented: unpinned external files carry no hash
            assert f.sha256 is None or len(f.sha256) == 64
        assert e.memory_tier in zoo.memory_tiers()


BASE = {"kind": "pipeline", "description": "d", "license": "MIT", "memory_tier": "cpu", "repo": "org/repo",
        "revision": "a" * 40, "files": [{"path": "model.safetensors", "sha256": "b" * 64, "size": 10}]}


def _mutate(key, value):
    entry = json.loads(json.dumps(BASE))
    if key.startswith("files."):
        entry["files"][0][key[6:]] = value
    elif value is None:
        entry.pop(key)
    else:
        entry[key] = value
    return entry


@pytest.mark.parametrize(
    "entry, needle",
    [
        (_mutate("colour", "red"), "unknown key(s) 'colour'"),
        (_mutate("license", None), "missing required field 'license'"),
        (_mutate("files.sha256", "abc123"), "sha256"),
        (_mutate("files.sha256", "g" * 64), "sha256"),
        (_mutate("files.size", -1), "size"),
        (_mutate("files.path", "../escape.safetensors"), "escape the model folder"),
        (_mutate("files.path", "sub/../../escape.safetensors"), "escape the model folder"),
        (_mutate("files.path", "/etc/passwd"), "escape the model folder"),
        (_mutate("files.path", "pytorch_model.bin"), "execute code"),
        (_mutate("files.path", "weights.PKL"), "execute code"),
        (_mutate("files.checksum", "x"), "unknown key(s) 'checksum'"),
        (_mutate("kind", "lora"), "kind 'lora'"),
        (_mutate("memory_tier", "huge"), "memory_tier 'huge'"),
        (_mutate("repo", "not a repo"), "repo 'not a repo'"),
        (_mutate("revision", None), "missing required field 'revision'"),
        (_mutate("revision", "bad..rev"), "revision"),
        (_mutate("files", None), "missing required field 'files'"),
    ],
)
def test_registry_validation_names_file_and_entry(tmp_path, entry, needle):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "models": {"broken-entry": entry}}))
    with pytest.raises(zoo.RegistryError) as err:
        zoo.load_registry(path)
    msg = str(err.value)
    assert str(path) in msg and "'broken-entry'" in msg and needle in msg, msg
    assert "\n" not in msg


def test_registry_valid_base_entry_loads(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "models": {"ok": BASE}}))
    entry = zoo.load_registry(path)["ok"]
    assert entry.files[0].sha256 == "b" * 64 and entry.files[0].size == 10 and entry.pinned


def test_registry_duplicate_keys_and_names_are_errors(tmp_path, env):
    path = tmp_path / "dup.yaml"
    path.write_text("version: 1\nmodels:\n  a: {kind: vae}\n  a: {kind: vae}\n")
    with pytest.raises(zoo.RegistryError, match="duplicate key 'a'"):
        zoo.load_registry(path)
    user = write_user_registry(env["lingen_home"], {"lingen-tiny": BASE})
    with pytest.raises(zoo.RegistryError, match="already defined") as err:
        zoo.load_registry()
    assert str(user) in str(err.value)


@pytest.mark.parametrize("text, ok", [
    ("org/repo", True), ("Org-1/my_model.v2@main", True), ("org/repo@" + "c" * 40, True), ("org/repo@refs/pr/1", True),
    ("repo", False), ("org/", False), ("/repo", False), ("org/repo/extra", False), ("org/../x", False),
    ("org/repo@", False), ("org/re po", False), ("org/repo@a..b", False),
])
def test_parse_repo_spec(text, ok):
    if ok:
        spec = zoo.parse_repo_spec(text)
        assert spec.repo == text.partition("@")[0]
    else:
        with pytest.raises(ValueError, match="expected"):
            zoo.parse_repo_spec(text)


def test_parse_repo_spec_conflicting_revisions():
    assert zoo.parse_repo_spec("org/repo", "v1").revision == "v1"
    with pytest.raises(ValueError, match="two revisions"):
        zoo.parse_repo_spec("org/repo@v1", "v2")


_segment = st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(st.lists(_segment, min_size=1, max_size=4), st.integers(0, 4), st.sampled_from(["..", "/", "\\", ""]))
def test_unsafe_path_reason_matches_a_plain_definition(parts, at, bad):
    """Reference: a name is safe iff, split on '/', no segment is '', '.' or '..' and it has no backslash."""
    safe_name = "/".join(parts)
    assert zoo.unsafe_path_reason(safe_name) is None
    if bad == "/":
        candidate = "/" + safe_name
    else:
        segs = list(parts)
        segs.insert(min(at, len(segs)), bad)
        candidate = "/".join(segs)
    expected_unsafe = "\\" in candidate or any(s in ("", ".", "..") for s in candidate.split("/"))
    assert (zoo.unsafe_path_reason(candidate) is not None) == expected_unsafe


def test_sha256_file_matches_hashlib(tmp_path):
    data = random_bytes(7, 3 * iofiles.HASH_CHUNK_BYTES + 123)
    f = tmp_path / "x"
    f.write_bytes(data)
    assert iofiles.sha256_file(f, chunk_bytes=4096) == hashlib.sha256(data).hexdigest() == iofiles.sha256_file(f)


def test_check_layout(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    layout = zoo.load_registry()["lingen-4b"].layout
    save_file({"w": np.zeros((2, 3), np.float32)}, str(tmp_path / "denoiser.safetensors"))
    save_file({"w": np.ones(4, np.float32)}, str(tmp_path / "vae.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({k: {} for k in layout.config_keys}))
    assert zoo.check_layout(tmp_path, layout) == []
    (tmp_path / "config.json").write_text(json.dumps({"denoiser": {}}))
    (tmp_path / "vae.safetensors").write_bytes(b"\x00garbage")
    problems = zoo.check_layout(tmp_path, layout)
    assert any("lacks key(s)" in p for p in problems) and any("vae.safetensors" in p for p in problems)


# ---------------------------------------------------------------------------------------
# downloads against the fake Hub
# ---------------------------------------------------------------------------------------


def test_full_download_verifies_and_is_cached_once(hub, env):
    files = checkpoint_files(seed=11)
    repo, commit = publish(hub, files)
    write_user_registry(env["lingen_home"], {"test-ckpt": pinned_entry(repo, commit, files)})

    res = lingen("download", "test-ckpt")
    assert res.exit_code == 0, res.stderr
    snap = snapshot(env, repo, commit)
    for name, data in files.items():
        assert (snap / name).read_bytes() == data
        assert f"{name}  sha256 ok (registry)" in res.stdout
    gets = len([r for r in resolve_requests(hub, repo) if r.method == "GET"])
    assert gets == len(files)

    again = lingen("download", "test-ckpt")
    assert again.exit_code == 0, again.stderr
    assert len([r for r in resolve_requests(hub, repo) if r.method == "GET"]) == gets  # cached once

    [model] = [m for m in zoo.installed_models() if m["name"] == "test-ckpt"]
    assert model["complete"] and model["revision"] == commit and model["repo"] == repo
    assert model["size_bytes"] == sum(len(d) for d in files.values())
    assert zoo.resolve_model("test-ckpt") == snap


def test_dry_run_lists_files_and_fetches_nothing(hub, env):
    files = checkpoint_files(seed=12)
    repo, commit = publish(hub, files)
    res = lingen("download", repo, "--dry-run")
    assert res.exit_code == 0, res.stderr
    for name in files:
        assert name in res.stdout
    total = sum(len(d) for d in files.values())
    assert f"{len(files)} files, {iofiles.format_bytes(total)} in total" in res.stdout
    assert resolve_requests(hub, repo) == []
    assert not snapshot(env, repo, commit).exists()


def test_connection_cut_mid_file_resumes_with_range(hub, env):
    from huggingface_hub import constants

    chunk = constants.DOWNLOAD_CHUNK_SIZE  # huggingface_hub writes whole chunks; a cut keeps those
    data = random_bytes(13, chunk + chunk // 2)
    files = {"config.json": b"{}", "big.safetensors": data}
    repo, commit = publish(hub, files)
    cut_at = chunk + 12_345
    hub.cut_next_get(repo, "big.safetensors", cut_at)
    write_user_registry(env["lingen_home"], {"cut-test": pinned_entry(repo, commit, files)})

    res = lingen("download", "cut-test")
    assert res.exit_code == 0, res.stderr
    gets = hub.gets_of(repo, "big.safetensors")
    assert len(gets) == 2 and gets[0].range is None
    start = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut_at  # resumed, not restarted
    assert hashlib.sha256((snapshot(env, repo, commit) / "big.safetensors").read_bytes()).hexdigest() == sha256_hex(data)


def test_interrupted_download_then_offline_then_resume(hub, env, monkeypatch):
    files = checkpoint_files(seed=14)
    repo, commit = publish(hub, files)
    hub.fail_gets(repo, "vae.safetensors", 1)

    first = lingen("download", repo)
    assert first.exit_code == 1
    assert "error:" in first.stderr and "again" in first.stderr
    snap = snapshot(env, repo, commit)
    assert (snap / "denoiser.safetensors").is_file() and not (snap / "vae.safetensors").exists()
    assert not [m for m in zoo.installed_models() if m["repo"] == repo][0]["complete"]

    # Offline: the partial snapshot is detected and reported, never silently used.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n_requests = len(hub.requests)
    offline = lingen("download", repo)
    assert offline.exit_code == 1 and "incomplete" in offline.stderr and "vae.safetensors" in offline.stderr
    with pytest.raises(LinGenError, match="incomplete.*vae.safetensors.*lingen download"):
        zoo.resolve_model(repo)
    assert len(hub.requests) == n_requests

    # Online again: only the missing file is fetched.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    second = lingen("download", repo)
    assert second.exit_code == 0, second.stderr
    assert len(hub.gets_of(repo, "denoiser.safetensors")) == 1
    assert len(hub.gets_of(repo, "vae.safetensors")) == 2
    assert (snap / "vae.safetensors").read_bytes() == files["vae.safetensors"]


def test_sha256_mismatch_deletes_the_file_and_fails(hub, env, monkeypatch):
    files = checkpoint_files(seed=15)
    repo, commit = publish(hub, files)
    wrong = sha256_hex(random_bytes(99, 16))
    write_user_registry(env["lingen_home"], {"bad-hash": pinned_entry(repo, commit, files, {"denoiser.safetensors": wrong})})

    res = lingen("download", "bad-hash")
    assert res.exit_code == 1
    assert "sha256 mismatch for denoiser.safetensors" in res.stderr and "deleted" in res.stderr
    snap = snapshot(env, repo, commit)
    assert not (snap / "denoiser.safetensors").exists()
    blobs = snap.parent.parent / "blobs"
    assert sha256_hex(files["denoiser.safetensors"]) not in {p.name for p in blobs.iterdir()}
    assert (snap / "vae.safetensors").is_file()  # good files stay
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LinGenError, match="incomplete"):
        zoo.resolve_model("bad-hash")


def test_unpinned_repo_is_verified_against_the_hub_lfs_sha256(hub, env):
    """A bare repo id has no registry pins: its weights are checked against the sha256 that the Hub's
    listing gives for LFS files, so a file whose bytes do not match it is deleted and the download fails."""
    files = checkpoint_files(seed=17)
    good, good_commit = publish(hub, files)
    res = lingen("download", good)
    assert res.exit_code == 0, res.stderr
    for name in ("denoiser.safetensors", "vae.safetensors"):
        assert f"{name}  sha256 ok (Hub LFS)" in res.stdout
    assert "config.json  size ok" in res.stdout  # not an LFS file: no sha256 from the Hub

    bad = f"org{uuid.uuid4().hex[:6]}/model-{uuid.uuid4().hex[:8]}"
    commit = hub.add_repo(bad, files, lfs_sha256={"denoiser.safetensors": sha256_hex(b"something else")})
    res = lingen("download", bad)
    assert res.exit_code == 1
    assert "sha256 mismatch for denoiser.safetensors" in res.stderr and "from hub-lfs" in res.stderr
    snap = snapshot(env, bad, commit)
    assert not (snap / "denoiser.safetensors").exists() and (snap / "vae.safetensors").is_file()
    with pytest.raises(LinGenError):
        zoo.resolve_model(bad, allow_download=False)


def test_unknown_repo_and_revision_are_clear_errors(hub, env):
    res = lingen("download", "nobody/nothing-here")
    assert res.exit_code == 2
    assert "nobody/nothing-here not found" in res.stderr and "404" in res.stderr
    repo, _ = publish(hub, {"config.json": b"{}"})
    res = lingen("download", f"{repo}@no-such-branch")
    assert res.exit_code == 2 and "revision 'no-such-branch' not found" in res.stderr
    res = lingen("download", "not a repo")
    assert res.exit_code == 2 and "unknown model" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_offline_run_is_served_from_cache(hub, env, monkeypatch):
    files = checkpoint_files(seed=16)
    repo, commit = publish(hub, files)
    write_user_registry(env["lingen_home"], {"offline-test": pinned_entry(repo, commit, files)})
    assert lingen("download", "offline-test").exit_code == 0
    assert lingen("download", repo).exit_code == 0  # by repo id too (branch 'main')

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n_requests = len(hub.requests)
    res = lingen("download", "offline-test")
    assert res.exit_code == 0, res.stderr
    assert "from the cache (offline)" in res.stdout and "sha256 ok (registry)" in res.stdout
    assert zoo.resolve_model("offline-test") == snapshot(env, repo, commit)
    assert zoo.resolve_model(repo) == snapshot(env, repo, commit)
    with pytest.raises(LinGenError, match=r"run `lingen download nobody/missing`"):
        zoo.resolve_model("nobody/missing")
    dry = lingen("download", repo, "--dry-run")
    assert dry.exit_code == 2 and "HF_HUB_OFFLINE" in dry.stderr
    assert len(hub.requests) == n_requests  # not one request while offline

    # Hub unreachable but not flagged offline: generation still resolves from the cache.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert zoo.resolve_model("offline-test") == snapshot(env, repo, commit)


def test_registry_entry_with_path_traversal_is_refused(hub, env):
    repo, commit = publish(hub, {"config.json": b"{}"})
    entry = pinned_entry(repo, commit, {"config.json": b"{}"})
    entry["files"].append({"path": "../../outside.safetensors", "sha256": None, "size": None})
    user = write_user_registry(env["lingen_home"], {"evil": entry})
    res = lingen("download", "evil")
    assert res.exit_code == 2
    assert str(user) in res.stderr and "'evil'" in res.stderr and "escape" in res.stderr
    assert resolve_requests(hub, repo) == []


def test_hub_listing_with_escaping_name_is_refused_before_fetching(hub, env):
    repo, _ = publish(hub, {"config.json": b"{}", "../outside.safetensors": b"x" * 10})
    res = lingen("download", repo)
    assert res.exit_code == 2 and "escape" in res.stderr and "../outside.safetensors" in res.stderr
    assert resolve_requests(hub, repo) == []
    assert not (env["cache"].parent / "outside.safetensors").exists()


def test_bin_files_are_refused(hub, env):
    files = {"config.json": b"{}", "model.safetensors": random_bytes(17, 1000), "pytorch_model.bin": b"\x80\x04pickle"}
    repo, commit = publish(hub, files)
    res = lingen("download", repo)
    assert res.exit_code == 0, res.stderr
    assert "skipped pytorch_model.bin" in res.stderr
    assert not (snapshot(env, repo, commit) / "pytorch_model.bin").exists()
    assert (snapshot(env, repo, commit) / "model.safetensors").is_file()
    assert not [r for r in resolve_requests(hub, repo) if r.path.endswith(".bin")]
    explicit = lingen("download", repo, "--include", "*.bin")
    assert explicit.exit_code == 2 and "refusing pytorch_model.bin" in explicit.stderr


def test_include_exclude_and_local_dir(hub, env):
    files = checkpoint_files(seed=18)
    repo, commit = publish(hub, files)
    target = env["tmp"] / "plain"
    res = lingen("download", repo, "--include", "*.safetensors", "--exclude", "vae*", "--local-dir", str(target))
    assert res.exit_code == 0, res.stderr
    got = sorted(p.name for p in target.iterdir() if p.name != ".cache")
    assert got == ["denoiser.safetensors"]
    assert (target / "denoiser.safetensors").read_bytes() == files["denoiser.safetensors"]
    [m] = [m for m in zoo.installed_models() if m["path"] == str(target.resolve())]
    assert m["complete"] and m["revision"] == commit


def test_remove_asks_unless_yes(hub, env):
    files = checkpoint_files(seed=19)
    repo, commit = publish(hub, files)
    write_user_registry(env["lingen_home"], {"rm-test": pinned_entry(repo, commit, files)})
    assert lingen("download", "rm-test").exit_code == 0
    snap = snapshot(env, repo, commit)

    no = lingen("remove", "rm-test", input="n\n")
    assert no.exit_code == 1 and snap.is_dir()
    yes = lingen("remove", "rm-test", "--yes")
    assert yes.exit_code == 0, yes.stderr
    assert f"freed {iofiles.format_bytes(sum(len(d) for d in files.values()))}" in yes.stdout
    assert not snap.exists()
    assert not [m for m in zoo.installed_models() if m["repo"] == repo]
    again = lingen("remove", "rm-test", "--yes")
    assert again.exit_code == 2 and "not installed" in again.stderr
    assert lingen("remove", "lingen-tiny", "--yes").exit_code == 2


def test_resolve_model_sources(hub, env, tmp_path, monkeypatch):
    ckpt = tmp_path / "my-ckpt"
    ckpt.mkdir()
    with pytest.raises(LinGenError, match="no config.json"):
        zoo.resolve_model(str(ckpt))
    (ckpt / "config.json").write_text("{}")
    assert zoo.resolve_model(str(ckpt)) == ckpt.resolve()
    with pytest.raises(LinGenError, match="does not exist"):
        zoo.resolve_model(str(tmp_path / "nope" / "x"))
    with pytest.raises(LinGenError, match="no published weights"):
        zoo.resolve_model("lingen-4b")

    embedded = tmp_path / "weights" / "lingen-tiny"
    monkeypatch.setattr("lingen_model.hub.cache.bundled_dir", lambda entry: embedded)
    with pytest.raises(LinGenError, match="not installed"):
        zoo.resolve_model(None)
    embedded.mkdir(parents=True)
    (embedded / "config.json").write_text("{}")
    assert zoo.resolve_model(None) == embedded

    files = checkpoint_files(seed=20)
    repo, commit = publish(hub, files)
    with pytest.raises(LinGenError, match=rf"run `lingen download {repo}`.*--no-download"):
        zoo.resolve_model(repo, allow_download=False)
    assert resolve_requests(hub, repo) == []
    path = zoo.resolve_model(repo)  # downloaded on first use
    assert path == snapshot(env, repo, commit) and (path / "vae.safetensors").read_bytes() == files["vae.safetensors"]


def test_models_command_json(env):
    res = lingen("models", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    names = {m["name"] for m in doc["models"]}
    assert {"lingen-tiny", "minilm-l6", "lingen-4b"} <= names


# ---------------------------------------------------------------------------------------
# generate --model ORG/REPO: fetched on first use, then served offline from the cache
# ---------------------------------------------------------------------------------------


def test_generate_downloads_a_repo_checkpoint_then_runs_offline(hub, env, monkeypatch, tmp_path):
    from ckpt_utils import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "src")
    repo, _ = publish(hub, {p.name: p.read_bytes() for p in ckpt.iterdir()})
    runner = CliRunner()
    args = ["generate", "a red circle", "--model", repo, "--length", "5f", "--seed", "1", "--json", "--quiet"]
    missing = runner.invoke(app, args + ["--out", str(tmp_path / "a"), "--no-download"])
    assert missing.exit_code == 2 and f"lingen download {repo}" in missing.output
    first = runner.invoke(app, args + ["--out", str(tmp_path / "b")])
    assert first.exit_code == 0, first.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    second = runner.invoke(app, args + ["--out", str(tmp_path / "c")])
    assert second.exit_code == 0, second.output
    digest = lambda r: json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])["frames_sha256"]
    assert digest(first) == digest(second)


def test_download_progress_draws_into_one_rich_display(hub, env, monkeypatch):
    """huggingface_hub's bars go through our tqdm class into rich tasks: every byte is counted."""
    import io

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress

    from lingen_cli.progress import rich_tqdm_class

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    files = checkpoint_files(seed=21)
    repo, _ = publish(hub, files)
    progress = Progress(BarColumn(), DownloadColumn(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        result = zoo.download(repo, tqdm_class=rich_tqdm_class(progress))
    assert result.path is not None and all((result.path / n).read_bytes() == d for n, d in files.items())
    assert progress.tasks, "no progress task was drawn"
    byte_tasks = [t for t in progress.tasks if t.total == sum(len(d) for d in files.values())]
    assert byte_tasks and all(t.completed == t.total for t in byte_tasks), [(t.description, t.completed, t.total) for t in progress.tasks]
