"""`lingen generate` as a user runs it: outputs, sidecars, batches, bad input, interruption, torchrun."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ckpt_utils import make_tiny_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lingen_cli.app import app
from cli_utils import one_line_error

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def run(*args):
    return runner.invoke(app, ["generate", *map(str, args)])



def test_single_prompt_writes_mp4_and_sidecar(ckpt, tmp_path):
    r = run("a red circle moving left", "--model", ckpt, "--out", tmp_path, "--seed", 7, "--length", "1s", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][0])
    mp4 = Path(rec["path"])
    assert mp4.exists() and re.fullmatch(r"a-red-circle-moving-left-7-[0-9a-f]{6}\.mp4", mp4.name), mp4.name
    side = json.loads(mp4.with_suffix(".json").read_text())
    for key in ("prompt", "seed", "num_frames", "fps", "width", "height", "steps", "cfg_scale", "model", "versions",
                "timings_s", "frames_sha256"):
        assert key in side
    assert side["num_frames"] == 9 and (side["width"], side["height"]) == (64, 64)
    from lingen_model.io.video import read_mp4

    frames, fps = read_mp4(mp4)
    assert frames.shape == (9, 64, 64, 3) and fps == pytest.approx(8.0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_same_seed_same_video_and_prompt_matters(ckpt, tmp_path):
    digests = []
    for prompt, seed in (("a blue square", 1), ("a blue square", 1), ("a blue square", 2), ("a green triangle", 1)):
        r = run(prompt, "--model", ckpt, "--out", tmp_path / f"{len(digests)}", "--seed", seed, "--length", "5f", "--json")
        assert r.exit_code == 0, r.output
        digests.append(json.loads(r.stdout.strip().splitlines()[-1])["frames_sha256"])
    assert digests[0] == digests[1]
    assert digests[0] != digests[2] and digests[0] != digests[3]


def test_length_rounding_note_and_out_file(ckpt, tmp_path):
    out = tmp_path / "clip.mp4"
    r = run("a yellow circle", "--model", ckpt, "--out", out, "--length", "2.5s", "--fps", 4, "--seed", 0)
    assert r.exit_code == 0, r.output
    assert "note: length 2.5s" in r.output and "using 9 frames" in r.output
    assert out.exists() and out.with_suffix(".json").exists()


def test_batch_with_jsonl_overrides_and_a_failing_line(ckpt, tmp_path):
    pf = tmp_path / "prompts.jsonl"
    pf.write_text("\n".join([
        json.dumps({"prompt": "a red square", "seed": 3, "length": "5f"}),
        "# a comment",
        json.dumps({"prompt": "a cyan circle", "res": "40"}),  # 40 is not divisible by 16 → fails
        json.dumps({"prompt": "a white triangle", "length": "5f", "out": "white"}),
        '{"prompt": broken json',
    ]) + "\n")
    r = run("--prompts", pf, "--model", ckpt, "--out", tmp_path / "o", "--seed", 11)
    assert r.exit_code == 1, r.output
    assert len(list((tmp_path / "o").glob("a-red-square-3-*.mp4"))) == 1
    assert (tmp_path / "o" / "white.mp4").exists()
    assert "2/4 clips written" in r.output
    assert "not divisible by 16" in r.output


@pytest.mark.parametrize("args,needle", [
    (["", "--model", "{ckpt}"], "prompt is empty"),
    (["a cat", "--model", "{ckpt}", "--res", "100"], "not divisible by 16"),
    (["a cat", "--model", "{ckpt}", "--res", "wide-ish"], "cannot read resolution"),
    (["a cat", "--model", "{ckpt}", "--length", "0s"], "length must be > 0"),
    (["a cat", "--model", "{ckpt}", "--length", "-3s"], "cannot read length"),
    (["a cat", "--model", "{ckpt}", "--length", "10m"], "exceeds the cpu preset"),
    (["a cat", "--model", "no-such-model-xyz", "--no-download"], "no-such-model-xyz"),
    (["a cat", "--model", "{ckpt}", "--preset", "potato"], "unknown preset"),
    (["--prompts", "/nonexistent/prompts.txt", "--model", "{ckpt}"], "cannot read prompts file"),
    (["a cat", "--model", "{ckpt}", "--out", "/proc/lingen-cannot-write"], "not writable"),
    (["a cat", "--model", "{ckpt}", "--seed", "-5"], "seed"),
    (["a cat", "--model", "{ckpt}", "--sampler", "rk4"], "unknown sampler"),
])
def test_bad_input_one_line_exit_2(ckpt, tmp_path, args, needle):
    args = [a.replace("{ckpt}", str(ckpt)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path)]
    line = one_line_error(run(*args))
    assert needle in line
    assert not list(tmp_path.glob("*.mp4"))


def test_corrupt_checkpoints(ckpt, tmp_path):
    import shutil

    trunc = tmp_path / "trunc"
    shutil.copytree(ckpt, trunc)
    data = (trunc / "denoiser.safetensors").read_bytes()
    (trunc / "denoiser.safetensors").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in one_line_error(run("a cat", "--model", trunc, "--out", tmp_path))
    garbage = tmp_path / "garbage"
    shutil.copytree(ckpt, garbage)
    (garbage / "vae.safetensors").write_bytes(os.urandom(4096))
    assert "truncated or corrupt" in one_line_error(run("a cat", "--model", garbage, "--out", tmp_path))
    nokeys = tmp_path / "nokeys"
    shutil.copytree(ckpt, nokeys)
    cfg = json.loads((nokeys / "config.json").read_text())
    del cfg["vae"], cfg["native"]
    (nokeys / "config.json").write_text(json.dumps(cfg))
    assert "missing key(s): vae, native" in one_line_error(run("a cat", "--model", nokeys, "--out", tmp_path))
    assert not list(tmp_path.glob("*.mp4"))


def test_interrupt_leaves_no_partial_mp4(ckpt, tmp_path, monkeypatch):
    import lingen_model.io.video as video

    def interrupted(frames, path, fps, crf=18):
        Path(path).write_bytes(b"half an mp4")  # what a killed encoder leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "encode_mp4", interrupted)
    r = run("a red circle", "--model", ckpt, "--out", tmp_path, "--length", "1s", "--seed", 1)
    assert r.exit_code == 130
    assert not list(tmp_path.iterdir())  # neither the mp4, a temp file, nor a sidecar


_TOKENS = st.sampled_from(["--length", "--res", "--fps", "--steps", "--cfg", "--seed", "--preset", "--sampler",
                           "--dtype", "--json", "--quiet", "4s", "97f", "-1", "0", "1e9", "nan", "512x", "x", "auto",
                           "cpu", "heun", "", "é", "--", "-", "5f", "16", "32x16"])
_ARGS = st.lists(st.one_of(_TOKENS, st.text(max_size=8)), max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(max_size=12), extra=_ARGS)
def test_random_arguments_never_traceback(ckpt, tmp_path, prompt, extra):
    args = [prompt, *extra, "--model", str(ckpt), "--out", str(tmp_path / "h"), "--steps", "1", "--length", "1f"]
    r = runner.invoke(app, ["generate", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1, 2)


def test_torchrun_two_ranks_shard_prompts_with_rank_independent_seeds(ckpt, tmp_path):
    prompts = ["a red circle", "a blue square", "a green triangle"]
    pf = tmp_path / "p.txt"
    pf.write_text("\n".join(prompts) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "lingen_cli", "generate", "--prompts", str(pf), "--model", str(ckpt), "--out", str(tmp_path / "dist"),
           "--seed", "5", "--length", "5f", "--json", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert sorted(r["prompt"] for r in recs) == sorted(prompts)
    # prompt 2 (index 1) ran on rank 1; a single process with the same settings gives the same video
    single = subprocess.run([sys.executable, "-m", "lingen_cli", "generate", prompts[1], "--model", str(ckpt), "--out",
                             str(tmp_path / "single"), "--seed", "5", "--length", "5f", "--json", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ref = json.loads([l for l in single.stdout.splitlines() if l.startswith("{")][-1])
    dist_rec = next(r for r in recs if r["prompt"] == prompts[1])
    assert dist_rec["seed"] == ref["seed"] == 5
    assert dist_rec["frames_sha256"] == ref["frames_sha256"]
