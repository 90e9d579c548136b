"""recipes/lingen-tiny/train_gpu.py (stage 3g): its compact MiniLM and its parallel shapes stream."""
import importlib.util
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("train_gpu", ROOT / "recipes" / "lingen-tiny" / "train_gpu.py")
train_gpu = importlib.util.module_from_spec(spec)
sys.modules["train_gpu"] = train_gpu  # the worker processes find _render by name
spec.loader.exec_module(train_gpu)


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm")
    train_gpu.make_compact_minilm(out)
    return out


def test_compact_minilm_matches_the_wheel_on_captions(compact):
    from lingen_model.models.text_encoder import MiniLMEncoder
    from lingen_model.shapes.language import caption
    from lingen_model.shapes.world import sample_scene

    full = MiniLMEncoder()
    small = train_gpu.load_compact_minilm(compact, "cpu")
    assert small.spec() == full.spec()  # an export written with it names the wheel's encoder
    caps = [""]
    for s in np.random.default_rng().integers(10**9, 2 * 10**9, 40):  # fresh scenes, not the ones it was built from
        rng = np.random.default_rng(int(s))
        caps.append(caption(sample_scene(rng, max_objects=1, entry_prob=1.0), rng))
    x, m = full.encode(caps)
    y, m2 = small.encode(caps)
    assert torch.equal(m, m2)
    rel = (x - y)[m].norm(dim=-1) / x[m].norm(dim=-1)
    assert 0 < float(rel.max()) < 2e-3  # float16 layer weights: close, not equal


def test_compact_minilm_refuses_a_token_it_dropped(compact):
    small = train_gpu.load_compact_minilm(compact, "cpu")
    with pytest.raises(ValueError, match="outside the compact MiniLM"):
        small.encode(["a dog surfing"])


def test_parallel_shapes_batches_are_the_worlds_clips(monkeypatch):
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import DataConfig

    cfg = DataConfig(frames=[9, 17], still_prob=0.3, max_objects=1, entry_prob=1.0, height=32, width=32)
    # Spawned, not forked: a child forked from this long-lived test process (its OpenMP and branch threads
    # mid-flight) can deadlock, and once hung a CI run for 90 minutes. The children find _render by name.
    monkeypatch.syspath_prepend(str(ROOT / "recipes" / "lingen-tiny"))
    pool = mp.get_context("spawn").Pool(2)
    try:
        stream = train_gpu.ParallelShapes(cfg, "cpu", pool, ahead=3, seed=5, lengths={9: 3, 17: 2},
                                          weights={9: 0.5, 17: 0.5}, still_batch=4)
        index, sizes = 0, set()
        for _ in range(8):
            video, caps = next(stream)
            b, c, t, h, w = video.shape
            assert (c, h, w) == (3, 32, 32) and b == len(caps) == {1: 4, 9: 3, 17: 2}[t]
            sizes.add(t)
            assert float(video.min()) >= -1 and float(video.max()) <= 1
            frames, caption, _ = make_clip(train_gpu.SEED_BASE + index, t, 32, 32, cfg.fps, max_objects=1,
                                           motions=("still",) if t == 1 else None, entry_prob=1.0)
            assert caps[0] == caption
            assert torch.equal(video[0], torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1)
            index += b
        assert sizes == {1, 9, 17}
        assert stream.state_dict()["batches"] == 8
    finally:
        pool.terminate()
