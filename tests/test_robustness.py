"""Issue 17: no clip lost, no blind allocation, no traceback.

Failures of ffmpeg and of the disk are injected by faking the encoder / the writes (monkeypatch),
never by mounting file systems. Every test uses the tiny random checkpoint of ckpt_utils.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ckpt_utils import make_tiny_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.errors import InputError, OperationError
from lingen_model.io import outputs
from lingen_model.io.outputs import OutputExistsError, clean_stale_temps, write_clip

runner = CliRunner()
FRAMES = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)  # seed 0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def gen(*args):
    return runner.invoke(app, ["generate", *map(str, args)])


def one_line_error(r, codes=(2,)):
    assert r.exit_code in codes, (r.exit_code, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    errs = [l for l in r.output.splitlines() if l.startswith("error:")]
    assert len(errs) == 1, r.output
    return errs[0]


def names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ----------------------------------------------------------------------------- 1. never overwrite

def test_existing_mp4_or_sidecar_is_an_error_unless_overwrite(ckpt, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"precious")
    line = one_line_error(gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path / "clip.mp4"))
    assert "clip.mp4 already exists" in line and "--overwrite" in line
    assert (tmp_path / "clip.mp4").read_bytes() == b"precious" and not (tmp_path / "clip.json").exists()
    (tmp_path / "clip.mp4").unlink()
    (tmp_path / "clip.json").write_text("{\"mine\": 1}")  # an unrelated file beside it
    line = one_line_error(gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path / "clip.mp4"))
    assert "clip.json already exists" in line
    assert (tmp_path / "clip.json").read_text() == "{\"mine\": 1}" and not (tmp_path / "clip.mp4").exists()
    r = gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path / "clip.mp4", "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "clip.json").read_text())["prompt"] == "x"


def test_same_prompt_and_seed_twice_does_not_replace(ckpt, tmp_path):
    args = ["a red circle", "--model", ckpt, "--length", "5f", "--seed", 3, "--out", tmp_path]
    assert gen(*args).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert "already exists" in one_line_error(gen(*args))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_batch_names_cannot_collide_and_collisions_stop_before_rendering(ckpt, tmp_path, monkeypatch):
    prefix = "a red circle moving to the right on a gray background slowly and"  # > 48 characters
    pf = tmp_path / "p.txt"
    pf.write_text(f"{prefix} one\n{prefix} two\n")
    r = gen("--prompts", pf, "--model", ckpt, "--length", "5f", "--seed", 5, "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "b").glob("*.mp4"))) == 2 and len(list((tmp_path / "b").glob("*.json"))) == 2
    rendered = []
    import lingen_model.generation.pipeline as pipeline

    real = pipeline.LinGenPipeline.generate
    monkeypatch.setattr(pipeline.LinGenPipeline, "generate", lambda self, *a, **k: rendered.append(1) or real(self, *a, **k))
    jf = tmp_path / "p.jsonl"
    jf.write_text(json.dumps({"prompt": "a red circle", "out": "same"}) + "\n"
                  + json.dumps({"prompt": "a blue square", "out": "same"}) + "\n")
    line = one_line_error(gen("--prompts", jf, "--model", ckpt, "--length", "5f", "--out", tmp_path / "c"))
    assert "prompts 1 and 2 would both write" in line
    assert rendered == [] and not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_skip_existing_finishes_a_half_done_batch(ckpt, tmp_path):
    pf = tmp_path / "p.txt"
    pf.write_text("a red circle\na blue square\na green triangle\n")
    args = ["--prompts", pf, "--model", ckpt, "--length", "5f", "--seed", 1, "--out", tmp_path / "b", "--json"]
    assert gen(*args).exit_code == 0
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b").iterdir()}
    victim = sorted((tmp_path / "b").glob("a-blue-square-*.mp4"))[0]
    victim.unlink()
    victim.with_suffix(".json").unlink()
    assert "already exists" in one_line_error(gen(*args))  # no flag: refused before rendering
    r = gen(*args, "--skip-existing")
    assert r.exit_code == 0, r.output
    recs = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    assert [x["status"] for x in recs] == ["skipped", "ok", "skipped"]
    now = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b").iterdir()}
    assert set(now) == set(files)
    assert all(now[k] == v for k, v in files.items() if not k.startswith("a-blue-square"))


def test_publish_is_exclusive_second_writer_loses(tmp_path):
    """Two runs racing for one name: os.link lets exactly one win; the loser leaves the winner's files."""
    target = tmp_path / "same.mp4"
    encode = lambda frames, path, fps: Path(path).write_bytes(b"mp4 of run %d" % fps)  # noqa: E731
    # run 2 checked the name before run 1 published (the race): skip its up-front check
    write_clip(FRAMES, target, 1, {"run": 1}, encode=encode)
    with pytest.raises(OutputExistsError, match="another run wrote it first"):
        outputs.publish([(_tmp_with(tmp_path, b"mp4 of run 2"), target)])
    assert target.read_bytes() == b"mp4 of run 1" and json.loads(target.with_suffix(".json").read_text()) == {"run": 1}


def _tmp_with(folder, data):
    p = folder / ".x.lingen-1-abcdefgh.mp4"
    p.write_bytes(data)
    return p


def test_publish_rolls_back_when_the_sidecar_name_is_taken(tmp_path):
    a, b = tmp_path / ".a.tmp", tmp_path / ".b.tmp"
    a.write_bytes(b"video")
    b.write_bytes(b"{}")
    (tmp_path / "clip.json").write_text("taken")
    with pytest.raises(OutputExistsError):
        outputs.publish([(a, tmp_path / "clip.mp4"), (b, tmp_path / "clip.json")])
    assert not (tmp_path / "clip.mp4").exists() and (tmp_path / "clip.json").read_text() == "taken"


# ----------------------------------------------------------------------------- 2. both or neither

def _fake_ffmpeg(tmp_path, code):
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text(f"#!/bin/sh\nfor a; do out=$a; done\nprintf 'moov atom not found' > \"$out\"\n"
                    f"echo 'No space left on device' >&2\ncat > /dev/null\nexit {code}\n")
    fake.chmod(0o755)
    return str(fake)


def test_encoder_exit_status_is_checked(tmp_path, monkeypatch):
    import lingen_model.io.video as video

    monkeypatch.setattr(video, "ffmpeg_exe", lambda: _fake_ffmpeg(tmp_path, 1))
    with pytest.raises(OperationError, match="No space left on device"):
        video.write_mp4(FRAMES, tmp_path / "e.mp4", 8)
    assert names(tmp_path) == ["fake-ffmpeg"]
    monkeypatch.setattr(video, "ffmpeg_exe", lambda: _fake_ffmpeg(tmp_path, 0))  # a working encoder: the file lands
    video.write_mp4(FRAMES, tmp_path / "ok.mp4", 8)
    assert (tmp_path / "ok.mp4").exists()


def test_failing_encoder_in_a_batch_leaves_no_file(ckpt, tmp_path, monkeypatch):
    import lingen_model.io.video as video

    monkeypatch.setattr(video, "ffmpeg_exe", lambda: _fake_ffmpeg(tmp_path, 1))
    pf = tmp_path / "p.txt"
    pf.write_text("a red circle\na blue square\n")
    r = gen("--prompts", pf, "--model", ckpt, "--length", "5f", "--out", tmp_path / "b")
    assert r.exit_code == 1 and "0/2 clips written" in r.output, r.output
    assert names(tmp_path / "b") == []


def test_disk_full_while_writing_the_sidecar_leaves_neither(ckpt, tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def full_open(file, mode="r", *a, **k):
        if "w" in mode and str(file).endswith(".json") and ".lingen-" in str(file):
            raise OSError(28, "No space left on device")
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_open)
    line = one_line_error(gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path / "e.mp4"), codes=(1,))
    assert "No space left on device" in line
    assert names(tmp_path) == []


def test_sidecar_name_is_a_directory(ckpt, tmp_path):
    (tmp_path / "clip.json").mkdir()
    line = one_line_error(gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path / "clip.mp4", "--overwrite"))
    assert "is a directory" in line and not (tmp_path / "clip.mp4").exists()


def test_stale_temp_files_of_ours_are_removed_and_nothing_else(tmp_path):
    now = time.time()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_pid = tmp_path / f".a.mp4.lingen-{dead.pid}-abcdefgh.mp4"
    live_pid = tmp_path / f".b.mp4.lingen-{os.getpid()}-abcdefgh.mp4"
    legacy_old = tmp_path / ".c.mp4.k3j4h5ab.mp4"
    legacy_new = tmp_path / ".d.mp4.k3j4h5ab.mp4"
    foreign = tmp_path / ".bashrc"
    young = tmp_path / f".e.json.lingen-{dead.pid}-abcdefgh.json"
    other_live = tmp_path / ".f.mp4.lingen-1-abcdefgh.mp4"  # PID 1 is always running
    for p in (stale_pid, live_pid, legacy_old, legacy_new, foreign, young, other_live):
        p.write_bytes(b"")
    for p, age in ((stale_pid, 120), (live_pid, 120), (legacy_old, 2 * 3600), (legacy_new, 60), (foreign, 10**6), (young, 5),
                   (other_live, 120)):
        os.utime(p, (now - age, now - age))
    removed = clean_stale_temps(tmp_path, now=now)
    assert sorted(p.name for p in removed) == sorted([stale_pid.name, legacy_old.name])
    assert live_pid.exists() and legacy_new.exists() and foreign.exists() and young.exists() and other_live.exists()


# ----------------------------------------------------------------------------- 3. estimate before allocating

def test_param_count_from_config_matches_the_built_model():
    import torch

    from lingen_model.generation.estimate import denoiser_params, vae_params
    from lingen_model.models.config import DenoiserConfig
    from lingen_model.models.denoiser import Denoiser
    from lingen_model.models.vae import CausalVideoVAE, VAEConfig

    for mixer in ("mate", "attention"):
        cfg = DenoiserConfig(width=32, depth=3, num_heads=2, headdim=16, d_state=8, ffn_dim=64, in_channels=4,
                             chunk_size=16, window=(2, 2, 2), mixer=mixer)
        torch.manual_seed(0)
        assert denoiser_params(cfg) == sum(p.numel() for p in Denoiser(cfg).parameters())
    v = VAEConfig(latent_channels=4, base_channels=8, channel_mult=(1, 1, 2, 2))
    assert vae_params(v) == sum(p.numel() for p in CausalVideoVAE(v).parameters())


@pytest.mark.parametrize("patch,needle", [
    ({"depth": 1000000}, "denoiser.depth = 1000000"),
    ({"width": 999999936}, "denoiser.width = 999999936"),
    ({"native": {"height": 100000, "width": 100000}}, "native.height = 100000"),
    ({"depth": 200}, "parameters (counted from its config)"),  # under the caps, over the cpu tier's 60M
])
def test_config_sizes_refused_before_building(ckpt, tmp_path, patch, needle, monkeypatch):
    import shutil

    import lingen_model.models.denoiser as denoiser

    d = tmp_path / "bad"
    shutil.copytree(ckpt, d)
    cfg = json.loads((d / "config.json").read_text())
    for k, v in patch.items():
        (cfg["native"] if k == "native" else cfg["denoiser"]).update(v if k == "native" else {k: v})
    cfg["denoiser"]["width"] = patch.get("width", 256 if "depth" in patch and patch["depth"] == 200 else cfg["denoiser"]["width"])
    if patch.get("depth") == 200:
        cfg["denoiser"].update(num_heads=2, headdim=16, ffn_dim=1024)
    (d / "config.json").write_text(json.dumps(cfg))
    built = []
    real_init = denoiser.Denoiser.__init__

    def spy(self, config, *a, **k):
        import torch

        if torch.get_default_device().type != "meta":  # counting on the meta device allocates nothing
            built.append(config.depth)
        real_init(self, config, *a, **k)

    monkeypatch.setattr(denoiser.Denoiser, "__init__", spy)
    line = one_line_error(gen("x", "--model", d, "--length", "5f", "--out", tmp_path / "o", "--preset", "cpu"))
    assert needle in line
    assert built == []


def test_memory_estimate_refuses_with_estimate_and_limit_unless_force(ckpt, tmp_path, monkeypatch):
    import lingen_model.generation.estimate as estimate

    monkeypatch.setattr(estimate, "device_memory_bytes", lambda device: 50_000_000)  # a 50 MB device
    line = one_line_error(gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path))
    assert "needs about" in line and "50.0 MB available" in line and "--force" in line
    assert names(tmp_path) == []
    r = gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path, "--force")
    assert r.exit_code == 0 and "trying anyway" in r.output, r.output


def test_memory_estimate_grows_with_the_clip_and_the_dit_is_quadratic():
    from lingen_model.generation.estimate import estimate_request_memory
    from lingen_model.models.config import get_config
    from lingen_model.models.vae import VAEConfig

    v = VAEConfig()
    mate, dit = get_config("tiny"), get_config("tiny", "attention")
    small = estimate_request_memory(mate, v, 33, 128, 128, den_params=1, vae_param_count=1)
    big = estimate_request_memory(mate, v, 481, 4096, 4096, den_params=1, vae_param_count=1)
    assert big.parts["latents"] == small.parts["latents"] * (121 / 9) * 1024  # 15× frames… 1024× pixels
    act = lambda cfg, side: estimate_request_memory(cfg, v, 33, side, side, den_params=1,  # noqa: E731
                                                    vae_param_count=1).parts["activations"]
    assert act(dit, 1024) > 12 * act(dit, 512)  # 4× tokens → ~16× attention scores
    assert act(mate, 1024) < 5 * act(mate, 512)  # LinGen: linear in tokens


def test_long_run_prints_an_estimate_first(ckpt, tmp_path, monkeypatch):
    import lingen_cli.generate as g

    monkeypatch.setattr(g, "_measure_flops_per_s", lambda pipe: 1e3)  # a very slow device: the run is "long"
    monkeypatch.setattr(g, "MIN_TIMED_FLOPS", 0)  # and not too small to time
    r = gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert "estimate: peak memory ~" in r.output and "of denoising" in r.output


def test_short_run_times_nothing_and_prints_no_estimate(ckpt, tmp_path, monkeypatch):
    import lingen_cli.generate as g

    timed = []
    monkeypatch.setattr(g, "_measure_flops_per_s", lambda pipe: timed.append(1) or 1e3)
    r = gen("x", "--model", ckpt, "--length", "5f", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert timed == [] and "of denoising" not in r.output


def test_unknown_prompt_note_for_the_shapes_world(ckpt, tmp_path):
    import shutil

    d = tmp_path / "shapes"
    shutil.copytree(ckpt, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["training"] = {"data": "shapes"}
    (d / "config.json").write_text(json.dumps(cfg))
    r = gen("a dog surfing", "--model", d, "--length", "5f", "--out", tmp_path / "o")
    assert r.exit_code == 0 and "names no colour, shape or motion" in r.output, r.output
    r = gen("a red circle moving left", "--model", d, "--length", "5f", "--out", tmp_path / "o")
    assert r.exit_code == 0 and "names no colour" not in r.output


# ----------------------------------------------------------------------------- 4. no tracebacks

@pytest.mark.parametrize("args,needle", [
    (["generate", "x", "--model", "{ckpt}", "--device", "tpu"], "unknown device 'tpu'"),
    (["generate", "x", "--model", "{ckpt}", "--steps", "0"], "steps must be in [1"),
    (["generate", "x", "--model", "{ckpt}", "--length", "9" * 400 + "s"], "is too large"),
    (["generate", "x", "--model", "{ckpt}", "--overwrite", "--skip-existing"], "exclude each other"),
    (["eval", "--steps", "-3", "--model", "{ckpt}"], "--steps must be >= 1"),
    (["eval", "--cfg", "nan", "--model", "{ckpt}"], "--cfg must be a finite number"),
    (["eval", "--limit", "0", "--model", "{ckpt}"], "--limit must be >= 1"),
    (["eval", "--limit", "-1", "--model", "{ckpt}"], "--limit must be >= 1"),
    (["eval", "--json", "{tmp}", "--model", "{ckpt}"], "is a directory"),
    (["eval", "--save-dir", "/etc/passwd", "--model", "{ckpt}"], "is not a directory"),
    (["eval", "--length", "1000000s", "--model", "{ckpt}"], "exceeds the"),
    (["benchmark", "--flops-only", "--json", "{tmp}"], "is a directory"),
    (["benchmark", "--cell-timeout", "nan"], "--cell-timeout must be a finite"),
    (["benchmark", "--flops-only", "--fps", "0"], "fps must be > 0"),
    (["benchmark", "--length", "1000s", "--compare", "none"], "exceeds the"),
])
def test_bad_options_one_line(ckpt, tmp_path, args, needle):
    args = [a.replace("{ckpt}", str(ckpt)).replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "generate":
        args += ["--out", str(tmp_path / "o"), "--length", "5f"] if "--length" not in args else ["--out", str(tmp_path / "o")]
    line = one_line_error(runner.invoke(app, args))
    assert needle in line, line


def test_weights_of_another_shape_than_config(ckpt, tmp_path):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(ckpt, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["denoiser"]["ffn_dim"] = 96
    (d / "config.json").write_text(json.dumps(cfg))
    line = one_line_error(gen("x", "--model", d, "--length", "5f", "--out", tmp_path / "o"))
    assert "does not match its config" in line and "(128, 32) in the file, (192, 32) for the config" in line


def test_invalid_utf8_prompt(ckpt, tmp_path):
    line = one_line_error(gen("a red \udcff circle", "--model", ckpt, "--length", "5f", "--out", tmp_path))
    assert "not valid UTF-8" in line


def test_remove_with_lingen_home_a_file_deletes_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("a file")
    monkeypatch.setenv("LINGEN_HOME", str(home))
    line = one_line_error(runner.invoke(app, ["remove", "lingen/anything", "--yes"]))
    assert "LINGEN_HOME" in line and "is a file" in line
    monkeypatch.delenv("LINGEN_HOME")
    monkeypatch.setenv("HF_HOME", str(home))
    line = one_line_error(runner.invoke(app, ["download", "lingen/anything"]))
    assert "Hugging Face cache" in line and "cannot reach" not in line


def test_api_validates_and_raises_library_errors(ckpt):
    from lingen_cli.common import CLIError
    from lingen_model import LinGenPipeline

    with pytest.raises(ValueError) as e:
        LinGenPipeline.from_pretrained("nosuch", allow_download=False)
    assert not isinstance(e.value, CLIError)
    with pytest.raises(InputError):
        LinGenPipeline.from_pretrained(ckpt, device="tpu")
    pipe = LinGenPipeline.from_pretrained(ckpt, device="cpu")
    for kw, err in [({"height": 0}, ValueError), ({"steps": 0}, ValueError), ({"fps": 0}, ValueError),
                    ({"fps": -8}, ValueError), ({"seed": -5}, ValueError), ({"seed": 1.5}, TypeError),
                    ({"num_frames": True}, TypeError), ({"num_frames": 5.0}, TypeError), ({"cfg_scale": float("nan")}, ValueError)]:
        with pytest.raises(err):
            pipe("x", **kw)


def test_closed_stdout_with_json(ckpt, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, "-m", "lingen_cli", "generate", "x", "--model", str(ckpt), "--length", "5f",
                        "--out", str(tmp_path), "--json", "--quiet"], env=env, capture_output=False, stdout=None,
                       stderr=subprocess.PIPE, timeout=300, preexec_fn=lambda: os.close(1))
    err = p.stderr.decode()
    assert p.returncode == 0 and "Traceback" not in err, err
    assert "stdout is closed" in err
    assert len(list(tmp_path.glob("*.mp4"))) == 1


_SIGINT_AFTER = """
import os, signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also where it was ignored
sys.argv = ["lingen", *sys.argv[1:]]
delay = float(os.environ["SIGINT_AFTER_S"])
threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT)).start() if delay else None
if not delay:
    os.kill(os.getpid(), signal.SIGINT)  # at once: while lingen_cli itself imports
from lingen_cli.app import main
main()
"""


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5])
def test_ctrl_c_any_moment_one_line_130(ckpt, tmp_path, delay):
    """SIGINT from inside the process at a chosen moment after Python started (the interpreter's own
    start-up, before any lingen code, is Python's and is left out): during the imports, the model
    load or the rendering → exit 130 with one line, no file."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "SIGINT_AFTER_S": str(delay)}
    p = subprocess.run([sys.executable, "-c", _SIGINT_AFTER.replace("if not delay:\n    os.kill", "if not delay:\n    import lingen_cli; os.kill"),
                        "generate", "x", "--model", str(ckpt), "--length", "5f", "--out", str(tmp_path)],
                       env=env, capture_output=True, timeout=300)
    err = p.stderr.decode()
    if p.returncode == 0:
        pytest.skip("finished before the signal")
    assert p.returncode == 130, err
    assert "Traceback" not in err and [l for l in err.splitlines() if l.strip()] == [l for l in err.splitlines() if "interrupted" in l], err
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


# ----------------------------------------------------------------------------- training

def _write_vae_yaml(tmp_path, data, extra=""):
    y = tmp_path / "t.yaml"
    y.write_text(f"stage: vae\nrun_dir: {tmp_path}/run\nsteps: 1\nbatch_size: 2\nlog_every: 1\nsave_every_steps: 1\n"
                 f"vae: {{latent_channels: 4, base_channels: 8, channel_mult: [1, 1, 2, 2]}}\n{data}\n{extra}")
    return y


def test_train_folder_missing_empty_and_a_corrupt_clip_skipped(tmp_path):
    from lingen_model.io.video import write_mp4

    folder = f"data: {{source: folder, path: {tmp_path}/clips, height: 32, width: 32, frames: 5, still_prob: 0}}"
    line = one_line_error(runner.invoke(app, ["train", str(_write_vae_yaml(tmp_path, folder)), "--quiet"]))
    assert "data folder not found" in line
    (tmp_path / "clips").mkdir()
    assert "no captioned videos" in one_line_error(runner.invoke(app, ["train", str(_write_vae_yaml(tmp_path, folder))]))
    write_mp4(np.random.default_rng(1).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), tmp_path / "clips" / "good.mp4", 8)
    (tmp_path / "clips" / "good.txt").write_text("noise")
    for name, data in (("bad", b"\x00" * 100), ("empty", b"")):
        (tmp_path / "clips" / f"{name}.mp4").write_bytes(data)
        (tmp_path / "clips" / f"{name}.txt").write_text(name)
    r = runner.invoke(app, ["train", str(_write_vae_yaml(tmp_path, folder)), "--quiet", "--steps", "3"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "train_state.json").is_file()
    assert "does not decode" in r.output and "2 clip(s) skipped so far" in r.output, r.output


def test_train_failed_save_leaves_the_previous_save_whole(tmp_path, monkeypatch):
    import lingen_model.training.trainer as trainer

    y = _write_vae_yaml(tmp_path, "data: {source: shapes, height: 32, width: 32, frames: 5, still_prob: 0}")
    assert runner.invoke(app, ["train", str(y), "--quiet"]).exit_code == 0
    files = lambda: {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted((tmp_path / "run").rglob("*")) if p.is_file()}  # noqa: E731
    before = files()

    def boom(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer.Trainer, "_vae_config_with_latent_stats", lambda self, ema=None: boom(self))
    one_line_error(runner.invoke(app, ["train", str(y), "--quiet", "--steps", "2"]), codes=(1,))
    assert files() == before


@pytest.mark.parametrize("damage", ["truncated_state", "truncated_weights", "other_size", "steps_below"])
def test_train_resume_problems_one_line(tmp_path, damage):
    y = _write_vae_yaml(tmp_path, "data: {source: shapes, height: 32, width: 32, frames: 5, still_prob: 0}")
    assert runner.invoke(app, ["train", str(y), "--quiet", "--steps", "2"]).exit_code == 0
    run = tmp_path / "run"
    steps = "3"
    if damage == "truncated_state":
        (run / "train_state.json").write_text((run / "train_state.json").read_text()[:40])
    elif damage == "truncated_weights":
        shard = next((run / "checkpoints").rglob("*.safetensors"))  # a shard of the distributed checkpoint
        shard.write_bytes(shard.read_bytes()[:200])
    elif damage == "other_size":
        y.write_text(y.read_text().replace("base_channels: 8", "base_channels: 16"))
    else:
        steps = "1"
    line = one_line_error(runner.invoke(app, ["train", str(y), "--quiet", "--steps", steps]))
    assert ("cannot resume" in line) if damage != "steps_below" else ("already at step 2" in line)


# ----------------------------------------------------------------------------- property-based

_VALUES = st.sampled_from(["0", "-1", "-3", "1", "2", "5f", "4s", "nan", "inf", "1e9", "", "x", "é", "\udcff", "32",
                           "16x16", "/tmp", "/etc/passwd", "/dev/zero", "9" * 50 + "s"])
_GEN_OPTS = ["--length", "--res", "--fps", "--steps", "--cfg", "--seed", "--sampler", "--device", "--dtype", "--prompts",
             "--preset"]
_GEN_FLAGS = ["--json", "--quiet", "--overwrite", "--skip-existing", "--force"]


@st.composite
def _generate_args(draw):
    args = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            args += [draw(st.sampled_from(_GEN_OPTS)), draw(_VALUES)]
        else:
            args.append(draw(st.sampled_from(_GEN_FLAGS)))
    return args


_JSONL_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(allow_nan=True), st.text(max_size=6),
                         st.lists(st.integers(), max_size=2))
_JSONL_LINE = st.dictionaries(st.sampled_from(["prompt", "length", "res", "fps", "steps", "cfg", "seed", "out",
                                               "negative_prompt"]), _JSONL_VALUE, max_size=4)


def _no_final_file_unless_ok(folder: Path, ok: bool):
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    if not ok:
        assert not [p for p in files if p.suffix in (".mp4", ".json")], files
    mp4s = {p.with_suffix("") for p in files if p.suffix == ".mp4"}
    sides = {p.with_suffix("") for p in files if p.suffix == ".json"}
    assert mp4s == sides, files  # both or neither
    assert not [p for p in files if p.name.startswith(".")], files  # no temp file left


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=_generate_args(), lines=st.lists(_JSONL_LINE, max_size=3), use_file=st.booleans())
def test_property_generate_options_and_jsonl(ckpt, tmp_path_factory, args, lines, use_file):
    tmp = tmp_path_factory.mktemp("prop")
    out = tmp / "o"
    base = ["--model", str(ckpt), "--out", str(out), "--steps", "1", "--length", "1f"]
    if use_file:
        pf = tmp / "p.jsonl"
        pf.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
        argv = ["generate", "--prompts", str(pf), *[a for a in args if a != "--prompts"], *base]
    else:
        argv = ["generate", "a red circle", *args, *base]
    r = runner.invoke(app, argv)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1, 2)
    _no_final_file_unless_ok(out, r.exit_code in (0, 1))


_EVAL_BENCH = st.lists(st.tuples(st.sampled_from(["--steps", "--cfg", "--limit", "--length", "--json", "--save-dir",
                                                  "--fps", "--cell-timeout", "--res", "--repeats"]), _VALUES), max_size=3)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=_EVAL_BENCH, command=st.sampled_from(["eval", "benchmark"]))
def test_property_eval_and_benchmark_options(ckpt, tmp_path_factory, opts, command):
    tmp = tmp_path_factory.mktemp("prop")
    allowed = {"eval": {"--steps", "--cfg", "--limit", "--length", "--json", "--save-dir"},
               "benchmark": {"--steps", "--length", "--json", "--fps", "--cell-timeout", "--res", "--repeats"}}[command]
    flat = [x for k, v in opts if k in allowed
            for x in (k, str(tmp / v) if k in ("--json", "--save-dir") and not v.startswith("/") else v.replace("/tmp", str(tmp)))]
    base = (["--ground-truth", "--limit", "1", "--length", "1f"] if command == "eval"
            else ["--flops-only", "--res", "32", "--length", "5f"])
    r = runner.invoke(app, [command, *flat, *base])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1, 2)


_TRAIN_OPTS = st.lists(st.tuples(st.sampled_from(["--steps", "--batch-size", "--run-dir"]),
                                  st.sampled_from(["0", "-1", "1", "2", "x", "", "/etc/passwd", "/dev/null"])), max_size=2)
_TRAIN_DATA = st.sampled_from(["shapes", "missing", "empty", "corrupt"])


def _train_doc(tmp, data):
    folder = {"source": "folder", "path": str(tmp / "clips"), "height": 16, "width": 16, "frames": 1, "still_prob": 1.0}
    if data != "missing" and data != "shapes":
        (tmp / "clips").mkdir(exist_ok=True)
        if data == "corrupt":
            (tmp / "clips" / "bad.mp4").write_bytes(b"\x00" * 64)
            (tmp / "clips" / "bad.txt").write_text("bad")
    return {"stage": "vae", "run_dir": str(tmp / "run"), "steps": 1, "batch_size": 1, "log_every": 1,
            "save_every_steps": 1, "vae": {"latent_channels": 4, "base_channels": 8, "channel_mult": [1, 1, 2, 2]},
            "data": {"source": "shapes", "height": 16, "width": 16, "frames": 1, "still_prob": 1.0}
            if data == "shapes" else folder}


def _check_train_result(r, run: Path):
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1, 2)
    if r.exit_code != 0 and run.exists():  # a failed run never leaves weights without their state
        assert not list(run.glob("*.safetensors")) or (run / "train_state.json").exists()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=_TRAIN_OPTS, data=_TRAIN_DATA)
def test_property_train_options_and_data(tmp_path_factory, opts, data):
    import yaml

    tmp = tmp_path_factory.mktemp("prop")
    (tmp / "t.yaml").write_text(yaml.safe_dump(_train_doc(tmp, data)))
    flat = [x for k, v in opts for x in (k, v if not (k == "--steps" and v.isdigit() and int(v) > 2) else "2")]
    flat = [str(tmp / x) if i and flat[i - 1] == "--run-dir" and not x.startswith("/") else x  # never in the cwd
            for i, x in enumerate(flat)]
    r = runner.invoke(app, ["train", str(tmp / "t.yaml"), "--quiet", *flat])
    _check_train_result(r, tmp / "run")


@pytest.mark.parametrize("patch", [{"lr": "fast"}, {"save_every_steps": 0}, {"log_every": 0}, {"num_threads": -1},
                                   {"ema_decay": 5}, {"vae": {"latent_channels": 4, "wings": 2}},
                                   {"data": {"source": "shapes", "height": 0}}])
def test_train_yaml_values_refused(tmp_path, patch):
    import yaml

    doc = _train_doc(tmp_path, "shapes")
    doc.update(patch)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    r = runner.invoke(app, ["train", str(tmp_path / "t.yaml"), "--quiet"])
    _check_train_result(r, tmp_path / "run")
    assert r.exit_code == 2, r.output


_SIGINT_IN_A_BRANCH = """
import os, signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also where it was ignored
sys.argv = ["lingen", *sys.argv[1:]]
import torch
from lingen_model.models import branches
real, main_thread = branches.run_branches, threading.main_thread().ident

def run_branches(fns, device, **kw):  # Ctrl-C lands while a worker is inside an operator
    def busy(fn=fns[0]):
        signal.pthread_kill(main_thread, signal.SIGINT)
        a = torch.randn(400, 400)
        for _ in range(200):
            a = torch.tanh(a @ a)
        return fn()
    return real([busy, *fns[1:]], device, **kw)

import lingen_model.models.denoiser as denoiser
denoiser.run_branches = run_branches
from lingen_cli.app import main
main()
"""


def test_ctrl_c_inside_a_cpu_branch_one_line_130(ckpt, tmp_path):
    """SIGINT while a CPU-branch worker (models/branches.py) is inside an operator: exit 130 with one
    error line, no file. Leaving before the worker is done aborts the process ("terminate called without an
    active exception", exit -6) when the interpreter exits under it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "LINGEN_CPU_BRANCHES": "on",
           "OMP_NUM_THREADS": "2"}
    p = subprocess.run([sys.executable, "-c", _SIGINT_IN_A_BRANCH, "generate", "x", "--model", str(ckpt),
                        "--length", "5f", "--out", str(tmp_path)], env=env, capture_output=True, timeout=300)
    err = p.stderr.decode()
    assert p.returncode == 130, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert "Traceback" not in err and "terminate" not in err, err
    assert [l for l in lines if "interrupted" in l] == lines[-1:], err  # one line, the last (after the phase lines)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))
