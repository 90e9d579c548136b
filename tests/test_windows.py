"""Temporal co-denoising (generation/windows.py) against a plain, one-window-at-a-time reference.

* the window starts cover every frame, every window is whole, the last ends at the clip's end;
* the batched fusion equals a loop that runs the denoiser on each window alone at its own
  ``t_offset`` and averages with the triangle weights frame by frame (float64, random weights and
  inputs, a CFG-style batch of two different conditions);
* per-sample ``t_offset`` in the denoiser equals one call per sample;
* a clip no longer than the window is exactly one pass (same numbers as without windows);
* through the pipeline, a windowed request reaches the denoiser as window-sized inputs and the
  step cache still sees one call per sampling step.
"""
import pytest
import torch

from lingen_model import build_denoiser
from lingen_model.generation.step_cache import StepCache
from lingen_model.generation.windows import co_denoise, default_stride, window_starts, window_weights

SMALL = dict(width=32, depth=2, num_heads=2, ffn_dim=64, text_dim=16, headdim=16, d_state=8, chunk_size=8,
             in_channels=4, window=(2, 2, 2))


def model(seed=1):
    torch.manual_seed(0)
    m = build_denoiser("tiny", **SMALL).double().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random non-zero weights (adaLN-Zero would make every block the identity)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 / max(1, p.shape[-1]) ** 0.5)
    return m


def data(frames, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 4, frames, 4, 4, generator=g, dtype=torch.float64)
    t = torch.rand(b, generator=g, dtype=torch.float64)
    ctx = torch.randn(b, 3, 16, generator=g, dtype=torch.float64)
    mask = torch.ones(b, 3, dtype=torch.bool)
    mask[0, 1:] = False
    return z, t, ctx, mask


@pytest.mark.parametrize("frames,window,stride", [(121, 9, 6), (121, 9, 4), (10, 9, 6), (17, 9, 9), (9, 9, 3),
                                                  (5, 9, 6), (30, 7, 1)])
def test_starts_cover_every_frame_with_whole_windows(frames, window, stride):
    starts = window_starts(frames, window, stride)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if frames <= window:
        assert starts == [0]
        return
    assert starts[-1] == frames - window
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = torch.zeros(frames, dtype=torch.int64)
    for s in starts:
        covered[s:s + window] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize("bad", [dict(num_frames=0, window=9, stride=3), dict(num_frames=10, window=0, stride=1),
                                 dict(num_frames=10, window=4, stride=5), dict(num_frames=10, window=4, stride=1.5)])
def test_bad_window_settings_raise(bad):
    with pytest.raises(ValueError):
        window_starts(**bad)


def test_weights_are_a_triangle_and_stride_default():
    assert window_weights(5).tolist() == [1, 2, 3, 2, 1]
    assert window_weights(4).tolist() == [1, 2, 2, 1]
    assert default_stride(9) == 6 and default_stride(1) == 1


def test_per_sample_offsets_equal_one_call_per_sample():
    m = model()
    z, t, ctx, mask = data(5)
    with torch.no_grad():
        both = m(z, t, ctx, mask, t_offset=[0, 7])
        first = m(z[:1], t[:1], ctx[:1], mask[:1], t_offset=0)
        second = m(z[1:], t[1:], ctx[1:], mask[1:], t_offset=7)
    torch.testing.assert_close(both, torch.cat([first, second]), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="t_offset"):
        m(z, t, ctx, mask, t_offset=[0])
    with pytest.raises(ValueError, match="t_offset"):
        m(z, t, ctx, mask, t_offset=[0, -1])


@pytest.mark.parametrize("frames,window,stride", [(13, 5, 3), (12, 5, 2), (11, 4, 4)])
def test_fusion_equals_one_window_at_a_time(frames, window, stride):
    m = model()
    z, t, ctx, mask = data(frames, seed=frames)
    calls = []

    def fn(zw, tw, cw, mw, **kw):
        calls.append(zw.shape)
        return m(zw, tw, cw, mw, **kw)

    with torch.no_grad():
        got = co_denoise(fn, z, t, ctx, mask, window, stride)
        # the reference: each window alone at its own position, weighted sum / weight sum per frame
        num = torch.zeros_like(z)
        den = torch.zeros(frames, dtype=z.dtype)
        w = [min(i + 1, window - i) for i in range(window)]
        s = 0
        starts = []
        while s + window < frames:
            starts.append(s)
            s += stride
        starts.append(frames - window)
        for s in starts:
            v = m(z[:, :, s:s + window], t, ctx, mask, t_offset=s)
            for i in range(window):
                num[:, :, s + i] += w[i] * v[:, :, i]
                den[s + i] += w[i]
        want = num / den.view(1, 1, -1, 1, 1)
    assert calls == [(len(starts) * 2, 4, window, 4, 4)]  # one batched call
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_a_clip_that_fits_one_window_is_one_pass():
    m = model()
    z, t, ctx, mask = data(5)
    with torch.no_grad():
        got = co_denoise(lambda *a, **kw: m(*a, **kw), z, t, ctx, mask, window=9)
        want = m(z, t, ctx, mask)
    assert torch.equal(got, want)


def test_step_cache_sees_one_call_per_step():
    from lingen_model.generation.flow import sample

    m = model()
    z, _, ctx, mask = data(13, b=1)
    cache = StepCache("taylor", 6)

    def velocity(zz, t, c, mm, cache=None):
        return co_denoise(lambda *a, **kw: m(*a, **kw), zz, t, c, mm, 5, 3, cache=cache)

    out = sample(velocity, z, 6, context=ctx, context_mask=mask, cache=cache)
    assert out.shape == z.shape and torch.isfinite(out).all()
    assert cache.full_calls == len([k for k in cache.schedule() if k])
