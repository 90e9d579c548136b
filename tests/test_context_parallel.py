"""Context parallelism (lingen_model/models/context_parallel.py) against one process.

One gloo launch per world size (2 and 4 ranks, ``torch.multiprocessing`` spawn) runs every case;
each rank builds the same model and inputs from one fresh seed (drawn per launch, named on
failure), runs the one-process reference itself and the context-parallel forward/backward on its
slab, and writes the errors to JSON; the tests here read them. Cases cover both mixers (MATE and
the DiT twin's full attention), odd spatial sizes (padded patches), depth 4 (all four Rotary-Major-Scan orders, shifted TESA on odd layers),
review tokens on and off, Mamba2 ``ngroups`` 1 and 2, uneven frame and head splits (5 latent
frames, 3 attention heads and 6 Mamba2 heads over 2 and 4 ranks: one rank holds no attention
head on 4), a padded text mask, the sampling wrapper ``ContextParallelDenoiser`` and a forward
under bf16 autocast.
"""
from __future__ import annotations

import json
import os
import random

import pytest
import torch
from lingen_model.training.distributed import free_port

# float32, max|cp − ref| / max|ref| per tensor. Measured over 4 seeds on 2 and 4 ranks: outputs 0
# to 3.6e-7 (the same ops on the same rows; only the ngroups-2 expansion reorders a sum), parameter
# gradients 5e-7 to 1.5e-6 (per-rank shares summed in another order), so 1e-5 leaves ~7x headroom.
TOL = 1e-5
BF16_TOL = 4e-3  # bf16 autocast (forward only): one bf16 rounding step; measured 0 on 2 and 4 ranks

CASES = {
    "mate": dict(mixer="mate"),
    "mate_ngroups2_no_review": dict(mixer="mate", ngroups=2, review_size=0),
    "attention": dict(mixer="attention"),
}


def _model(case: dict):
    from lingen_model.models.denoiser import build_denoiser

    overrides = dict(in_channels=4, width=48, depth=4, num_heads=3, ffn_dim=64, text_dim=24, d_state=8,
                     headdim=16, chunk_size=8, window=(2, 3, 2), review_size=2)
    overrides.update({k: v for k, v in case.items() if k != "mixer"})
    model = build_denoiser("tiny", case["mixer"], **overrides)
    with torch.no_grad():  # move every parameter off its init (the zero gates and final layer too)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _inputs():
    b = 2
    latents = torch.randn(b, 4, 5, 7, 9)  # 5 latent frames; 7×9 pads to a 4×5 token grid
    t = torch.rand(b)
    context = torch.randn(b, 6, 24)
    mask = torch.ones(b, 6, dtype=torch.bool)
    mask[1, 4:] = False
    return latents, t, context, mask


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _worker(rank: int, world: int, port: int, out_dir: str, seed: int) -> None:
    import torch.distributed as dist

    from lingen_model.models.context_parallel import (ContextParallel, ContextParallelDenoiser, all_reduce_grads,
                                                      gather_frames)

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for name, case in CASES.items():
        torch.manual_seed(seed)  # the same fresh draw on every rank
        model = _model(case)
        latents, t, context, mask = _inputs()
        weight = torch.randn_like(latents)
        # one process, the whole clip
        ref = model(latents, t, context, mask, t_offset=3)
        (ref * weight).sum().backward()
        ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        # context parallel: this rank's slab, gradients summed over the ranks
        cp = ContextParallel.for_clip(latents.shape[2])
        out = model(cp.slab(latents), t, context, mask, t_offset=3, cp=cp)
        (out * cp.slab(weight)).sum().backward()
        all_reduce_grads(model)
        grads = {n: _rel(p.grad, ref_grads[n]) for n, p in model.named_parameters()}
        with torch.no_grad():
            sampled = ContextParallelDenoiser(model)(latents, t, context, mask, t_offset=3)
            with torch.autocast("cpu", dtype=torch.bfloat16):  # the dtypes meeting in the all-to-alls agree
                ref16 = model(latents, t, context, mask).float()
                out16 = gather_frames(model(cp.slab(latents), t, context, mask, cp=cp).float(), cp)
        results[name] = {
            "bf16": _rel(out16, ref16),
            "frames": list(cp.frames),
            "out": _rel(gather_frames(out.detach(), cp), ref.detach()),
            "wrapper": _rel(sampled, ref.detach()),
            "grads": grads,
            "grads_nonzero": all(float(g.abs().max()) > 0 for g in ref_grads.values()),
        }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()



@pytest.fixture(scope="module", params=[2, 4])
def launch(request, tmp_path_factory):
    import torch.multiprocessing as mp

    world = request.param
    out_dir = tmp_path_factory.mktemp(f"cp{world}")
    seed = random.randrange(2**31)  # Python's generator is seeded from the OS: a new draw every run
    mp.spawn(_worker, args=(world, free_port(), str(out_dir), seed), nprocs=world, join=True)
    return world, seed, [json.load(open(out_dir / f"rank{r}.json")) for r in range(world)]


@pytest.mark.parametrize("case", list(CASES))
def test_context_parallel_forward_and_gradients_equal_one_process(launch, case):
    world, seed, ranks = launch
    for rank, res in enumerate(ranks):
        r = res[case]
        where = f"{world} ranks, seed {seed}, rank {rank}"
        assert r["frames"] == [5 // world + (i < 5 % world) for i in range(world)]
        assert r["grads_nonzero"], "a parameter without gradient would test nothing"
        assert r["out"] < TOL, f"{where}: output differs by {r['out']:.1e}"
        assert r["wrapper"] < TOL, f"{where}: gathered sampling output differs by {r['wrapper']:.1e}"
        # bf16 autocast: the same ops in the same precision; bf16's own step (2⁻⁸) bounds what rounding may add
        assert r["bf16"] < BF16_TOL, f"{where}: bf16 autocast output differs by {r['bf16']:.1e}"
        worst = max(r["grads"], key=r["grads"].get)
        assert r["grads"][worst] < TOL, f"{where}: gradient of {worst} differs by {r['grads'][worst]:.1e}"


def test_split_frames_and_heads():
    from lingen_model.errors import InputError
    from lingen_model.models.context_parallel import head_ranges, split_frames

    assert split_frames(5, 2) == (3, 2)
    assert split_frames(5, 4) == (2, 1, 1, 1)
    assert head_ranges(3, 4) == ((0, 0), (0, 1), (1, 2), (2, 3))
    assert head_ranges(6, 4) == ((0, 1), (1, 3), (3, 4), (4, 6))
    with pytest.raises(InputError):
        split_frames(3, 4)


def _checkpoint(path, sampling=None):
    """A small random MATE checkpoint with every parameter off its init (the mixers' gates are
    zero at init, which would leave the split mixers out of the video); ``sampling``: its sampling
    defaults (2 steps, CFG 3 if None)."""
    from lingen_model import build_denoiser
    from lingen_model.generation.checkpoint import save_checkpoint
    from lingen_model.models.vae import CausalVideoVAE, VAEConfig

    torch.manual_seed(1)
    denoiser = build_denoiser("tiny", "mate", width=32, depth=4, num_heads=2, headdim=16, d_state=8, ffn_dim=64,
                              in_channels=4, chunk_size=16, window=(2, 2, 2))
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(0.05 * torch.randn_like(p))
    vae = CausalVideoVAE(VAEConfig(latent_channels=4, base_channels=8, channel_mult=(1, 1, 2, 2)))
    return save_checkpoint(path, denoiser, vae, {"backend": "minilm"}, {"fps": 8, "height": 64, "width": 64},
                           sampling or {"steps": 2, "cfg_scale": 3.0}, name="test-cp")


def test_generate_on_two_context_parallel_ranks_writes_the_one_process_frames(tmp_path):
    """``torchrun --nproc-per-node 2 lingen generate --cp 2``: one clip (9 frames = 3 latent frames,
    split 2 + 1; 80×48 pixels = a 5×3 token grid) rendered by both ranks, written once by rank 0,
    with the frames (sha256 of the uint8 frames before encoding) of a one-process run. Seeds and
    inputs are fixed, so the comparison is deterministic. The model has a long-clip profile that
    staggers clips from 0.5 s: context parallelism skips it (one time per clip), as ``--stagger 0``
    does in one process."""
    import subprocess
    import sys

    ckpt = _checkpoint(tmp_path / "ckpt", {"steps": 2, "cfg_scale": 3.0, "long_clip": {
        "from_seconds": 0.5, "stagger": 0.5, "stagger_context": 1, "cache": "none"}})
    args = ["generate", "a red circle moving left", "--model", str(ckpt), "--seed", "3", "--length", "9f",
            "--res", "80x48", "--json", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "lingen_cli", *args, "--out", str(tmp_path / "cp"), "--cp", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(recs) == 1 and recs[0]["status"] == "ok"  # reported and written once
    assert sorted(p.suffix for p in (tmp_path / "cp").iterdir()) == [".json", ".mp4"]
    assert recs[0]["stagger"] == 0.0
    # the one-process run with the ranks' thread count: float sums over 1 or 2 threads may round a
    # uint8 pixel differently
    single = subprocess.run([sys.executable, "-m", "lingen_cli", *args, "--out", str(tmp_path / "one"),
                             "--stagger", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ref = json.loads([line for line in single.stdout.splitlines() if line.startswith("{")][-1])
    assert recs[0]["frames_sha256"] == ref["frames_sha256"]


def test_generate_cp_must_divide_the_ranks(tmp_path):
    from typer.testing import CliRunner

    from lingen_cli.app import app

    r = CliRunner().invoke(app, ["generate", "a red circle", "--cp", "2", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--cp 2 must be a positive divisor" in r.output
    r = CliRunner().invoke(app, ["generate", "a red circle", "--cp", "2", "--stagger", "0.1", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--stagger does not combine with --cp" in r.output and "Traceback" not in r.output


def test_training_config_refuses_context_parallel_outside_the_denoiser_stage(tmp_path):
    from lingen_model.training.config import load_train_config

    cfg = tmp_path / "vae.yaml"
    cfg.write_text("stage: vae\nrun_dir: x\ncontext_parallel: 2\n")
    with pytest.raises(ValueError, match="context_parallel"):
        load_train_config(cfg)
    cfg.write_text("stage: vae\nrun_dir: x\ncontext_parallel: 0\n")
    with pytest.raises(ValueError, match="context_parallel"):
        load_train_config(cfg)
