"""recipes/lingen-tiny/probe_plateau.py (session 37, issue 14): the held-out loss per noise level must equal a plain
loop over clips and times (one time at a time, not batched), and the direction gap must be the swapped caption's
loss minus the clip's own over the clips that name a direction."""
import pytest
import torch

from ckpt_utils import make_tiny_checkpoint
from lingen_model.generation.contrast import opposite_direction
from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.shapes.clips import make_clip
from lingen_model.training.data import _to_tensor
from support.recipes import load_recipe


def test_loss_and_gap_match_a_plain_loop(tmp_path):
    probe = load_recipe("probe_plateau")
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    got = probe.probe(str(ckpt), clips=3, seed_base=5_000_000, frames=9)
    pipe = LinGenPipeline.from_pretrained(ckpt, device="cpu")
    loss, gap, n_gap = [0.0] * len(probe.TIMES), [0.0] * len(probe.TIMES), 0
    with torch.no_grad():
        for i in range(3):
            video, caption, _ = make_clip(5_000_000 + i, 9, 64, 64, 8, max_objects=1)
            x = pipe.vae.encode(_to_tensor(video)[None])
            eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(5_000_000 + i))
            swapped = opposite_direction(caption)
            n_gap += bool(swapped)
            for j, t in enumerate(probe.TIMES):
                z = (1 - t) * x + t * eps

                def mse(text):
                    ctx, mask = pipe.text_encoder.encode([text])
                    v = pipe.denoiser(z, torch.tensor([t]), ctx, mask)
                    return float((v - (eps - x)).pow(2).mean())

                own = mse(caption)
                loss[j] += own / 3
                if swapped:
                    gap[j] += mse(swapped) - own
    assert got["loss"] == pytest.approx(loss, rel=1e-4)
    assert got["n_gap"] == n_gap == 2  # world seeds 5,000,001 and 5,000,002 name a direction, 5,000,000 is still
    assert got["gap"] == pytest.approx([g / n_gap for g in gap], rel=1e-3, abs=1e-6)
    assert got["step"] is None
