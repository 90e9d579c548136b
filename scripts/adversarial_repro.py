"""Replay the reproductions of issue 17 ("no clip lost, no blind allocation, no traceback") and count
what goes wrong: tracebacks, silent overwrites, broken files and blind allocations.

Each case runs the real command line (``python -m lingen_cli ...``) in a fresh process, against a
tiny random checkpoint (``tests/ckpt_utils.py``) unless the case needs the embedded model, in a
scratch folder. Failures that need root (a full tmpfs) are faked the way the tests fake them: a
file-size limit (``RLIMIT_FSIZE``, which makes ffmpeg's and Python's writes fail with EFBIG) and a
fake ffmpeg (``IMAGEIO_FFMPEG_EXE``) that writes half a file and exits 1.

    python scripts/adversarial_repro.py            # all cases, a table and the four counts
    python scripts/adversarial_repro.py -k remove  # only cases whose name contains "remove"

Counts (the issue's target is 0 for each):
  traceback        "Traceback (most recent call last)" on stderr, or an exit code outside {0, 1, 2, 130}
  silent overwrite an existing file at an output name changed while the command exited 0, or a
                   batch/concurrent run reported more clips than files it left
  broken file      a file left at a final name after a failed run (or an mp4 without its sidecar),
                   or a stale temp file of ours that the next run did not clean up
  blind alloc      the process grew past 3 GiB of memory or ran past its time limit before refusing
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MEM_LIMIT_BYTES = 3 * 2**30


class Case:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn


CASES: list[Case] = []


def case(fn):
    CASES.append(Case(fn.__name__, fn))
    return fn


def run(args, cwd, env=None, timeout=240, stdin=None, fsize=None, close_stdout=False, input_bytes=None):
    """Run ``python -m lingen_cli *args``; returns (rc, stdout, stderr, maxrss_bytes, seconds)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "LINGEN_HOME": str(Path(cwd) / ".home"),
         "HF_HUB_OFFLINE": "1", **(env or {})}

    def pre():
        resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT_BYTES * 4, MEM_LIMIT_BYTES * 4))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if close_stdout:
            os.close(1)

    t0 = time.time()
    cmd = list(args) if isinstance(args[0], bytes) else [PY, "-m", "lingen_cli", *map(str, args)]
    p = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE if not close_stdout else None,
                         stderr=subprocess.PIPE, stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                         preexec_fn=pre)
    bufs: dict = {}
    readers = [threading.Thread(target=lambda n=n, f=f: bufs.__setitem__(n, f.read()), daemon=True)
               for n, f in (("out", p.stdout), ("err", p.stderr)) if f is not None]
    for t in readers:
        t.start()
    if input_bytes is not None:
        p.stdin.write(input_bytes)
        p.stdin.close()
    rc, maxrss = "timeout", 0
    while time.time() - t0 < timeout:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            rc, maxrss = os.waitstatus_to_exitcode(status), ru.ru_maxrss * 1024
            break
        time.sleep(0.05)
    else:
        p.kill()
        _, _, ru = os.wait4(p.pid, 0)
        maxrss = ru.ru_maxrss * 1024
    p.returncode = rc if rc != "timeout" else -9
    for t in readers:
        t.join(5)
    out, err = bufs.get("out"), bufs.get("err")
    return rc, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"), maxrss, time.time() - t0


class Result:
    def __init__(self):
        self.traceback = self.overwrite = self.broken = self.blind = 0
        self.notes: list[str] = []

    def check_proc(self, rc, err, want=None):
        if "Traceback (most recent call last)" in err or rc not in (0, 1, 2, 130):
            self.traceback += 1
            last = [l for l in err.strip().splitlines() if l.strip()][-1:] or [str(rc)]
            self.notes.append(f"traceback/rc={rc}: {last[0][:100]}")
        elif want is not None and rc not in want:
            self.notes.append(f"exit {rc}, wanted {want}: {err.strip()[-120:]}")
        return self


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).iterdir() if p.is_file()}


# ----------------------------------------------------------------------------- overwrite cases

@case
def overwrite_existing_mp4(w, ck):
    r = Result()
    (w / "clip.mp4").write_bytes(b"precious")
    rc, out, err, *_ = run(["generate", "x", "--model", ck, "--length", "5f", "--seed", 1, "--out", "clip.mp4"], w)
    r.check_proc(rc, err, (2,))
    if (w / "clip.mp4").read_bytes() != b"precious":
        r.overwrite += 1
    return r


@case
def overwrite_unrelated_sidecar(w, ck):
    r = Result()
    (w / "clip.json").write_text("{\"mine\": 1}")
    rc, out, err, *_ = run(["generate", "x", "--model", ck, "--length", "5f", "--out", "clip.mp4"], w)
    r.check_proc(rc, err, (2,))
    if (w / "clip.json").read_text() != "{\"mine\": 1}":
        r.overwrite += 1
    if rc != 0 and (w / "clip.mp4").exists():
        r.broken += 1
    return r


@case
def same_prompt_seed_twice(w, ck):
    r = Result()
    args = ["generate", "a red circle", "--model", ck, "--length", "5f", "--seed", 3, "--out", "o"]
    rc, out, err, *_ = run(args, w)
    r.check_proc(rc, err, (0,))
    before = snapshot(w / "o")
    rc, out, err, *_ = run(args, w)
    r.check_proc(rc, err, (2,))
    if rc == 0 and snapshot(w / "o") != before and len(snapshot(w / "o")) == len(before):
        r.overwrite += 1
    return r


@case
def overwrite_flag_replaces(w, ck):
    r = Result()
    (w / "clip.mp4").write_bytes(b"old")
    (w / "clip.json").write_text("{}")
    rc, out, err, *_ = run(["generate", "x", "--model", ck, "--length", "5f", "--out", "clip.mp4", "--overwrite"], w)
    r.check_proc(rc, err, (0,))
    if rc == 0 and (w / "clip.mp4").read_bytes() == b"old":
        r.notes.append("--overwrite did not replace")
    return r


def _reported_vs_written(r: "Result", out: str, folder: Path) -> "Result":
    """A batch that reports more ok clips (``--json`` lines) than mp4 files it left lost a clip: a silent overwrite."""
    ok = sum(1 for l in out.splitlines() if l.startswith("{") and json.loads(l)["status"] == "ok")
    mp4s = len(list(folder.glob("*.mp4"))) if folder.exists() else 0
    if ok > mp4s:
        r.overwrite += 1
        r.notes.append(f"{ok} reported, {mp4s} files")
    return r


@case
def batch_slug_collision(w, ck):
    r = Result()
    p = "a red circle moving to the right on a gray background slowly"
    (w / "p.txt").write_text(f"{p} one\n{p} two\n")
    rc, out, err, *_ = run(["generate", "--prompts", "p.txt", "--model", ck, "--length", "5f", "--seed", 5,
                            "--out", "b", "--json"], w)
    r.check_proc(rc, err)
    return _reported_vs_written(r, out, w / "b")


@case
def batch_same_out_key(w, ck):
    r = Result()
    (w / "p.jsonl").write_text(json.dumps({"prompt": "a red circle", "out": "same"}) + "\n"
                               + json.dumps({"prompt": "a blue square", "out": "same"}) + "\n")
    rc, out, err, *_ = run(["generate", "--prompts", "p.jsonl", "--model", ck, "--length", "5f", "--out", "b",
                            "--json"], w)
    r.check_proc(rc, err)
    return _reported_vs_written(r, out, w / "b")


@case
def skip_existing_finishes_batch(w, ck):
    r = Result()
    (w / "p.txt").write_text("a red circle\na blue square\n")
    args = ["generate", "--prompts", "p.txt", "--model", ck, "--length", "5f", "--seed", 1, "--out", "b", "--json"]
    rc, out, err, *_ = run(args, w)
    r.check_proc(rc, err, (0,))
    first = sorted((w / "b").glob("*.mp4"))
    if first:
        keep = snapshot(w / "b")
        first[0].unlink()
        first[0].with_suffix(".json").unlink()
        rc, out, err, *_ = run(args + ["--skip-existing"], w)
        r.check_proc(rc, err, (0,))
        now = snapshot(w / "b")
        if any(now.get(k) != v for k, v in keep.items() if k != first[0].name and k != first[0].with_suffix(".json").name):
            r.overwrite += 1
        if len(now) != len(keep):
            r.notes.append("--skip-existing did not finish the batch")
    return r


@case
def concurrent_same_out(w, ck):
    r = Result()
    procs = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for s in (1, 2):
        procs.append(subprocess.Popen([PY, "-m", "lingen_cli", "generate", f"prompt {s}", "--model", str(ck),
                                       "--length", "5f", "--seed", str(s), "--out", "same.mp4", "--json"], cwd=w,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    res = [(p.wait(240), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    for rc, out, err in res:
        r.check_proc(rc, err)
    winners = sum(rc == 0 for rc, _, _ in res)
    if winners > 1:
        r.overwrite += 1
        r.notes.append("both exited 0")
    if (w / "same.mp4").exists() != (w / "same.json").exists():
        r.broken += 1
    return r


# ----------------------------------------------------------------------------- broken-file cases

def _left_at_final(w: Path, names) -> int:
    return sum((w / n).exists() for n in names)


@case
def disk_full_single(w, ck):
    r = Result()
    rc, out, err, *_ = run(["generate", "a red circle", "--model", ck, "--length", "17f", "--out", "e.mp4"], w, fsize=600)
    r.check_proc(rc, err, (1,))
    if rc != 0:
        r.broken += _left_at_final(w, ["e.mp4", "e.json"])
    r.broken += len([p for p in w.iterdir() if p.name.startswith(".e.")])
    return r


@case
def ffmpeg_fails_batch(w, ck):
    r = Result()
    fake = w / "ffmpeg"
    fake.write_text("#!/bin/sh\n# fake ffmpeg: writes half a file at its output (last arg), then fails\n"
                    "for a; do out=$a; done\nprintf 'broken' > \"$out\"\ncat > /dev/null\nexit 1\n")
    fake.chmod(0o755)
    (w / "p.txt").write_text("a red circle\na blue square\n")
    rc, out, err, *_ = run(["generate", "--prompts", "p.txt", "--model", ck, "--length", "5f", "--out", "b"], w,
                           env={"IMAGEIO_FFMPEG_EXE": str(fake)})
    r.check_proc(rc, err, (1,))
    r.broken += len(list((w / "b").glob("*.mp4"))) + len(list((w / "b").glob("*.json")))
    r.broken += len([p for p in (w / "b").iterdir() if p.name.startswith(".")])
    return r


@case
def sidecar_blocked(w, ck):
    r = Result()
    (w / "clip.json").mkdir()
    rc, out, err, *_ = run(["generate", "x", "--model", ck, "--length", "5f", "--out", "clip.mp4"], w)
    r.check_proc(rc, err)
    if (w / "clip.mp4").exists():
        r.broken += 1
        r.notes.append("mp4 without sidecar")
    return r


@case
def stale_temp_cleaned(w, ck):
    r = Result()
    (w / "o").mkdir()
    stale = w / "o" / ".a-red-circle-1.mp4.k3j4h5ab.mp4"
    stale.write_bytes(b"")
    old = time.time() - 3 * 3600
    os.utime(stale, (old, old))
    fresh_foreign = w / "o" / ".bashrc.swp"
    fresh_foreign.write_bytes(b"x")
    rc, out, err, *_ = run(["generate", "a green square", "--model", ck, "--length", "5f", "--out", "o"], w)
    r.check_proc(rc, err, (0,))
    if stale.exists():
        r.broken += 1
        r.notes.append("stale temp left")
    if not fresh_foreign.exists():
        r.notes.append("deleted a file that is not ours!")
        r.broken += 1
    return r


# ----------------------------------------------------------------------------- allocation cases

def _bad_config(w: Path, ck: Path, **patch) -> Path:
    d = w / "bad"
    shutil.copytree(ck, d)
    cfg = json.loads((d / "config.json").read_text())
    for k, v in patch.items():
        if k == "native":
            cfg["native"].update(v)
        else:
            cfg["denoiser"][k] = v
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _alloc_case(w, args, want=(2,), timeout=300):
    r = Result()
    rc, out, err, rss, secs = run(args, w, timeout=timeout)
    r.check_proc(rc, err, want)
    if rc == "timeout" or rss > MEM_LIMIT_BYTES or (rc != 0 and secs > timeout * 0.9):
        r.blind += 1
        r.notes.append(f"rss {rss / 2**30:.1f} GiB, {secs:.0f} s")
    elif rc not in want:
        r.notes.append(f"exit {rc}: {err.strip()[-100:]}")
    return r


@case
def config_depth_huge(w, ck):
    return _alloc_case(w, ["generate", "x", "--model", _bad_config(w, ck, depth=1000000), "--length", "5f"])


@case
def config_width_huge(w, ck):
    return _alloc_case(w, ["generate", "x", "--model", _bad_config(w, ck, width=999999936), "--length", "5f"])


@case
def config_native_huge(w, ck):
    return _alloc_case(w, ["generate", "x", "--model", _bad_config(w, ck, native={"height": 100000, "width": 100000}),
                           "--length", "5f"])


@case
def generate_60s_4096(w, ck):
    return _alloc_case(w, ["generate", "x", "--length", "60s", "--res", "4096"])


@case
def eval_length_huge(w, ck):
    return _alloc_case(w, ["eval", "--length", "1000000s", "--limit", "1"])


@case
def prompts_dev_zero(w, ck):
    return _alloc_case(w, ["generate", "--prompts", "/dev/zero", "--model", ck])


# ----------------------------------------------------------------------------- traceback cases

def _tb_case(args, want=(2,), env=None, **kw):
    def fn(w, ck):
        a = [ck if x == "{ck}" else x for x in args]
        rc, out, err, *_ = run(a, w, env=env, **kw)
        return Result().check_proc(rc, err, want)
    return fn


for _name, _args, _want in [
    ("device_tpu", ["generate", "x", "--model", "{ck}", "--device", "tpu", "--length", "5f"], (2,)),
    ("steps_zero", ["generate", "x", "--model", "{ck}", "--steps", "0", "--length", "5f"], (2,)),
    ("length_many_digits", ["generate", "x", "--model", "{ck}", "--length", "9" * 400 + "s"], (2,)),
    ("eval_steps_neg", ["eval", "--steps", "-3", "--limit", "1", "--model", "{ck}"], (2,)),
    ("eval_cfg_nan", ["eval", "--cfg", "nan", "--limit", "1", "--model", "{ck}"], (2,)),
    ("eval_json_dir", ["eval", "--json", "/tmp", "--limit", "1", "--model", "{ck}", "--length", "5f"], (2,)),
    ("eval_save_dir_file", ["eval", "--save-dir", "/etc/passwd", "--limit", "1", "--model", "{ck}", "--length", "5f"], (2,)),
    ("eval_limit_zero", ["eval", "--limit", "0", "--model", "{ck}"], (2,)),
    ("eval_limit_neg", ["eval", "--limit", "-1", "--model", "{ck}"], (2,)),
    ("benchmark_json_dir", ["benchmark", "--flops-only", "--json", "/tmp"], (2,)),
    ("benchmark_cell_timeout_nan", ["benchmark", "--cell-timeout", "nan", "--length", "5f"], (2,)),
    ("benchmark_fps_zero", ["benchmark", "--flops-only", "--fps", "0"], (2,)),
    ("remove_home_is_file", ["remove", "lingen-tiny"], (1, 2)),
]:
    CASES.append(Case(_name, _tb_case(_args, _want)))


@case
def invalid_utf8_prompt(w, ck):
    r = Result()
    cmd = [PY.encode(), b"-m", b"lingen_cli", b"generate", b"a red \xff circle", b"--model", str(ck).encode(),
           b"--length", b"5f", b"--out", b"o"]
    rc, out, err, *_ = run(cmd, w)
    return r.check_proc(rc, err, (0, 2))


@case
def weights_mismatch_config(w, ck):
    d = _bad_config(w, ck, ffn_dim=96)
    rc, out, err, *_ = run(["generate", "x", "--model", d, "--length", "5f"], w)
    return Result().check_proc(rc, err, (2,))


@case
def remove_home_file_keeps_cache(w, ck):
    """A model in the Hugging Face cache; LINGEN_HOME is a file: remove must fail before deleting."""
    r = Result()
    commit = "a" * 40
    repo = w / "hub" / "models--acme--clip"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    home = w / "homefile"
    home.write_text("not a folder")
    rc, out, err, *_ = run(["remove", "acme/clip", "--yes"], w, env={"LINGEN_HOME": str(home), "HF_HUB_CACHE": str(w / "hub")})
    r.check_proc(rc, err, (1, 2))
    if rc != 0 and not (snap / "config.json").exists():
        r.broken += 1
        r.notes.append("deleted the cached model, then failed")
    return r


@case
def hf_home_file(w, ck):
    r = Result()
    (w / "hf").write_text("x")
    rc, out, err, *_ = run(["download", "lingen/nosuch"], w, env={"HF_HOME": str(w / "hf"), "HF_HUB_OFFLINE": "0",
                                                                   "HF_ENDPOINT": "http://127.0.0.1:9"})
    r.check_proc(rc, err, (1, 2))
    if "reach" in err and "HF_HOME" not in err and "not a folder" not in err:
        r.notes.append("misleading: " + err.strip()[-100:])
    return r


@case
def json_stdout_closed(w, ck):
    rc, out, err, *_ = run(["generate", "x", "--model", ck, "--length", "5f", "--out", "o", "--json"], w, close_stdout=True)
    return Result().check_proc(rc, err, (0, 1))


@case
def ctrl_c_early(w, ck):
    r = Result()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for delay in (0.05, 0.3, 0.8, 1.5, 2.5, 4.0):
        p = subprocess.Popen([PY, "-m", "lingen_cli", "generate", "x", "--model", str(ck), "--length", "5f", "--out", "o"],
                             cwd=w, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            r.notes.append(f"{delay}s: still running 600 s after Ctrl-C")
        err = err.decode("utf-8", "replace")
        if p.returncode == 0:
            continue  # finished before the signal
        r.check_proc(p.returncode, err, (130,))
        if p.returncode == 130 and len([l for l in err.splitlines() if l.strip()]) > 2:
            r.notes.append(f"{delay}s: {len(err.splitlines())} lines")
    return r


# ----------------------------------------------------------------------------- train cases

def _train_case(yaml_text: str, setup=None, want=(2,), extra=()):
    def fn(w, ck):
        if setup:
            setup(w)
        (w / "t.yaml").write_text(textwrap.dedent(yaml_text).replace("{w}", str(w)))
        rc, out, err, *_ = run(["train", "t.yaml", "--quiet", *extra], w, timeout=300)
        r = Result().check_proc(rc, err, want)
        run_dir = w / "run"
        if rc != 0 and run_dir.exists() and any(run_dir.glob("*.safetensors")) and not (run_dir / "train_state.json").exists():
            r.broken += 1
            r.notes.append("weights without train_state.json")
        return r
    return fn


VAE_BASE = """\
stage: vae
run_dir: {w}/run
steps: 1
batch_size: 1
log_every: 1
save_every_steps: 1
vae: {latent_channels: 4, base_channels: 8, channel_mult: [1, 1, 2, 2]}
"""
DATA_SHAPES = "data: {source: shapes, height: 32, width: 32, frames: 5, still_prob: 0}\n"


def _folder(kind):
    def setup(w):
        d = w / "clips"
        if kind == "missing":
            return
        d.mkdir()
        if kind == "empty":
            return
        from lingen_model.io.video import write_mp4  # noqa: imported in the replaying process
        import numpy as np
        rng = np.random.default_rng(0)
        write_mp4(rng.integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), d / "good.mp4", 8)
        (d / "good.txt").write_text("noise")
        (d / "bad.mp4").write_bytes(b"\x00" * 100 if kind == "corrupt" else b"")
        (d / "bad.txt").write_text("bad")
    return setup


for _name, _yaml, _setup, _want in [
    ("train_lr_fast", VAE_BASE.replace("steps: 1\n", "steps: 1\nlr: fast\n") + DATA_SHAPES, None, (2,)),
    ("train_save_every_zero", VAE_BASE.replace("save_every_steps: 1", "save_every_steps: 0") + DATA_SHAPES, None, (2,)),
    ("train_log_every_zero", VAE_BASE.replace("log_every: 1", "log_every: 0") + DATA_SHAPES, None, (2,)),
    ("train_unknown_vae_key", VAE_BASE.replace("base_channels: 8", "base_channels: 8, wings: 2") + DATA_SHAPES, None, (2,)),
    ("train_height_zero", VAE_BASE + DATA_SHAPES.replace("height: 32", "height: 0"), None, (2,)),
    ("train_num_threads_neg", VAE_BASE + "num_threads: -1\n" + DATA_SHAPES, None, (2,)),
    ("train_ema_decay_5", VAE_BASE + "ema_decay: 5\n" + DATA_SHAPES, None, (2,)),
    ("train_folder_missing", VAE_BASE + "data: {source: folder, path: {w}/clips, height: 32, width: 32, frames: 5, still_prob: 0}\n", _folder("missing"), (2,)),
    ("train_folder_empty", VAE_BASE + "data: {source: folder, path: {w}/clips, height: 32, width: 32, frames: 5, still_prob: 0}\n", _folder("empty"), (2,)),
    ("train_folder_corrupt_mp4", VAE_BASE + "data: {source: folder, path: {w}/clips, height: 32, width: 32, frames: 5, still_prob: 0}\n", _folder("corrupt"), (0,)),
    ("train_folder_empty_mp4", VAE_BASE + "data: {source: folder, path: {w}/clips, height: 32, width: 32, frames: 5, still_prob: 0}\n", _folder("emptyfile"), (0,)),
]:
    CASES.append(Case(_name, _train_case(_yaml, _setup, _want)))


def _resume_case(kind):
    def fn(w, ck):
        (w / "t.yaml").write_text(VAE_BASE.replace("{w}", str(w)) + DATA_SHAPES)
        rc, out, err, *_ = run(["train", "t.yaml", "--quiet"], w, timeout=300)
        r = Result().check_proc(rc, err, (0,))
        state = w / "run" / "train_state.json"
        if kind == "truncated":
            state.write_text(state.read_text()[:40])
            want = (2,)
            extra = ["--steps", "2"]
        elif kind == "weights":
            old_layout = w / "run" / "vae.safetensors"  # single-file run dirs; else a shard of the distributed checkpoint
            f = old_layout if old_layout.is_file() else next((w / "run" / "checkpoints").rglob("*.safetensors"))
            f.write_bytes(f.read_bytes()[:200])
            want, extra = (2,), ["--steps", "2"]
        elif kind == "mismatch":
            (w / "t.yaml").write_text((VAE_BASE + DATA_SHAPES).replace("{w}", str(w)).replace("base_channels: 8", "base_channels: 16"))
            want, extra = (2,), ["--steps", "2"]
        else:  # steps below the current step
            want, extra = (2,), ["--steps", "0"]
        rc, out, err, *_ = run(["train", "t.yaml", "--quiet", *extra], w, timeout=300)
        return r.check_proc(rc, err, want)
    return fn


for _k in ("truncated", "weights", "mismatch"):
    CASES.append(Case(f"train_resume_{_k}", _resume_case(_k)))


# ----------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only cases whose name contains one of these (comma-separated)")
    ap.add_argument("--start", default=None, help="skip the cases before this one")
    ap.add_argument("--json", type=Path, help="also write the per-case results here")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from ckpt_utils import make_tiny_checkpoint

    scratch = Path(tempfile.mkdtemp(prefix="lingen-repro-"))
    ck = make_tiny_checkpoint(scratch / "ckpt")
    totals = {"traceback": 0, "overwrite": 0, "broken": 0, "blind": 0}
    rows = []
    started = a.start is None
    for c in CASES:
        started = started or c.name == a.start
        if not started or not any(k in c.name for k in a.k.split(",")):
            continue
        w = scratch / c.name
        w.mkdir()
        t0 = time.time()
        try:
            r = c.fn(w, ck)
        except Exception as e:  # the harness itself
            r = Result()
            r.notes.append(f"harness error: {type(e).__name__}: {e}")
        for k in totals:
            totals[k] += getattr(r, k if k != "overwrite" else "overwrite")
        rows.append({"case": c.name, "traceback": r.traceback, "overwrite": r.overwrite, "broken": r.broken,
                     "blind": r.blind, "notes": r.notes, "s": round(time.time() - t0, 1)})
        flag = " ".join(f"{k}={getattr(r, k)}" for k in totals if getattr(r, k))
        print(f"{c.name:32s} {time.time() - t0:6.1f}s {flag or 'ok'} {'; '.join(r.notes)[:160]}", flush=True)
    print(f"\n{len(rows)} cases: tracebacks {totals['traceback']}, silent overwrites {totals['overwrite']}, "
          f"broken files {totals['broken']}, blind allocations {totals['blind']}")
    if a.json:
        a.json.write_text(json.dumps({"totals": totals, "cases": rows}, indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
