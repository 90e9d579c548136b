"""``lingen train`` stage ``distill``: a tiny random Wan (diffusers layout) converted by ``lingen convert``
with small TESA windows is distilled toward its full-attention teacher. Through the CLI the student's
relative error against the teacher falls (measured on held-out clips, before vs after), ``train: ma``
leaves every Wan weight (the teacher) bit-identical, the export loads in ``lingen generate``; resume
equals the uninterrupted run; preprocessed Wan shards (``lingen preprocess --vae <converted>``) feed it;
2 ranks (FSDP2, gloo) train like 1 rank with the same global batch (slow-marked)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

pytest.importorskip("diffusers")

from lingen_cli.app import app  # noqa: E402
from lingen_model.generation.checkpoint import load_checkpoint  # noqa: E402
from lingen_model.models.text_encoder import build_text_encoder  # noqa: E402
from lingen_model.training.config import load_train_config  # noqa: E402
from lingen_model.training.data import DataConfig, batches  # noqa: E402
from lingen_model.training.trainer import Trainer  # noqa: E402
from wan_fixtures import save_tiny_wan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
DATA = {"source": "shapes", "height": 32, "width": 32, "fps": 8, "frames": [5], "still_prob": 0.0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is fastest and immune to a loaded machine."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    """A tiny random Wan converted with 1×2×2-token windows and an MA-branch (out_proj at zero)."""
    d = tmp_path_factory.mktemp("wan-distill")
    src = save_tiny_wan(d / "Wan-tiny")
    out = d / "student"
    r = runner.invoke(app, ["convert", str(src), str(out), "--window", "1,2,2", "--d-state", "8", "--headdim", "8",
                            "--review-size", "1"])
    assert r.exit_code == 0, r.output
    return out


def _yaml(path: Path, **cfg) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cfg(tmp: Path, student: Path, **kw) -> Path:
    base = {"stage": "distill", "run_dir": str(tmp / "run"), "student": str(student), "steps": 40, "batch_size": 2,
            "lr": 3e-3, "warmup_steps": 2, "ema_decay": 0.0, "log_every": 10, "save_every_steps": 100, "data": DATA}
    return _yaml(tmp / "cfg.yaml", **{**base, **kw})


@torch.no_grad()
def _rel_error(model_dir: Path, teacher_dir: Path) -> float:
    """‖v_model − v_teacher‖ / ‖v_teacher‖ on 8 held-out shapes clips (world seed 999, never trained on),
    encoded by the teacher checkpoint's VAE and UMT5, noised at t = 0.05 … 0.95; the teacher is
    ``teacher_dir``'s weights under ``as_teacher()`` (full window, MA-branch off: Wan itself)."""
    model, _, _ = load_checkpoint(model_dir)
    teacher, vae, cfg = load_checkpoint(teacher_dir)
    video, caps = next(batches(DataConfig(**{**DATA, "frames": 5}), 8, seed=999))
    x0 = vae.encode(video)
    ctx, mask = build_text_encoder(cfg["text_encoder"]).encode(caps)
    t = torch.linspace(0.05, 0.95, 8)
    tt = t.view(-1, 1, 1, 1, 1)
    z = (1 - tt) * x0 + tt * torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    with teacher.as_teacher():
        want = teacher(z, t, ctx, mask)
    return float((model(z, t, ctx, mask) - want).norm() / want.norm())


@pytest.mark.parametrize("train", ["ma", "all"])
def test_distill_stage_cli_brings_the_student_toward_its_teacher(student, tmp_path, train):
    """40 steps through `lingen train` (batch 2): ``ma`` measured 0.174 → 0.143, ``all`` (lr 1e-3) 0.174 → 0.111."""
    export = tmp_path / "distilled"
    cfg = _cfg(tmp_path, student, train=train, lr=3e-3 if train == "ma" else 1e-3)
    r = runner.invoke(app, ["train", str(cfg), "-q", "--export", str(export)])
    assert r.exit_code == 0, r.output
    assert "rel_err" in r.output  # logged per step for the distill stage
    before, after = _rel_error(student, student), _rel_error(export, student)
    print(f"train {train}: student rel. error vs teacher {before:.3f} → {after:.3f} after 40 steps")
    assert after < 0.9 * before
    hist = json.loads((tmp_path / "run" / "train_state.json").read_text())["history"]
    assert len(hist) == 40 and all(0 < h["rel_err"] < 1 for h in hist)

    ref, new = load_file(str(student / "denoiser.safetensors")), load_file(str(export / "denoiser.safetensors"))
    assert ref.keys() == new.keys()
    wan_keys = [k for k in ref if ".ma." not in k]
    if train == "ma":  # only the MA-branch moved: the teacher (Wan's weights) is exactly the converted one
        assert all(torch.equal(ref[k], new[k]) for k in wan_keys)
    else:
        assert sum(not torch.equal(ref[k], new[k]) for k in wan_keys) == len(wan_keys)
    assert any(not torch.equal(ref[k], new[k]) for k in ref if ".ma." in k)
    s_cfg, e_cfg = (json.loads((p / "config.json").read_text()) for p in (student, export))
    for key in ("denoiser", "vae", "text_encoder", "native", "sampling", "source", "license"):
        assert e_cfg[key] == s_cfg[key], key
    assert e_cfg["training"]["stage"] == "distill" and e_cfg["training"]["train"] == train
    assert (export / "LICENSE").read_text() == (student / "LICENSE").read_text()
    assert "distilled by `lingen train`" in (export / "NOTICE").read_text()
    assert all(torch.equal(v, load_file(str(student / "vae.safetensors"))[k])
               for k, v in load_file(str(export / "vae.safetensors")).items())

    if train == "ma":  # the export is what `lingen generate --model` loads
        out = tmp_path / "clips"
        r = runner.invoke(app, ["generate", "a red circle moving to the left", "--model", str(export), "--out", str(out),
                                "--res", "32x24", "--length", "9f", "--steps", "2", "--seed", "3"])
        assert r.exit_code == 0, r.output
        assert len(list(out.glob("*.mp4"))) == 1


@pytest.mark.parametrize("train", ["ma", "all"])
def test_distill_resume_equals_the_uninterrupted_run(student, tmp_path, train):
    """3 steps in one go vs 1 step, save, new process state, resume to 3: same history (losses,
    relative errors, times) and bit-identical weights and EMA (the teacher copy is rebuilt from
    ``student`` on resume; the optimizer holds only the MA-branch with ``train: ma``)."""
    kw = dict(steps=3, ema_decay=0.9, train=train)
    straight = Trainer(load_train_config(_cfg(tmp_path / "a", student, **kw)))
    straight.train()
    cut = _cfg(tmp_path / "b", student, **kw)
    Trainer(load_train_config(cut, {"steps": 1})).train()
    state = json.loads((tmp_path / "b" / "run" / "train_state.json").read_text())
    assert state["step"] == 1 and state["stage"] == "distill"
    resumed = Trainer(load_train_config(cut))
    assert resumed.step == 1
    resumed.train()
    ha, hb = (json.loads((tmp_path / n / "run" / "train_state.json").read_text())["history"] for n in "ab")
    assert [h["step"] for h in hb] == [1, 2, 3] and ha == hb
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for k, v in straight.ema.shadow.items():
        assert torch.equal(v, resumed.ema.shadow[k]), k
    if train == "ma":  # the EMA keeps the frozen Wan weights exact (copied, not averaged with rounding)
        frozen = [n for n, p in resumed.model.named_parameters() if not p.requires_grad]
        for step in range(300):  # 300 more averages: d·w + (1−d)·w rounds away from w in ~80 % of entries
            resumed.ema.update(resumed.model, step)
        assert frozen and all(torch.equal(resumed.ema.shadow[n], resumed.model.state_dict()[n]) for n in frozen)
    n_trained = sum(p.numel() for p in resumed.model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in resumed.model.parameters())
    assert (n_trained < n_all) == (train == "ma")


def test_distill_activation_checkpointing_changes_nothing(student, tmp_path):
    """Each WanBlock recomputed in backward (the teacher pass of ``train: ma`` runs the same blocks
    under no_grad with full windows): the same losses as without, bit for bit."""
    hist, calls = {}, {}
    for ac in (False, True):
        t = Trainer(load_train_config(_cfg(tmp_path / str(ac), student, steps=2, activation_checkpointing=ac)))
        calls[ac] = 0

        def count(*_, ac=ac):
            calls[ac] += 1
        t.model.blocks[0].register_forward_pre_hook(count)
        t.train()
        hist[ac] = [(h["loss"], h["rel_err"]) for h in t.history]
    assert hist[True] == hist[False]
    assert (calls[False], calls[True]) == (4, 6)  # per step: teacher + student (+ the recomputation)


def test_distill_from_preprocessed_wan_shards(student, tmp_path):
    """`lingen preprocess --vae <converted checkpoint>` writes Wan latents and UMT5 tokens; the distill
    stage trains on them (the manifest's text-encoder spec matches the student's)."""
    pytest.importorskip("av")
    from lingen_model.io.video import write_mp4
    from lingen_model.shapes.clips import make_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):
        frames, caption, _ = make_clip(100 + i, 12, 32, 32, 8)
        write_mp4(frames, videos / f"c{i}.mp4", 8)
        (videos / f"c{i}.txt").write_text(caption)
    r = runner.invoke(app, ["preprocess", str(videos), str(tmp_path / "shards"), "--vae", str(student),
                            "--frames", "5", "--height", "32", "--width", "32"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert man["text_encoder"]["backend"] == "umt5" and man["samples"][0]["latent_shape"] == [4, 2, 8, 8]
    cfg = _cfg(tmp_path, student, steps=2, data={"source": "shards", "path": str(tmp_path / "shards")})
    trainer = Trainer(load_train_config(cfg))
    trainer.train()
    assert [h["frames"] for h in trainer.history] == [5, 5] and all(h["rel_err"] > 0 for h in trainer.history)


def test_distill_config_errors_are_one_line(student, tmp_path):
    def err(**kw):
        r = runner.invoke(app, ["train", str(_yaml(tmp_path / "c.yaml", **kw)), "-q"])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        return r.output

    run = str(tmp_path / "run")
    assert "needs 'student'" in err(stage="distill", run_dir=run)
    assert "keys of the distill stage" in err(stage="denoiser", run_dir=run, vae_checkpoint=str(student), train="all")
    assert "train must be one of" in err(stage="distill", run_dir=run, student=str(student), train="some")
    assert "drop 'vae_checkpoint'" in err(stage="distill", run_dir=run, student=str(student), vae_checkpoint=run)
    assert "checkpoint directory not found" in err(stage="distill", run_dir=run, student=str(tmp_path / "nothing"))


@pytest.mark.slow
def test_two_ranks_distill_like_one_rank(student, tmp_path):
    """FSDP2 on 2 gloo ranks (batch 1 each, every WanBlock its own unit, the train-all teacher
    sharded too) vs 1 process with batch 2: the same losses, relative errors and weights."""
    from test_distributed_train import _close

    # Losses, gradient norms and relative errors agree to float32 rounding (rel 1e-5). AdamW divides each
    # gradient entry by sqrt(v) + 1e-8, turning rounding differences of near-zero entries into update
    # differences up to ~lr per step: measured max |w_2ranks - w_1rank| after 3 steps at lr 3e-3 is
    # 1.1e-5 (ma) and 4.4e-5 (all, in cross.q); W_ATOL = 5 % of one step's largest update (lr).
    W_ATOL = 0.05 * 3e-3

    runs, plan = {}, []
    for train in ("ma", "all"):
        one = _cfg(tmp_path / f"{train}1", student, steps=3, train=train, seed=3)
        t = Trainer(load_train_config(one))
        t.train()
        runs[train] = t
        two = _cfg(tmp_path / f"{train}2", student, steps=3, train=train, seed=3, batch_size=1)
        plan.append({"config": str(two), "dump": str(tmp_path / f"{train}2" / "full")})
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "fsdp_runs.py"), str(tmp_path / "plan.json")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for train, one in runs.items():
        two = json.loads((tmp_path / f"{train}2" / "run" / "train_state.json").read_text())
        assert two["world_size"] == 2
        _close(two["history"], one.history, keys=("loss", "grad_norm", "rel_err"))
        dumped = [load_file(str(tmp_path / f"{train}2" / f"full.rank{r}.safetensors")) for r in (0, 1)]
        assert all(torch.equal(dumped[0][k], dumped[1][k]) for k in dumped[0])
        w = {k: v for k, v in dumped[0].items() if not k.startswith("ema.")}
        for k, v in one.model.state_dict().items():  # see W_ATOL
            torch.testing.assert_close(w[k], v, rtol=1e-5, atol=W_ATOL, msg=k)


@pytest.mark.parametrize("name", ["stage-a", "stage-b"])
def test_shipped_distill_recipes_pass_the_schema(name):
    cfg = load_train_config(ROOT / "recipes" / "wan2.1-1.3b-distill" / f"{name}.yaml")
    assert cfg["stage"] == "distill" and cfg["train"] == ("ma" if name == "stage-a" else "all")
    assert cfg["data"].source == "shards" and cfg["activation_checkpointing"]
