"""FSDP2 training and distributed checkpoints on CPU/gloo: 2 ranks train like 1 rank with the same
global batch, resume from a DCP checkpoint equals the uninterrupted run, checkpoints reshard
2 → 1 and 1 → 2, single-file run dirs (recipes/lingen-tiny/state) still resume.

All 2-rank runs share one torchrun launch (``tests/fsdp_runs.py``), made once per module.
"""
import json
import os
import shutil
import subprocess
import time
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from lingen_cli.app import app
from lingen_model.training.data import DataConfig, batches
from lingen_model.training.data_stream import ShardedBatches
from lingen_model.training.config import load_train_config
from lingen_model.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY_VAE = {"latent_channels": 4, "base_channels": 8, "channel_mult": [1, 1, 2, 2]}
TINY_DENOISER = {"size": "tiny", "mixer": "mate", "overrides": {"width": 32, "depth": 2, "num_heads": 2, "headdim": 16,
                                                                "d_state": 8, "ffn_dim": 64, "chunk_size": 16,
                                                                "window": [2, 2, 2]}}
DATA = {"source": "shapes", "height": 32, "width": 32, "fps": 8, "frames": [5], "still_prob": 0.5}
GLOBAL_BATCH = 4
STEPS, CUT = 3, 1  # denoiser runs: steps in all, and the step of the checkpoint that resumed runs start from
# 2 ranks vs 1 rank, float32: the gradients are the same sums taken in another order (two half-batch
# means reduce-scattered and halved, vs one mean): ~1e-7 relative. Losses and gradient norms then agree
# to float32 rounding (measured over 3-4 steps: <= 1e-7 relative), so RTOL 1e-5 leaves 100x headroom.
# AdamW divides each gradient entry by sqrt(v) + 1e-8, which turns rounding differences of near-zero
# entries into update differences of up to ~lr. Measured after 3-4 steps at lr 3e-3: 4.4e-6 absolute
# on an AVX-512 VM, 2.2e-5 on an AVX2-only VM (another convolution reduction order; the VAE's
# decoder.blocks.0.conv1). W_ATOL 1e-4 is 3 % of one step's largest update (lr), so it bounds the
# mechanism, not one machine's rounding. A missing gradient average doubles the gradient norm; a rank
# training on the wrong rows or noise moves losses by ~1e-2: the history checks (RTOL) catch those.
RTOL, ATOL, W_ATOL = 1e-5, 1e-7, 1e-4


def _yaml(path: Path, **cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _history(run: Path) -> list[dict]:
    return json.loads((run / "train_state.json").read_text())["history"]


def _dump(trainer: Trainer, run: Path) -> None:
    """A 1-process trainer's final weights and EMA in the format tests/fsdp_runs.py dumps 2-rank runs."""
    tensors = {**trainer.model.state_dict(), **{f"ema.{k}": v for k, v in trainer.ema.shadow.items()}}
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(run / "full.rank0.safetensors"))


def _final(run: Path, rank: int = 0) -> tuple[dict, dict]:
    """(weights, EMA) a run held in memory at its end, as dumped by that run (not re-loaded from its
    checkpoint, so a loader bug cannot hide on both sides of a comparison)."""
    t = load_file(str(run / f"full.rank{rank}.safetensors"))
    return ({k: v for k, v in t.items() if not k.startswith("ema.")},
            {k[4:]: v for k, v in t.items() if k.startswith("ema.")})


def _close(a: list[dict], b: list[dict], keys=("loss", "grad_norm")) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["step"] == y["step"] and x["frames"] == y["frames"] and x["lr"] == y["lr"]
        for k in keys:
            assert x[k] == pytest.approx(y[k], rel=RTOL, abs=ATOL), (k, x, y)


def _weights_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=W_ATOL, msg=k)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and on a loaded 2-core machine a second spinning
    OpenMP thread made a 3-step run ~30x slower (measured: 1.0 s vs 46 s)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """1-rank runs in-process, then every 2-rank run in one torchrun launch."""
    d = tmp_path_factory.mktemp("fsdp")
    print("runs in", d)
    t0 = time.time()
    common = {"log_every": 1, "save_every_steps": 100, "lr": 3e-3, "warmup_steps": 2, "seed": 3}

    def cfg(name, **kw):
        (d / name).mkdir(exist_ok=True)
        return _yaml(d / name / "cfg.yaml", run_dir=str(d / name), **kw)

    vae_kw = dict(stage="vae", steps=3, data={**DATA, "frames": 5}, vae=TINY_VAE, **common)
    v1 = cfg("v1", batch_size=GLOBAL_BATCH, **vae_kw)
    t = Trainer(load_train_config(v1))
    t.train()
    _dump(t, d / "v1")
    den_kw = dict(stage="denoiser", vae_checkpoint=str(d / "v1"), data=DATA, denoiser=TINY_DENOISER,
                  caption_dropout=0.3, t_offset_max=4, t_high_prob=0.3, **common)
    # the reference: 1 rank, global batch, STEPS steps uninterrupted, exported at the end
    r1 = cfg("r1", batch_size=GLOBAL_BATCH, steps=STEPS, export={"dir": str(d / "r1-export"), "name": "r1"}, **den_kw)
    t = Trainer(load_train_config(r1))
    t.train()
    _dump(t, d / "r1")
    # 1 rank, CUT steps: resumed on 2 ranks below (1 -> 2)
    Trainer(load_train_config(cfg("r1half", batch_size=GLOBAL_BATCH, steps=CUT, **den_kw))).train()

    half = GLOBAL_BATCH // 2
    cfg("v2", batch_size=half, **vae_kw)
    cfg("u2", batch_size=half, steps=STEPS, export={"dir": str(d / "u2-export"), "name": "u2"}, **den_kw)
    cfg("t2", batch_size=half, steps=STEPS, **den_kw)
    cfg("r12", batch_size=half, steps=STEPS, **den_kw)
    cfg("h2", batch_size=half, steps=STEPS, dp_replicate=2, **den_kw)
    cfg("c2", batch_size=GLOBAL_BATCH, steps=STEPS, context_parallel=2, **den_kw)
    dump = {n: str(d / n / "full") for n in ("v2", "u2", "t2", "h2", "c2")}
    dump["r12"] = str(d / "r12" / "run" / "full")
    plan = [
        {"config": str(d / "v2" / "cfg.yaml"), "dump": dump["v2"]},
        {"config": str(d / "u2" / "cfg.yaml"), "dump": dump["u2"]},
        {"config": str(d / "t2" / "cfg.yaml"), "overrides": {"steps": CUT}},
        {"copy": [str(d / "t2"), str(d / "t21")], "config": str(d / "t2" / "cfg.yaml"),
         "overrides": {"activation_checkpointing": True}, "dump": dump["t2"]},
        {"copy": [str(d / "r1half"), str(d / "r12" / "run")], "config": str(d / "r12" / "cfg.yaml"),
         "overrides": {"run_dir": str(d / "r12" / "run")}, "dump": dump["r12"]},
        {"config": str(d / "h2" / "cfg.yaml"), "dump": dump["h2"]},
        {"config": str(d / "c2" / "cfg.yaml"), "overrides": {"activation_checkpointing": True}, "dump": dump["c2"]},
    ]
    (d / "plan.json").write_text(json.dumps(plan))
    print("1-rank runs", time.time() - t0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "fsdp_runs.py"), str(d / "plan.json")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(proc.stderr[-2000:], time.time() - t0)
    # 2 -> 1: the 2-rank checkpoint at step CUT, continued on one rank with the same global batch
    _yaml(d / "t21" / "cfg.yaml", **{**yaml.safe_load((d / "t2" / "cfg.yaml").read_text()),
                                     "run_dir": str(d / "t21"), "batch_size": GLOBAL_BATCH})
    t = Trainer(load_train_config(d / "t21" / "cfg.yaml"))
    t.train()
    _dump(t, d / "t21")
    return d


def test_two_ranks_train_like_one_rank_with_the_global_batch(runs):
    """Denoiser stage, FSDP2 on 2 ranks (batch 2 each) vs 1 process (batch 4): the same losses,
    gradient norms, timesteps and weights; both ranks gather the same full weights."""
    ref, two = _history(runs / "r1"), _history(runs / "u2")
    _close(two, ref)
    assert [h["t"] for h in two] == [h["t"] for h in ref]  # the same draws for the global batch
    assert len({h["frames"] for h in ref}) > 1  # multi-length batches were exercised
    assert json.loads((runs / "u2" / "train_state.json").read_text())["world_size"] == 2
    r0, r1 = (load_file(str(runs / "u2" / f"full.rank{r}.safetensors")) for r in (0, 1))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    (w, ema), (ref_w, ref_ema) = _final(runs / "u2"), _final(runs / "r1")
    _weights_close(w, ref_w)
    _weights_close(ema, ref_ema)
    # the final export: the EMA weights, gathered on rank 0, as `lingen generate` loads them
    _weights_close(load_file(str(runs / "u2-export" / "denoiser.safetensors")),
                   load_file(str(runs / "r1-export" / "denoiser.safetensors")))


def test_two_ranks_train_the_vae_like_one_rank(runs):
    ref, two = _history(runs / "v1"), _history(runs / "v2")
    _close(two, ref)
    r0, r1 = (load_file(str(runs / "v2" / f"full.rank{r}.safetensors")) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    (w, ema), (ref_w, ref_ema) = _final(runs / "v2"), _final(runs / "v1")
    _weights_close(w, ref_w)
    _weights_close(ema, ref_ema)
    _weights_close(load_file(str(runs / "v2" / "vae_ema.safetensors")), load_file(str(runs / "v1" / "vae_ema.safetensors")))


def test_resume_on_two_ranks_equals_the_uninterrupted_run(runs):
    """CUT steps, DCP checkpoint, the rest (with activation checkpointing) on 2 ranks: bit for bit
    the uninterrupted 2-rank run (same world size, same summation order; recomputation is exact)."""
    resumed, straight = _history(runs / "t2"), _history(runs / "u2")
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight]
    assert [h["grad_norm"] for h in resumed] == [h["grad_norm"] for h in straight]
    (a, ema_a), (b, ema_b) = _final(runs / "t2"), _final(runs / "u2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


@pytest.mark.parametrize("run", ["t21", "r12/run"], ids=["2->1", "1->2"])
def test_checkpoints_reshard_across_world_sizes(runs, run):
    """A 2-rank checkpoint continued on 1 rank, and a 1-rank checkpoint continued on 2 ranks, train
    like the uninterrupted 1-rank run: weights, Adam moments, EMA, RNG and data position carried over."""
    hist = _history(runs / run)
    assert [h["step"] for h in hist] == list(range(1, STEPS + 1))
    _close(hist, _history(runs / "r1"))
    (w, ema), (ref_w, ref_ema) = _final(runs / run), _final(runs / "r1")
    _weights_close(w, ref_w)
    _weights_close(ema, ref_ema)


def test_hsdp_replicate_axis_trains_like_one_rank(runs):
    """dp_replicate 2 on 2 ranks: a (2, 1) mesh, replicas all-reduce instead of reduce-scatter."""
    _close(_history(runs / "h2"), _history(runs / "r1"))
    _weights_close(_final(runs / "h2")[0], _final(runs / "r1")[0])


def test_context_parallel_two_ranks_train_like_one_rank(runs):
    """context_parallel 2 on 2 ranks: one replica (the 1-rank run's global batch) whose clips' latent
    frames are split over both ranks (1 + 1 of the 2 latent frames of 5-frame clips; 1-frame image
    batches run whole on both), with activation checkpointing (the blocks' all-to-alls run again in
    backward): the same losses, gradient norms and weights as one process."""
    ref, cp = _history(runs / "r1"), _history(runs / "c2")
    assert any(h["frames"] >= 5 for h in ref)  # batches that were split
    _close(cp, ref)
    (w, ema), (ref_w, ref_ema) = _final(runs / "c2"), _final(runs / "r1")
    _weights_close(w, ref_w)
    _weights_close(ema, ref_ema)


def test_one_rank_resume_equals_uninterrupted_and_keeps_every_state(runs, tmp_path):
    """One process: CUT steps + resume to STEPS is bit for bit the uninterrupted run (losses, weights, EMA)."""
    base = yaml.safe_load((runs / "r1" / "cfg.yaml").read_text())
    base.pop("export")
    cfg = _yaml(tmp_path / "c.yaml", **{**base, "run_dir": str(tmp_path / "run"), "steps": CUT})
    Trainer(load_train_config(cfg)).train()
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["checkpoint"] == f"checkpoints/step-{CUT:08d}" and state["data"]["index"] == CUT * GLOBAL_BATCH
    t = Trainer(load_train_config(cfg, {"steps": STEPS}))
    t.train()
    assert _history(tmp_path / "run") == _history(runs / "r1")
    ref_w, ref_ema = _final(runs / "r1")
    assert all(torch.equal(v, ref_w[k]) for k, v in t.model.state_dict().items())
    assert all(torch.equal(v, ref_ema[k]) for k, v in t.ema.shadow.items())
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == [f"step-{STEPS:08d}"]  # older ones dropped


def test_activation_checkpointing_changes_nothing_on_one_rank(runs, tmp_path):
    base = yaml.safe_load((runs / "r1" / "cfg.yaml").read_text())
    base.pop("export")
    cfg = _yaml(tmp_path / "c.yaml", **{**base, "run_dir": str(tmp_path / "run"), "steps": 2,
                                        "activation_checkpointing": True})
    trainer = Trainer(load_train_config(cfg))
    trainer.train()
    assert [h["loss"] for h in _history(tmp_path / "run")] == [h["loss"] for h in _history(runs / "r1")[:2]]
    assert trainer.model.state_dict().keys() == _final(runs / "r1")[0].keys()  # no renamed parameters


# --------------------------------------------------------------------------- data position


@pytest.mark.parametrize("crop", [None, 16])
def test_sharded_batches_on_one_rank_are_the_batches_stream(crop):
    cfg = DataConfig(height=32, width=32, frames=[5, 9], still_prob=0.3, crop=crop)
    ref, ours = batches(cfg, 3, seed=11), ShardedBatches(cfg, 3, seed=11)
    for _ in range(5):
        (a, ca), (b, cb) = next(ref), next(ours)
        assert ca == cb and torch.equal(a, b)


def test_sharded_batches_split_the_global_batch_and_resume_anywhere():
    cfg = DataConfig(height=16, width=16, frames=[5, 9], still_prob=0.3, crop=8)
    one = ShardedBatches(cfg, 4, seed=5)
    ranks = [ShardedBatches(cfg, 2, seed=5, rank=r, world=2) for r in range(2)]
    for step in range(4):
        if step == 2:  # resume the 2-rank streams from a 1-rank position, and vice versa
            pos = json.loads(json.dumps(one.state_dict()))
            ranks = [ShardedBatches(cfg, 2, seed=5, rank=r, world=2) for r in range(2)]
            for s in ranks:
                s.load_state_dict(pos)
        video, caps = next(one)
        parts = [next(s) for s in ranks]
        assert torch.equal(video, torch.cat([p[0] for p in parts])) and caps == parts[0][1] + parts[1][1]
    with pytest.raises(ValueError, match="seed"):
        ShardedBatches(cfg, 2, seed=6).load_state_dict(one.state_dict())
    with pytest.raises(ValueError, match="rank"):
        ShardedBatches(cfg, 2, seed=5, rank=2, world=2)


# --------------------------------------------------------------------------- older run dirs


def test_single_file_run_dir_resumes_and_rewarms_without_optimizer_moments(runs, tmp_path):
    """The layout before DCP (full weights + EMA + optional optimizer.safetensors keyed by parameter
    index): weights and EMA are loaded as stored, moments too; without moments the lr ramps up again."""
    from lingen_model.training.trainer import _lr_at, optimizer_tensors

    base = yaml.safe_load((runs / "r1" / "cfg.yaml").read_text())
    base.pop("export")
    src = Trainer(load_train_config(runs / "r1" / "cfg.yaml"))  # resumed at step STEPS
    gen = torch.Generator().manual_seed(0)
    ema = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in src.model.state_dict().items()}
    tensors, meta = optimizer_tensors(src.opt)
    for with_moments in (True, False):
        run = tmp_path / f"m{with_moments}"
        run.mkdir()
        save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(run / "denoiser.safetensors"))
        save_file(ema, str(run / "denoiser_ema.safetensors"))
        if with_moments:
            save_file(tensors, str(run / "optimizer.safetensors"))
        (run / "train_state.json").write_text(json.dumps({"stage": "denoiser", "step": STEPS, "elapsed_s": 1.0,
                                                          "optimizer": meta, "history": []}))
        cfg = load_train_config(_yaml(run / "c.yaml", **{**base, "run_dir": str(run), "steps": STEPS + 1}))
        t = Trainer(cfg)
        assert t.step == STEPS
        assert all(torch.equal(t.model.state_dict()[k], v) for k, v in src.model.state_dict().items())
        assert all(torch.equal(t.ema.shadow[k], v) for k, v in ema.items())
        loaded = t.opt.state_dict()["state"]
        assert len(loaded) == (len(src.opt.state_dict()["state"]) if with_moments else 0)
        if with_moments:
            for pid, st in src.opt.state_dict()["state"].items():
                assert torch.equal(loaded[pid]["exp_avg_sq"], st["exp_avg_sq"])
        t.train()
        hist = _history(run)
        full = load_train_config(run / "c.yaml")
        for k, h in enumerate(hist):
            ramp = 1.0 if with_moments else (k + 1) / full["warmup_steps"]
            assert h["lr"] == pytest.approx(_lr_at(STEPS + k, full) * min(1.0, ramp))
        assert json.loads((run / "train_state.json").read_text())["checkpoint"] == f"checkpoints/step-{STEPS + 1:08d}"


def test_slim_state_of_a_dcp_run_resumes_with_its_weights_and_ema(runs, tmp_path):
    """recipes/lingen-tiny/slim_state.py (how a stage's end is committed): the DCP checkpoint's weights
    and EMA, written single-file without the Adam moments, resume as stored, at the same step, and the
    lr re-warms; a run dir without a DCP checkpoint is refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("slim_state", ROOT / "recipes" / "lingen-tiny" / "slim_state.py")
    slim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slim)
    src = Trainer(load_train_config(runs / "r1" / "cfg.yaml"))  # the DCP checkpoint at step STEPS
    run = tmp_path / "slim"
    assert slim.slim_state(runs / "r1", run) == STEPS
    assert not (run / "optimizer.safetensors").exists() and "checkpoint" not in json.loads((run / "train_state.json").read_text())
    base = yaml.safe_load((runs / "r1" / "cfg.yaml").read_text())
    base.pop("export")
    t = Trainer(load_train_config(_yaml(tmp_path / "c.yaml", **{**base, "run_dir": str(run), "steps": STEPS + 1})))
    assert t.step == STEPS and t._rewarm_from == STEPS and len(t.opt.state_dict()["state"]) == 0
    assert all(torch.equal(t.model.state_dict()[k], v) for k, v in src.model.state_dict().items())
    assert src.ema.shadow.keys() == t.ema.shadow.keys()
    assert all(torch.equal(t.ema.shadow[k], v) for k, v in src.ema.shadow.items())
    assert _history(run) == _history(runs / "r1")
    with pytest.raises(ValueError, match="no distributed checkpoint"):
        slim.slim_state(run, tmp_path / "again")


@pytest.mark.parametrize("train", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["load", "step"])
@pytest.mark.parametrize("stage", [("state-4c", "denoiser-4c.yaml", 17546), ("state-4h", "denoiser-4h.yaml", 19346),
                                   ("state-4i", "denoiser-4i.yaml", 20846), ("state-4k", "denoiser-4k.yaml", 23846),
                                   ("state-3u", "denoiser-3u.yaml", 15500),
                                   ("state", "denoiser-2g.yaml", 13500)],
                         ids=["4c-shipped", "4h", "4i", "4k", "3u", "2g"])
def test_committed_recipe_state_resumes(tmp_path, train, stage):
    """A committed recipe state (raw weights + JSON, no optimizer moments) resumes as the recipe README
    says: ``state-4c`` (step 17,546, the shipped model since session 26: its weights are the embedded ones),
    ``state-4h`` (step 19,346, session 30's one-speed stage), ``state-4i`` (step 20,846, session 31's
    one-speed stage cooled on more 4 s clips), ``state-4k`` (step 23,846, session 32's circle-heavy stage, rebuilt
    in session 33: the base of the next stages), ``state-3u``
    (step 15,500, shipped in sessions 18–25) and ``state`` (stage 2g, step 13,500; any EMA of the
    same shapes loads beside it). Loads as stored and re-warms the
    lr; (slow) one small step, then the DCP checkpoint written at its end resumes with the same weights."""
    name, config, step = stage
    state = ROOT / "recipes" / "lingen-tiny" / name
    shipped_file = ROOT / "lingen_model" / "weights" / "lingen-tiny" / "denoiser.safetensors"
    if name == "state-4c":  # the shipped model is this state's end: resuming it continues what users run
        assert (state / "denoiser.safetensors").read_bytes() == shipped_file.read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    for f in ("denoiser.safetensors", "train_state.json"):
        shutil.copy(state / f, run / f)
    shutil.copy(shipped_file, run / "denoiser_ema.safetensors")
    recipe = yaml.safe_load((ROOT / "recipes" / "lingen-tiny" / config).read_text())
    recipe.update(run_dir=str(run), vae_checkpoint=str(ROOT / "lingen_model" / "weights" / "lingen-tiny"),
                  steps=step + 1, batch_size=1, amp="off", export=None, log_every=1,
                  data={**recipe["data"], "height": 32, "width": 32, "frames": [5]})
    cfg = load_train_config(_yaml(tmp_path / "c.yaml", **recipe))
    t = Trainer(cfg)
    assert t.step == step and t._rewarm_from == step
    raw = load_file(str(state / "denoiser.safetensors"))
    assert all(torch.equal(t.model.state_dict()[k], v.float()) for k, v in raw.items())
    shipped = load_file(str(run / "denoiser_ema.safetensors"))
    assert all(torch.equal(t.ema.shadow[k], v.float()) for k, v in shipped.items())
    if not train:
        return
    t.train()
    h = _history(run)[-1]
    assert h["step"] == step + 1 and torch.isfinite(torch.tensor(h["loss"]))
    t2 = Trainer(load_train_config(tmp_path / "c.yaml", {"steps": step + 1}))
    assert t2.step == step + 1 and t2._rewarm_from == step
    assert all(torch.equal(t2.model.state_dict()[k], v) for k, v in t.model.state_dict().items())


def test_export_option_writes_the_generate_checkpoint_of_a_finished_run(runs, tmp_path):
    r = CliRunner().invoke(app, ["train", str(runs / "r1" / "cfg.yaml"), "-q", "--export", str(tmp_path / "exp")])
    assert r.exit_code == 0, r.output
    assert f"at step {STEPS}" in r.output  # resumed, nothing left to train
    a, b = load_file(str(tmp_path / "exp" / "denoiser.safetensors")), load_file(str(runs / "r1-export" / "denoiser.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    r = CliRunner().invoke(app, ["train", str(runs / "v1" / "cfg.yaml"), "-q", "--export", str(tmp_path / "x")])
    assert r.exit_code == 2 and "denoiser stage" in r.output


def test_a_damaged_checkpoint_is_a_one_line_error(runs, tmp_path):
    shutil.copytree(runs / "r1", tmp_path / "run")
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    shard = next((tmp_path / "run" / state["checkpoint"]).glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    r = CliRunner().invoke(app, ["train", str(runs / "r1" / "cfg.yaml"), "-q", "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2 and "cannot" in r.output and "Traceback" not in r.output, r.output
