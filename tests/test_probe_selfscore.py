"""recipes/lingen-tiny/probe_selfscore.py and selfscore_select.py (session 37, issue 14): the per-frame losses must
equal a plain loop over captions, times and noises (float64, captions of different lengths padded and masked), the
patched pipeline must return the clip it would have sampled and log one row a clip, and the selector analysis must
keep the candidate with the lowest score."""
import json

import pytest
import torch

from ckpt_utils import make_tiny_checkpoint
from lingen_model.generation import pipeline as pipeline_mod
from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
from support.recipes import load_recipe


def _toy_denoiser(weight):
    """v = (z − x_c)/t with x_c = tanh(weight · masked mean of the caption tokens), broadcast over the clip: depends
    on the caption only through its unmasked tokens, so padding must not change it."""
    def f(z, t, c, m):
        mean = (c * m[..., None]).sum(1) / m.sum(1, keepdim=True)  # B×D
        x = torch.tanh(mean @ weight).view(z.shape[0], z.shape[1], 1, 1, 1)
        return (z - x) / t.view(-1, 1, 1, 1, 1)
    return f


def test_frame_losses_match_a_plain_loop_in_float64():
    probe = load_recipe("probe_selfscore")
    g = torch.Generator().manual_seed(3)
    d, ch = 6, 2
    f = _toy_denoiser(torch.randn(d, ch, generator=g, dtype=torch.float64))
    x = torch.randn(1, ch, 3, 4, 4, generator=g, dtype=torch.float64)
    caps = {"prompt": (torch.randn(1, 5, d, generator=g, dtype=torch.float64), torch.ones(1, 5, dtype=torch.bool)),
            "empty": (torch.randn(1, 2, d, generator=g, dtype=torch.float64), torch.tensor([[True, False]]))}
    times, seeds = (0.2, 0.9), (1, 2)
    got = probe.frame_losses(f, x, caps, times=times, noise_seeds=seeds)
    for name, (c, m) in caps.items():
        for i, t in enumerate(times):
            for j, s in enumerate(seeds):
                e = torch.randn(x.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float32).double()
                z = (1 - t) * x + t * e
                v = f(z, torch.tensor([t], dtype=torch.float64), c, m)
                want = ((v - (e - x)) ** 2).mean(dim=(1, 3, 4))[0]
                assert got[name][i][j] == pytest.approx(want.tolist(), rel=1e-9, abs=1e-12)
    assert got["prompt"] != got["empty"]
    with pytest.raises(ValueError, match="1×C×T×H×W"):
        probe.frame_losses(f, x[0], caps)


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_mod.LinGenPipeline, "generate", pipeline_mod.LinGenPipeline.generate)
    monkeypatch.setattr(pipeline_mod.LinGenPipeline, "denoise", pipeline_mod.LinGenPipeline.denoise)
    return LinGenPipeline.from_pretrained(make_tiny_checkpoint(tmp_path / "ckpt"), device="cpu")


def test_the_patched_pipeline_logs_each_clip_and_returns_it_unchanged(pipe, tmp_path):
    probe = load_recipe("probe_selfscore")
    kw = dict(num_frames=9, direction_guidance=2.0)
    want = [pipe.generate(pipe.resolve(GenerationRequest(p, seed=7, **kw))).frames
            for p in ("a red circle moving left", "a red circle")]
    log = tmp_path / "scores.jsonl"
    probe.install(str(log))
    got = [pipe.generate(GenerationRequest(p, seed=7, **kw)).frames for p in ("a red circle moving left", "a red circle")]
    assert all((a == b).all() for a, b in zip(got, want))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a red circle moving left", "a red circle"]
    assert set(rows[0]["losses"]) == {"prompt", "contrast", "empty"} and set(rows[1]["losses"]) == {"prompt", "empty"}
    per_t = rows[0]["losses"]["prompt"]
    assert len(per_t) == len(probe.TIMES) and all(len(n) == len(probe.NOISE_SEEDS) for n in per_t)
    assert all(len(fr) == rows[0]["frames"] for n in per_t for fr in n)
    with pytest.raises(ValueError, match="SELFSCORE_LOG"):
        probe.install(None)


def _run(tmp_path, name, passes, losses):
    """A fake candidate run: eval JSON (seeds 100 + i) and its log with the given prompt losses (one frame)."""
    clips, rows = [], []
    for i, (ok, loss) in enumerate(zip(passes, losses)):
        verdict = {k: ok for k in ("color", "shape", "motion", "persistence", "unity", "motion_consistency", "jumps")}
        clips.append({"seed": 100 + i + (1000 if name == "b" else 0), "prompt": f"p{i}", "passed": verdict,
                      "unity": 1.0 if ok else 0.5})
        per_t = [[[loss]] for _ in range(5)]
        rows.append({"seed": clips[-1]["seed"], "prompt": f"p{i}", "frames": 1,
                     "losses": {"prompt": per_t, "empty": [[[0.0]] for _ in range(5)]}})
    (tmp_path / f"{name}.json").write_text(json.dumps({"clips": clips}))
    (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return str(tmp_path / name)


def test_the_selector_keeps_the_candidate_with_the_lower_score(tmp_path):
    sel = load_recipe("selfscore_select")
    a = _run(tmp_path, "a", [True, False, False], [1.0, 2.0, 1.0])
    b = _run(tmp_path, "b", [False, True, False], [2.0, 1.0, 3.0])
    rows = dict(sel.table([sel.load(a), sel.load(b)], ["prompt"], [0, 1, 2, 3, 4]))
    assert rows["candidate 0 alone"]["motion"] == 1 and rows["candidate 1 alone"]["motion"] == 1
    assert rows["best of 2 by prompt"]["motion"] == 2           # keeps a's pass, then b's
    assert rows["best of 2 by prompt"]["unity_mean"] == pytest.approx(2.5 / 3)
    assert rows["best per line (upper bound)"]["motion"] == 2
