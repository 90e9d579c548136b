"""Chunked SSD scan vs the naive Mamba2 recurrence (float64, fresh random inputs)."""
import pytest
import torch

from lingen_model.models import ssd
from lingen_model.models.ssd import select_backend, ssd_chunked, ssd_reference, ssd_scan


def random_scan_inputs(b, l, h, p, g, n, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen, dtype=dtype)
    dt = torch.rand(b, l, h, generator=gen, dtype=dtype) * 0.5 + 1e-3
    A = -torch.rand(h, generator=gen, dtype=dtype) * 3 - 0.05
    B = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    D = torch.randn(h, generator=gen, dtype=dtype)
    return x, dt, A, B, C, D


@pytest.mark.parametrize("chunk", [1, 4, 7, 16, 64])
@pytest.mark.parametrize("length", [1, 13, 50])
def test_chunked_matches_recurrence(chunk, length):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    x, dt, A, B, C, D = random_scan_inputs(2, length, 4, 8, 2, 16, seed)
    y_ref, s_ref = ssd_reference(x, dt, A, B, C, D, return_final_state=True)
    y, s = ssd_chunked(x, dt, A, B, C, chunk_size=chunk, D=D, return_final_state=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("grad", [False, True])
def test_one_head_per_group_matches_recurrence(grad):
    """ngroups == heads (context parallelism gives each local head its own group): the in-place
    inference path once failed on the layout this leaves."""
    x, dt, A, B, C, D = random_scan_inputs(2, 21, 3, 4, 3, 8, int(torch.randint(0, 2**31 - 1, ()).item()))
    with torch.set_grad_enabled(grad):
        y = ssd_chunked(x, dt, A, B, C, chunk_size=8, D=D)
    torch.testing.assert_close(y, ssd_reference(x, dt, A, B, C, D), rtol=1e-10, atol=1e-10)


def test_initial_state_and_split_sequence():
    """Scanning two halves with the carried state equals scanning the whole."""
    x, dt, A, B, C, D = random_scan_inputs(1, 40, 2, 4, 1, 8, 3)
    y_full = ssd_chunked(x, dt, A, B, C, chunk_size=8, D=D)
    y1, s1 = ssd_chunked(x[:, :17], dt[:, :17], A, B[:, :17], C[:, :17], chunk_size=8, D=D, return_final_state=True)
    y2 = ssd_chunked(x[:, 17:], dt[:, 17:], A, B[:, 17:], C[:, 17:], chunk_size=8, D=D, initial_state=s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_full)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_strong_decays_match_recurrence(grad, dtype):
    """Log-decays far below exp's underflow (dt·A down to −120 per step, so in-chunk sums reach
    thousands below zero): the chunked scan floors exp's inputs at ``ssd.EXP_FLOOR`` (a CPU
    speed fix) and must still match the recurrence, values and gradients."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    x, dt, A, B, C, D = random_scan_inputs(2, 45, 3, 4, 1, 8, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    dt = dt * 6  # up to 3
    A = -torch.rand(3, generator=gen, dtype=torch.float64) * 40 - 1  # down to −41
    A[0], dt[0, 5, 0] = -40.0, 3.0  # one step alone below float32's underflow (−120)
    assert float((dt * A).min()) < -87.4 and float((dt * A).sum(1).min()) < ssd.EXP_FLOOR
    x, dt, A, B, C, D = (t.to(dtype).requires_grad_(grad) for t in (x, dt, A, B, C, D))
    with torch.set_grad_enabled(grad):
        y = ssd_chunked(x, dt, A, B, C, chunk_size=16, D=D)
        y_ref = ssd_reference(*(t.double() for t in (x, dt, A, B, C, D)))
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    if grad:
        w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        g = torch.autograd.grad((y.double() * w).sum(), (x, dt, B, C))
        g_ref = torch.autograd.grad((y_ref * w).sum(), (x, dt, B, C))
        for a, b in zip(g, g_ref):
            torch.testing.assert_close(a.double(), b.double(), rtol=tol * 10, atol=tol * 10)


def test_future_inputs_leave_past_outputs_bit_for_bit():
    """Causality inside a chunk is exact: changing the inputs at steps ≥ k changes no output
    before k, in any bit (the entries above the diagonal are zeroed, not merely small)."""
    x, dt, A, B, C, D = random_scan_inputs(1, 40, 2, 4, 1, 8, int(torch.randint(0, 2**31 - 1, ()).item()),
                                           dtype=torch.float32)
    y = ssd_chunked(x, dt, A, B, C, chunk_size=16, D=D)
    k = 21  # inside the second chunk
    x2, B2, C2, dt2 = x.clone(), B.clone(), C.clone(), dt.clone()
    x2[:, k:] *= 1e6
    B2[:, k:] = -B2[:, k:] * 1e3
    C2[:, k:] = 7.0
    dt2[:, k:] = 5.0
    y2 = ssd_chunked(x2, dt2, A, B2, C2, chunk_size=16, D=D)
    assert torch.equal(y2[:, :k], y[:, :k])
    assert not torch.equal(y2[:, k:], y[:, k:])


def test_float32_close_to_float64_reference():
    x, dt, A, B, C, D = random_scan_inputs(1, 300, 2, 16, 1, 32, 5)
    y_ref = ssd_reference(x, dt, A, B, C, D)
    y32 = ssd_chunked(*(t.float() for t in (x, dt, A, B, C)), chunk_size=64, D=D.float())
    torch.testing.assert_close(y32.double(), y_ref, rtol=1e-4, atol=1e-4)


def test_bad_shapes_raise():
    x, dt, A, B, C, D = random_scan_inputs(1, 10, 2, 4, 1, 8, 0)
    with pytest.raises(ValueError, match="dt must be"):
        ssd_chunked(x, dt[:, :5], A, B, C)
    with pytest.raises(ValueError, match="x must be"):
        ssd_chunked(x[0], dt, A, B, C)
    with pytest.raises(ValueError, match="A must"):
        ssd_chunked(x, dt, A[:1], B, C)


def test_backend_selection(monkeypatch):
    monkeypatch.setenv("LINGEN_SCAN_BACKEND", "torch")
    assert select_backend("cpu") == "torch"
    monkeypatch.setenv("LINGEN_SCAN_BACKEND", "auto")
    assert select_backend("cpu") == "torch"  # triton only ever on CUDA
    monkeypatch.setenv("LINGEN_SCAN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="LINGEN_SCAN_BACKEND"):
        select_backend("cpu")
    if not ssd.triton_available():
        monkeypatch.setenv("LINGEN_SCAN_BACKEND", "triton")
        with pytest.raises(RuntimeError, match="mamba-ssm"):
            select_backend("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not ssd.triton_available(), reason="needs CUDA and mamba-ssm")
def test_triton_matches_reference():
    x, dt, A, B, C, D = (t.float().cuda() for t in random_scan_inputs(2, 300, 4, 64, 1, 64, 9))
    y = ssd_scan(x, dt, A, B, C, chunk_size=64, D=D, backend="triton")
    y_ref = ssd_reference(*(t.double().cpu() for t in (x, dt, A, B, C)), D.double().cpu())
    torch.testing.assert_close(y.double().cpu(), y_ref, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("length,chunk,g", [(37, 8, 1), (16, 16, 2), (5, 64, 1)])
def test_multi_scan_equals_each_scan_against_recurrence(grad, length, chunk, g):
    """Two scans with their own A, D (the two directions of a layer) batched as one = each alone = the recurrence."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    scans = [random_scan_inputs(2, length, 4, 8, g, 16, seed + i) for i in range(2)]
    with torch.set_grad_enabled(grad):
        if grad:
            scans = [tuple(t.requires_grad_() for t in sc) for sc in scans]
        ys = ssd.ssd_chunked_multi([(x, dt, A, B, C, D) for x, dt, A, B, C, D in scans], chunk_size=chunk)
        for y, (x, dt, A, B, C, D) in zip(ys, scans):
            torch.testing.assert_close(y, ssd_reference(x, dt, A, B, C, D), rtol=1e-10, atol=1e-10)
            assert torch.equal(y, ssd_chunked(x, dt, A, B, C, chunk_size=chunk, D=D))
    if grad:  # gradients reach both scans' inputs
        sum(y.sum() for y in ys).backward()
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for sc in scans for t in sc)


def test_multi_scan_rejects_mixed_shapes():
    a = random_scan_inputs(1, 10, 2, 4, 1, 8, 0)
    b = random_scan_inputs(1, 12, 2, 4, 1, 8, 1)
    with pytest.raises(ValueError, match="one shape"):
        ssd.ssd_chunked_multi([a, b])


def test_multi_scan_large_inputs_run_one_at_a_time(monkeypatch):
    """Past MULTI_SCAN_MAX_BYTES the scans run one by one: the same numbers as batched."""
    scans = [random_scan_inputs(1, 40, 2, 4, 1, 8, 7 + i) for i in range(2)]
    batched = ssd.ssd_chunked_multi(scans, chunk_size=8)
    monkeypatch.setattr(ssd, "MULTI_SCAN_MAX_BYTES", 0)
    for a, b in zip(batched, ssd.ssd_chunked_multi(scans, chunk_size=8)):
        assert torch.equal(a, b)
