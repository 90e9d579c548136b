"""`lingen train`: config checks, VAE and denoiser stages, resume, export, mp4-folder data, torchrun DDP."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.training.data import DataConfig, batches

runner = CliRunner()
TINY_VAE = {"latent_channels": 4, "base_channels": 8, "channel_mult": [1, 1, 2, 2]}
TINY_DENOISER = {"size": "tiny", "mixer": "mate", "overrides": {"width": 32, "depth": 2, "num_heads": 2, "headdim": 16,
                                                                "d_state": 8, "ffn_dim": 64, "chunk_size": 16,
                                                                "window": [2, 2, 2]}}
DATA = {"source": "shapes", "height": 32, "width": 32, "fps": 8, "frames": 5, "still_prob": 0.3}


def write_cfg(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def train(cfg_path, *extra):
    return runner.invoke(app, ["train", str(cfg_path), "-q", *map(str, extra)])


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae")
    cfg = write_cfg(d / "vae.yaml", stage="vae", run_dir=str(d / "run"), steps=3, batch_size=2, save_every_steps=2,
                    log_every=1, data=DATA, vae=TINY_VAE)
    r = train(cfg)
    assert r.exit_code == 0, r.output
    return d / "run", cfg


def test_config_errors_are_one_line(tmp_path):
    bad = write_cfg(tmp_path / "a.yaml", stage="vae", run_dir="x", colour=1)
    r = train(bad)
    assert r.exit_code == 2 and "unknown key(s): colour" in r.output
    r = train(write_cfg(tmp_path / "b.yaml", stage="painting", run_dir="x"))
    assert r.exit_code == 2 and "stage must be" in r.output
    r = train(write_cfg(tmp_path / "c.yaml", stage="denoiser", run_dir="x"))
    assert r.exit_code == 2 and "vae_checkpoint" in r.output
    r = train(tmp_path / "missing.yaml")
    assert r.exit_code == 2 and "cannot read training config" in r.output
    r = train(write_cfg(tmp_path / "d.yaml", stage="vae", run_dir="x", data={"frames": 6}))
    assert r.exit_code == 2 and "1 + 4k" in r.output
    r = train(write_cfg(tmp_path / "e.yaml", stage="vae", run_dir="x", t_offset_max=-3))
    assert r.exit_code == 2 and "t_offset_max must be" in r.output
    r = train(write_cfg(tmp_path / "f.yaml", stage="vae", run_dir="x", t_offset_prob=2))
    assert r.exit_code == 2 and "t_offset_prob must be" in r.output
    for bad in ("high", 9, True):
        r = train(write_cfg(tmp_path / "g.yaml", stage="vae", run_dir="x", t_logit_mean=bad))
        assert r.exit_code == 2 and "t_logit_mean must be" in r.output
    r = train(write_cfg(tmp_path / "h.yaml", stage="vae", run_dir="x", amp="fp8"))
    assert r.exit_code == 2 and "amp must be" in r.output
    for key, bad in (("contrast_weight", 0.9), ("contrast_weight", "yes"), ("contrast_t_min", -0.1),
                     ("t_high_prob", 1.5), ("t_high_min", 1.0), ("lr_floor", 1.5), ("lr_floor", -0.1)):
        r = train(write_cfg(tmp_path / "i.yaml", stage="vae", run_dir="x", **{key: bad}))
        assert r.exit_code == 2 and f"{key} must be" in r.output


def test_vae_stage_saves_and_resumes(vae_run):
    run, cfg = vae_run
    state = json.loads((run / "train_state.json").read_text())
    assert state["step"] == 3 and state["stage"] == "vae"
    vcfg = json.loads((run / "vae_config.json").read_text())
    assert vcfg["scaling_factor"] > 0 and vcfg["latent_channels"] == 4
    assert (run / "vae_ema.safetensors").is_file()  # what the denoiser stage loads
    assert any((run / state["checkpoint"]).glob("*.safetensors"))  # the distributed checkpoint
    r = train(cfg, "--steps", 5)
    assert r.exit_code == 0, r.output
    assert "resumed" in r.output and "at step 3" in r.output
    assert json.loads((run / "train_state.json").read_text())["step"] == 5


def test_denoiser_stage_exports_a_checkpoint_that_generates(vae_run, tmp_path):
    run, _ = vae_run
    export = tmp_path / "export"
    cfg = write_cfg(tmp_path / "den.yaml", stage="denoiser", run_dir=str(tmp_path / "den"), vae_checkpoint=str(run),
                    steps=2, batch_size=2, log_every=1, data=DATA, denoiser=TINY_DENOISER,
                    export={"dir": str(export), "name": "t", "sampling": {"steps": 2, "cfg_scale": 2.0}})
    r = train(cfg)
    assert r.exit_code == 0, r.output
    hist = json.loads((tmp_path / "den" / "train_state.json").read_text())["history"]
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert all(h["t_offset"] == 0 for h in hist)  # t_offset_max defaults to 0: no offsets
    from lingen_model.generation.pipeline import LinGenPipeline

    pipe = LinGenPipeline.from_pretrained(export)
    frames = pipe("a red circle moving left", num_frames=5, seed=0)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    assert json.loads((export / "config.json").read_text())["training"]["steps"] == 2


def test_denoiser_stage_draws_temporal_offsets(vae_run, tmp_path):
    run, _ = vae_run
    cfg = write_cfg(tmp_path / "off.yaml", stage="denoiser", run_dir=str(tmp_path / "off"), vae_checkpoint=str(run),
                    steps=3, batch_size=1, log_every=1, data={**DATA, "frames": [5, 9]}, denoiser=TINY_DENOISER,
                    t_offset_max=50, t_offset_prob=1.0)
    r = train(cfg)
    assert r.exit_code == 0, r.output
    hist = json.loads((tmp_path / "off" / "train_state.json").read_text())["history"]
    offsets = [h["t_offset"] for h in hist]
    assert all(0 <= o <= 50 for o in offsets) and any(o > 0 for o in offsets)


@pytest.mark.parametrize("mean", [-2.5, 2.5])
def test_t_logit_mean_moves_the_training_times(vae_run, tmp_path, mean):
    """u ~ N(mean, 1): with |mean| = 2.5 about 99 % of the draws fall on the mean's side of t = 0.5."""
    run, _ = vae_run
    cfg = write_cfg(tmp_path / "t.yaml", stage="denoiser", run_dir=str(tmp_path / "t"), vae_checkpoint=str(run),
                    steps=3, batch_size=8, log_every=1, data=DATA, denoiser=TINY_DENOISER, t_logit_mean=mean)
    r = train(cfg)
    assert r.exit_code == 0, r.output
    ts = [t for h in json.loads((tmp_path / "t" / "train_state.json").read_text())["history"] for t in h["t"]]
    assert len(ts) == 24 and all(0 < t < 1 for t in ts)
    assert sum((t > 0.5) == (mean > 0) for t in ts) >= 21


def test_t_high_prob_trains_near_pure_noise(vae_run, tmp_path):
    run, _ = vae_run
    cfg = write_cfg(tmp_path / "h.yaml", stage="denoiser", run_dir=str(tmp_path / "h"), vae_checkpoint=str(run),
                    steps=3, batch_size=8, log_every=1, data=DATA, denoiser=TINY_DENOISER, t_logit_mean=-2.5,
                    t_high_prob=1.0, t_high_min=0.95)
    r = train(cfg)
    assert r.exit_code == 0, r.output
    ts = [t for h in json.loads((tmp_path / "h" / "train_state.json").read_text())["history"] for t in h["t"]]
    assert len(ts) == 24 and all(0.95 <= t <= 1.0 for t in ts)  # logit-normal(−2.5) alone puts ~99 % below 0.5


def test_t_ramp_prob_trains_on_per_frame_ramps(vae_run, tmp_path):
    """t_ramp_prob 1: every sample's times are a non-decreasing ramp over its latent frames (5 and 9
    video frames; 3 latent frames for 9), slopes ≤ t_ramp_max, logged per frame."""
    run, _ = vae_run
    cfg = write_cfg(tmp_path / "r.yaml", stage="denoiser", run_dir=str(tmp_path / "r"), vae_checkpoint=str(run),
                    steps=3, batch_size=4, log_every=1, data={**DATA, "frames": [5, 9]}, denoiser=TINY_DENOISER,
                    t_ramp_prob=1.0, t_ramp_max=0.4)
    r = train(cfg)
    assert r.exit_code == 0, r.output
    hist = json.loads((tmp_path / "r" / "train_state.json").read_text())["history"]
    ramps = [t for h in hist for t in h["t"]]
    assert len(ramps) == 12 and all(isinstance(t, list) for t in ramps) and any(len(t) == 3 for t in ramps)
    assert all(0 <= b - a <= 0.4 + 1e-4 for t in ramps for a, b in zip(t, t[1:]))
    assert any(t[-1] > t[0] for t in ramps)


def test_contrast_weight_subtracts_the_reversed_clip_term(vae_run, tmp_path):
    """Same seeds, data, t and noise: ΔFM with the reversed clip lowers the first step's objective by
    λ·mean(‖v − (ε − x̃)‖²) over captioned samples; with contrast_t_min = 1 no sample qualifies and
    the objective equals plain flow matching."""
    run, _ = vae_run

    def first_loss(name, **extra):
        cfg = write_cfg(tmp_path / f"{name}.yaml", stage="denoiser", run_dir=str(tmp_path / name), vae_checkpoint=str(run),
                        steps=1, batch_size=4, log_every=1, data={**DATA, "still_prob": 0.0}, denoiser=TINY_DENOISER,
                        caption_dropout=0.0, **extra)
        r = train(cfg)
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / name / "train_state.json").read_text())["history"][0]["loss"]

    plain = first_loss("plain")
    assert first_loss("never", contrast_weight=0.2, contrast_t_min=1.0) == pytest.approx(plain, rel=1e-6)
    contrast = first_loss("always", contrast_weight=0.2, contrast_t_min=0.0)
    assert contrast < 0.95 * plain  # λ = 0.2 times a distance at least as large as the plain loss's scale


def test_folder_source_reads_captioned_mp4s(tmp_path):
    from lingen_model.io.video import write_mp4
    from lingen_model.shapes.clips import make_clip

    for i in range(2):
        frames, caption, _ = make_clip(i, 12, 48, 64, 8)
        write_mp4(frames, tmp_path / f"c{i}.mp4", 8)
        (tmp_path / f"c{i}.txt").write_text(caption)
    (tmp_path / "uncaptioned.mp4").write_bytes(b"")  # ignored: no .txt
    cfg = DataConfig(source="folder", path=str(tmp_path), height=32, width=32, fps=8, frames=9, still_prob=0.0)
    video, caps = next(batches(cfg, 3, seed=0))
    assert video.shape == (3, 3, 9, 32, 32) and len(caps) == 3
    assert video.min() >= -1 and video.max() <= 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no captioned videos"):
        next(batches(DataConfig(source="folder", path=str(tmp_path / "empty")), 1, 0))
    with pytest.raises(ValueError, match="data folder not found"):
        next(batches(DataConfig(source="folder", path=str(tmp_path / "missing")), 1, 0))


def test_shapes_source_is_deterministic_and_hybrid():
    cfg = DataConfig(height=32, width=32, frames=5, still_prob=0.5, crop=16)
    a = [next(batches(cfg, 2, seed=3)) for _ in range(1)][0]
    b = next(batches(cfg, 2, seed=3))
    assert a[1] == b[1] and (a[0] == b[0]).all()
    frames_seen = {next(batches(cfg, 1, seed=s))[0].shape[2] for s in range(12)}
    assert frames_seen == {1, 5}
    assert a[0].shape[-2:] == (16, 16)


def test_multi_length_batches():
    import random

    cfg = DataConfig(height=16, width=16, frames=[5, 9], still_prob=0.2)
    rng = random.Random(0)
    drawn = [cfg.draw_frames(rng) for _ in range(400)]
    assert set(drawn) == {1, 5, 9} and 40 <= drawn.count(1) <= 120 and abs(drawn.count(5) - drawn.count(9)) < 80
    stream = batches(cfg, 2, seed=1)
    assert {next(stream)[0].shape[2] for _ in range(12)} == {1, 5, 9}
    for bad in ([], [5, 6], 0, [True]):
        with pytest.raises(ValueError, match="1 \\+ 4k"):
            DataConfig(frames=bad)
    with pytest.raises(ValueError, match="data.crop"):
        DataConfig(frames=[5, 9], crop=0)
    with pytest.raises(ValueError, match="data.still_prob"):
        DataConfig(frames=[5, 9], still_prob=2.0)
    for bad in (-0.5, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="data.entry_prob"):
            DataConfig(frames=[5, 9], entry_prob=bad)
    # the shapes stream hands entry_prob to the world: its clips are make_clip's with it
    from lingen_model.shapes.clips import make_clip

    cfg = DataConfig(height=16, width=16, frames=5, still_prob=0.0, max_objects=1, entry_prob=1.0)
    video, caps = next(batches(cfg, 2, seed=4))
    for i in range(2):
        frames, caption, _ = make_clip(4 * 1_000_000_000 + i, 5, 16, 16, 8.0, max_objects=1, entry_prob=1.0)
        assert caps[i] == caption
        assert torch.allclose(video[i], torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0)


def test_torchrun_two_process_data_parallel(vae_run, tmp_path):
    run, _ = vae_run
    cfg = write_cfg(tmp_path / "ddp.yaml", stage="denoiser", run_dir=str(tmp_path / "ddp"), vae_checkpoint=str(run),
                    steps=2, batch_size=1, log_every=1, data=DATA, denoiser=TINY_DENOISER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "lingen_cli", "train", str(cfg), "-q"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "train_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 2


def test_amp_bf16_autocasts_the_denoiser_on_cpu(vae_run, tmp_path):
    """Same seed and batches: the first step's gradient norm under bf16 is close to the float32 one but
    not bit-identical. (Not the loss: the zero-initialised final layer outputs exactly 0 at step 1 in
    both, and after one warm-up step at lr 1e-5 its output is too small to move a loss of ~2 within
    float32 resolution — measured identical losses at step 2 once the fixture's VAE had 5 steps.
    The gradient flows back through every autocast matmul, so it shows bf16 at once.)"""
    run, _ = vae_run
    grads = {}
    for amp in ("off", "bf16"):
        cfg = write_cfg(tmp_path / f"{amp}.yaml", stage="denoiser", run_dir=str(tmp_path / amp), vae_checkpoint=str(run),
                        steps=1, batch_size=2, log_every=1, data=DATA, denoiser=TINY_DENOISER, amp=amp)
        r = train(cfg)
        assert r.exit_code == 0, r.output
        grads[amp] = json.loads((tmp_path / amp / "train_state.json").read_text())["history"][0]["grad_norm"]
    assert grads["off"] != grads["bf16"]
    assert grads["bf16"] == pytest.approx(grads["off"], rel=0.05)


def test_max_minutes_stops_saves_and_resumes(vae_run, tmp_path):
    """A wall-clock budget (``max_minutes``) ends the run after the step that crosses it, saved and
    resumable: the next invocation continues from that step (the equal-budget stages of issue 14)."""
    run, _ = vae_run
    kw = dict(stage="denoiser", run_dir=str(tmp_path / "den"), vae_checkpoint=str(run), steps=50, batch_size=1,
              log_every=1, save_every_steps=1000, data=DATA, denoiser=TINY_DENOISER, max_minutes=1e-4)
    r = train(write_cfg(tmp_path / "b.yaml", **kw))
    assert r.exit_code == 0, r.output
    assert "max_minutes" in r.output
    state = json.loads((tmp_path / "den" / "train_state.json").read_text())
    assert state["step"] == 1  # 6 ms of budget: the first step crosses it
    r = train(write_cfg(tmp_path / "c.yaml", **{**kw, "max_minutes": 1e-4}))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "den" / "train_state.json").read_text())["step"] == 2


def test_stop_at_step_ends_the_run_on_the_schedule_of_steps(vae_run, tmp_path):
    """``stop_at_step`` ends a run at that step, saved and exported, with the learning rate of a run to
    ``steps`` (the reproducible form of a stage once stopped by ``max_minutes``); past ``steps`` it is refused."""
    from lingen_model.training.trainer import _lr_at

    run, _ = vae_run
    kw = dict(stage="denoiser", run_dir=str(tmp_path / "den"), vae_checkpoint=str(run), steps=40, batch_size=1,
              log_every=1, save_every_steps=1000, warmup_steps=1, lr=1e-3, data=DATA, denoiser=TINY_DENOISER,
              stop_at_step=3, export={"dir": str(tmp_path / "export"), "name": "x"})
    r = train(write_cfg(tmp_path / "a.yaml", **kw))
    assert r.exit_code == 0, r.output
    assert "stop_at_step" in r.output
    state = json.loads((tmp_path / "den" / "train_state.json").read_text())
    assert state["step"] == 3
    assert [h["lr"] for h in state["history"]] == pytest.approx([_lr_at(s, {**kw, "lr_floor": 0.1}) for s in range(3)])
    assert (tmp_path / "export" / "config.json").is_file()
    r = train(write_cfg(tmp_path / "b.yaml", **{**kw, "stop_at_step": 41}))
    assert r.exit_code != 0 and "stop_at_step" in r.output and "Traceback" not in r.output


def test_a_bare_yaml_off_for_amp_is_refused_with_the_fix(tmp_path):
    """YAML 1.1 reads ``amp: off`` as false: the error names the key and says to quote the word."""
    from lingen_model.errors import InputError
    from lingen_model.training.config import load_train_config

    p = tmp_path / "c.yaml"
    p.write_text("stage: vae\nrun_dir: r\namp: off\n")
    with pytest.raises(InputError, match=r"amp must be one of .*got False \(YAML reads a bare off"):
        load_train_config(p)
    p.write_text('stage: vae\nrun_dir: r\namp: "off"\n')
    assert load_train_config(p)["amp"] == "off"


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_says_so(vae_run, tmp_path, monkeypatch, native):
    """``amp: bf16`` on a CPU where oneDNN emulates bf16 logs a note that it is slower than float32."""
    from lingen_model.training import trainer

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: native)
    run, _ = vae_run
    cfg = write_cfg(tmp_path / "c.yaml", stage="denoiser", run_dir=str(tmp_path / "den"), vae_checkpoint=str(run),
                    steps=1, batch_size=1, data=DATA, denoiser=TINY_DENOISER, amp="bf16")
    r = train(cfg)
    assert r.exit_code == 0, r.output
    assert ("no native bf16" in r.output) == (not native)


def test_lr_schedule_warms_up_then_follows_the_cosine_to_its_floor():
    """_lr_at against the formula written out: linear warm-up, then lr·(f + (1 − f)·(1 + cos πx)/2) with x the
    share of the post-warm-up steps done, ending at the floor f (default 0.1; a cooldown stage uses 0)."""
    import math

    from lingen_model.training.config import TrainConfig
    from lingen_model.training.trainer import _lr_at

    default = TrainConfig(stage="vae", run_dir="x").lr_floor
    assert default == 0.1
    for floor in (None, 0.0, 0.25):
        f = default if floor is None else floor
        cfg = {"lr": 2e-3, "warmup_steps": 10, "steps": 110, "lr_floor": f}
        assert _lr_at(0, cfg) == pytest.approx(2e-4) and _lr_at(9, cfg) == pytest.approx(2e-3)
        for step in (10, 35, 60, 97, 110, 500):
            x = min(1.0, (step - 10) / 100)
            assert _lr_at(step, cfg) == pytest.approx(2e-3 * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * x))), abs=1e-12)
        assert _lr_at(110, cfg) == pytest.approx(2e-3 * f, abs=1e-12)


def test_lr_schedule_counted_from_schedule_start_is_the_schedule_shifted(tmp_path):
    """``schedule_start`` = N shifts the whole schedule by N steps (warm-up from N, cosine from N + warm-up to
    ``steps``); 0 warm-up steps start on the cosine; a start at or past ``steps`` is refused by the config."""
    import math

    from lingen_model.errors import InputError
    from lingen_model.training.config import load_train_config
    from lingen_model.training.trainer import _lr_at

    gen = torch.Generator().manual_seed(14)
    for _ in range(5):
        start, warm, length = (int(v) for v in torch.randint(1, 400, (3,), generator=gen))
        warm = min(warm, length - 1)
        lr, f = 10 ** (-4 * torch.rand(1, generator=gen).item() - 1), torch.rand(1, generator=gen).item()
        shifted = {"lr": lr, "warmup_steps": warm, "steps": start + length, "lr_floor": f, "schedule_start": start}
        plain = {**shifted, "steps": length, "schedule_start": 0}
        for s in torch.randint(0, length + 50, (20,), generator=gen).tolist() + [0, warm, length]:
            assert _lr_at(start + s, shifted) == pytest.approx(_lr_at(s, plain), rel=1e-12)
        assert _lr_at(start - 1, shifted) == pytest.approx(_lr_at(0, plain), rel=1e-12)
    # no warm-up: the cosine written out, from the peak at the start step to the floor at `steps`
    cfg = {"lr": 3e-4, "warmup_steps": 0, "steps": 25000, "lr_floor": 0.0, "schedule_start": 20000}
    for step in (20000, 20001, 21234, 22500, 24999, 25000):
        x = (step - 20000) / 5000
        assert _lr_at(step, cfg) == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * x)), abs=1e-15)
    # stage 5c's earlier form (warm-up as long as the steps before the stage, the run resumed at its end) gives
    # the same rates from the step the stage starts at
    old = {**cfg, "warmup_steps": 20000, "schedule_start": 0}
    assert all(_lr_at(s, old) == pytest.approx(_lr_at(s, cfg), rel=1e-12) for s in range(20000, 25001, 7))
    p = tmp_path / "c.yaml"
    p.write_text("stage: vae\nrun_dir: r\nsteps: 100\nschedule_start: 100\n")
    with pytest.raises(InputError, match=r"schedule_start \(100\) must be before steps \(100\)"):
        load_train_config(p)


def test_a_run_follows_the_schedule_counted_from_schedule_start(vae_run, tmp_path):
    """The trainer's logged learning rates are ``_lr_at`` of the config with its ``schedule_start``."""
    from lingen_model.training.trainer import _lr_at

    run, _ = vae_run
    kw = dict(stage="denoiser", run_dir=str(tmp_path / "den"), vae_checkpoint=str(run), steps=6, batch_size=1,
              log_every=1, save_every_steps=1000, warmup_steps=2, lr=1e-3, lr_floor=0.0, schedule_start=2,
              data=DATA, denoiser=TINY_DENOISER)
    r = train(write_cfg(tmp_path / "a.yaml", **kw))
    assert r.exit_code == 0, r.output
    lrs = [h["lr"] for h in json.loads((tmp_path / "den" / "train_state.json").read_text())["history"]]
    assert lrs == pytest.approx([_lr_at(s, kw) for s in range(6)])
    assert lrs == pytest.approx([5e-4, 5e-4, 5e-4, 1e-3, 1e-3, 5e-4])  # warm-up from step 2, cosine from 4 to 6
