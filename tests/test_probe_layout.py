"""recipes/lingen-tiny/probe_layout.py (session 36 probe, issue 14): its mirror score must tell one object off the
centre line from a mirrored pair, and the predicted clean clip it decodes must be ``z − t · v`` of the conditional
row at the step asked for."""
import numpy as np
import pytest
import torch

from support.recipes import load_recipe


def test_mirror_score_tells_one_object_from_a_mirrored_pair():
    probe = load_recipe("probe_layout")
    clip = np.full((4, 32, 32, 3), 40, dtype=np.uint8)
    clip[0, 10:18, 2:10] = 240              # one object left of the centre line
    clip[1, 10:18, 2:10] = 240              # the same and its mirror image
    clip[1, 10:18, 22:30] = 240
    clip[2, 10:18, 12:20] = 240             # one object on the centre line
    s = probe.mirror_score(clip)
    assert s.shape == (4,)
    assert s[0] == pytest.approx(0.0) and s[1] == pytest.approx(1.0) and s[2] == pytest.approx(1.0)
    assert s[3] == 0.0                      # an empty frame
    with pytest.raises(ValueError, match="T×H×W×3"):
        probe.mirror_score(clip[0])


class _FakePipe:
    """Calls its denoiser as a guided sampler would (rows [uncond, cond], then a contrast row alone) on fresh
    random states, two steps; ``decode`` returns the latent it is given."""

    def __init__(self):
        self.denoiser = lambda z, t, *a, **k: 3.0 * z + t.view(-1, 1, 1, 1, 1)
        self.seen = []

    def __call__(self, prompt, num_frames, seed):
        g = torch.Generator().manual_seed(seed)
        for t in (1.0, 0.8):
            z = torch.randn(2, 4, 3, 2, 2, generator=g)
            self.seen.append((z[1:2].clone(), t))
            self.denoiser(z, torch.full((2,), t))
            self.denoiser(z[:1], torch.full((1,), t))  # the uncached contrast row: not recorded
        return np.zeros((1, 2, 2, 3), np.uint8)

    def decode(self, x0):
        return x0


def test_predicted_clips_decode_z_minus_t_v_of_the_conditional_row():
    probe = load_recipe("probe_layout")
    pipe = _FakePipe()
    inner = pipe.denoiser
    snaps, final = probe.predicted_clips(pipe, "a red circle", seed=5, steps=(0, 1, 7))
    assert pipe.denoiser is inner and final.shape == (1, 2, 2, 3)
    assert [(k, t) for k, t, _ in snaps] == [(0, 1.0), (1, pytest.approx(0.8))]  # step 7 was never reached
    for (k, t, x0), (z, t_seen) in zip(snaps, pipe.seen):
        assert torch.allclose(x0, z - t_seen * (3.0 * z + t_seen))
