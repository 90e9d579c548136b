"""Independent branches on single-threaded CPU workers (lingen_model/models/branches.py): when they run
in parallel, on which threads and with how many torch threads each, what they inherit from the caller,
and that the denoiser gives the same velocity either way."""
import multiprocessing as mp
import threading

import pytest
import torch

from lingen_model.models import branches
from lingen_model.generation.flow import sample
from lingen_model.models.denoiser import build_denoiser


@pytest.fixture
def two_threads(monkeypatch):
    """Two torch threads in the calling thread (restored afterwards) and branches switched on."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setenv(branches.ENV, "on")
    yield
    torch.set_num_threads(before)


def probe():
    """What a branch sees: its thread, its torch thread count, grad and inference mode."""
    return (threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled(),
            torch.is_inference_mode_enabled())


def test_branches_run_at_the_same_time_on_two_single_threaded_workers(two_threads):
    both_running = threading.Barrier(2, timeout=30)  # broken unless the two branches overlap in time

    def meet():
        both_running.wait()
        return probe()

    with torch.no_grad():
        (name_a, threads_a, grad_a, inf_a), (name_b, threads_b, *_) = branches.run_branches([meet, meet], "cpu")
    assert (name_a, name_b) == ("lingen-branch-0", "lingen-branch-1")
    assert threads_a == threads_b == 1  # 2 threads shared by 2 branches
    assert grad_a is False and inf_a is False  # the caller's no_grad, not inference mode
    assert torch.get_num_threads() == 2  # the caller keeps its own
    # torch's process-wide default (what a new thread starts with) is the caller's again
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [2]


def test_inference_mode_reaches_the_workers(two_threads):
    with torch.inference_mode():
        results = branches.run_branches([probe, probe], "cpu")
    assert [r[3] for r in results] == [True, True] and [r[2] for r in results] == [False, False]


def test_results_in_order_and_errors_after_every_branch(two_threads):
    finished = threading.Event()

    def fails():
        raise KeyError("branch failed")

    def slow():
        finished.wait(0.2)
        finished.set()
        return "slow"

    with torch.no_grad():
        assert branches.run_branches([lambda: 1, lambda: 2, lambda: 3][:2], "cpu") == [1, 2]
        with pytest.raises(KeyError, match="branch failed"):
            branches.run_branches([fails, slow], "cpu")
    assert finished.is_set()  # the other branch had finished when the error came back


@pytest.mark.parametrize("case", ["grad", "off", "per-layer-spinning", "one-thread", "cuda", "single"])
def test_runs_in_line_when_not_enabled(case, monkeypatch, two_threads):
    if case == "off":
        monkeypatch.setenv(branches.ENV, "off")
    if case == "per-layer-spinning":
        monkeypatch.setenv(branches.ENV, "auto")
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    if case == "one-thread":
        torch.set_num_threads(1)
    device = "cuda" if case == "cuda" else "cpu"
    fns = [probe] if case == "single" else [probe, probe]
    per_layer = case == "per-layer-spinning"
    with torch.enable_grad() if case == "grad" else torch.no_grad():
        assert not branches.branches_enabled(device, len(fns), only_if_threads_sleep=per_layer)
        results = branches.run_branches(fns, device, only_if_threads_sleep=per_layer)
    assert {r[0] for r in results} == {threading.current_thread().name}


def test_auto_runs_per_layer_branches_only_when_threads_sleep(monkeypatch, two_threads):
    monkeypatch.setenv(branches.ENV, "auto")
    with torch.no_grad():
        for policy, per_layer in (("passive", True), ("ACTIVE", False), (None, False)):
            if policy is None:
                monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
            else:
                monkeypatch.setenv("OMP_WAIT_POLICY", policy)
            assert branches.branches_enabled("cpu", only_if_threads_sleep=True) is per_layer
            assert branches.branches_enabled("cpu")  # once-per-step branches: whatever the policy
        monkeypatch.setenv(branches.ENV, "on")
        assert branches.branches_enabled("cpu", only_if_threads_sleep=True)


def test_nested_branches_run_in_line_in_the_worker(two_threads):
    def outer():
        return branches.run_branches([probe, probe], "cpu")

    with torch.no_grad():
        inner_a, inner_b = branches.run_branches([outer, outer], "cpu")
    for inner in (inner_a, inner_b):  # both inner probes ran in the worker that called them
        assert inner[0][0] == inner[1][0] and inner[0][0].startswith("lingen-branch")


def test_bad_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(branches.ENV, "sometimes")
    with pytest.raises(ValueError, match="LINGEN_CPU_BRANCHES must be auto, on or off"):
        branches.branches_enabled("cpu")


def _child(queue):
    with torch.no_grad():
        queue.put([r[1] for r in branches.run_branches([probe, probe], "cpu")])


def test_a_forked_child_gets_its_own_workers(two_threads):
    """The parent's pool threads do not exist in a forked child: the child must not wait on them."""
    with torch.no_grad():
        branches.run_branches([probe, probe], "cpu")  # the parent's pool exists now
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the forked child hung or failed"
    assert queue.get(timeout=5) == [1, 1]


@pytest.mark.parametrize("mixer, batch, times", [("mate", 1, "per-sample"), ("mate", 2, "per-sample"),
                                                  ("mate", 3, "per-frame"), ("attention", 2, "per-sample")])
def test_denoiser_velocity_is_the_same_with_and_without_branches(mixer, batch, times, monkeypatch, two_threads):
    torch.manual_seed(batch)
    model = build_denoiser("tiny", mixer, depth=2, width=64, num_heads=2, text_dim=32, d_state=16, headdim=32,
                           chunk_size=16).eval()
    for p in model.parameters():  # the adaLN-Zero gates start at zero: give every branch a say
        torch.nn.init.normal_(p, std=0.05)
    latents = torch.randn(batch, model.config.in_channels, 5, 8, 8)
    t = torch.rand(batch) if times == "per-sample" else torch.rand(batch, 5)
    context = torch.randn(batch, 7, 32)
    mask = torch.ones(batch, 7, dtype=torch.bool)
    parallel_calls = {"denoiser": 0, "mamba2": 0}
    real = branches.run_branches

    def spy(where):
        def run(fns, dev, **kw):
            parallel_calls[where] += branches.branches_enabled(dev, len(fns), **kw)
            return real(fns, dev, **kw)
        return run

    monkeypatch.setattr("lingen_model.models.denoiser.run_branches", spy("denoiser"))
    monkeypatch.setattr("lingen_model.models.mamba2.run_branches", spy("mamba2"))
    with torch.no_grad():
        monkeypatch.setenv(branches.ENV, "off")
        plain = model(latents, t, context, mask)
        monkeypatch.setenv(branches.ENV, "on")
        parallel = model(latents, t, context, mask)
    if batch == 1:  # each MATE layer's two scan directions side by side
        assert parallel_calls == {"denoiser": 0, "mamba2": model.config.depth}
    else:  # the two halves of the batch side by side; inside them, the layers run in line
        assert parallel_calls == {"denoiser": 1, "mamba2": 0}
    torch.testing.assert_close(parallel, plain, rtol=1e-5, atol=1e-6)
    assert parallel.abs().max() > 1e-3  # not a trivially zero velocity


@pytest.mark.parametrize("cache", ["none", "taylor"])
def test_cfg_sampling_is_the_same_with_and_without_branches(cache, monkeypatch, two_threads):
    """A whole CFG sampling run (batch 2 per step; TaylorSeer forecasts in the blocks' h-space), float64."""
    torch.manual_seed(0)
    model = build_denoiser("tiny", depth=2, width=32, num_heads=2, ffn_dim=64, text_dim=16, headdim=16, d_state=8,
                           chunk_size=8, in_channels=4, window=(2, 2, 2)).double().eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    noise = torch.randn(1, 4, 3, 4, 4, dtype=torch.float64)
    ctx, mask = torch.randn(1, 3, 16, dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool)
    uncond, umask = torch.zeros(1, 1, 16, dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool)

    def run():
        return sample(lambda z, t, c, m, cache=None: model(z, t, c, m, cache=cache), noise, 6, context=ctx,
                      context_mask=mask, shift=2.0, cfg_scale=4.0, uncond_context=uncond, uncond_mask=umask,
                      cache=cache)

    monkeypatch.setenv(branches.ENV, "off")
    plain = run()
    monkeypatch.setenv(branches.ENV, "on")
    torch.testing.assert_close(run(), plain, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch", [1, 2])
def test_the_bytes_do_not_depend_on_the_wait_policy(batch, monkeypatch, two_threads):
    """lingen_cli picks PASSIVE on a busy machine and OpenMP's default on a quiet one: the velocity of
    the embedded model's architecture must be bit for bit the same under both (batch 1: the scan
    directions split under PASSIVE only, which must change no bit; batch 2: the batch split under both)."""
    monkeypatch.setenv(branches.ENV, "auto")
    torch.manual_seed(10 + batch)
    model = build_denoiser("tiny").eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    args = (torch.randn(batch, 8, 3, 16, 16), torch.rand(batch), torch.randn(batch, 9, model.config.text_dim),
            torch.ones(batch, 9, dtype=torch.bool))
    out = {}
    with torch.no_grad():
        for policy in ("PASSIVE", None):
            if policy is None:
                monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
            else:
                monkeypatch.setenv("OMP_WAIT_POLICY", policy)
            out[policy] = model(*args)
        monkeypatch.setenv(branches.ENV, "off")
        plain = model(*args)
    assert torch.equal(out["PASSIVE"], out[None])
    if batch == 1:  # and splitting the directions is bit for bit the batched scan
        assert torch.equal(out["PASSIVE"], plain)


def test_describe_says_what_runs(monkeypatch, two_threads):
    monkeypatch.setenv(branches.ENV, "auto")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert branches.describe() == "CFG halves, scan directions (auto)"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert branches.describe() == "CFG halves (auto)"
    monkeypatch.setenv(branches.ENV, "off")
    assert branches.describe() == "off (LINGEN_CPU_BRANCHES=off)"
    monkeypatch.setenv(branches.ENV, "auto")
    torch.set_num_threads(1)
    assert branches.describe() == "off (1 torch thread)"


def test_ctrl_c_while_waiting_is_raised_after_the_branches_end(two_threads):
    """A KeyboardInterrupt in the caller while the branches run comes out of run_branches only when
    no worker is still inside an operator (one caught there at interpreter exit aborts the process)."""
    import signal
    import time

    started, sent, finished = threading.Barrier(3, timeout=30), threading.Event(), []

    def slow(i):
        def run():
            started.wait()
            sent.wait(30)
            time.sleep(0.3)  # still running when the caller gets the signal
            finished.append(i)
        return run

    def interrupt():
        started.wait()  # both branches are running
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # as Ctrl-C delivers it
        sent.set()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # also where SIGINT is ignored
    try:
        threading.Thread(target=interrupt).start()
        with torch.no_grad(), pytest.raises(KeyboardInterrupt):
            branches.run_branches([slow(0), slow(1)], "cpu")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(finished) == [0, 1]



def test_flop_counter_sees_every_operator(monkeypatch, two_threads):
    """torch's modes (FlopCounterMode here) are per thread: with one active, the branches stay in line
    so that the counter sees the whole forward (the benchmark's FLOP check runs under PASSIVE)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_denoiser("tiny", depth=2, width=64, num_heads=2, text_dim=32, d_state=16, headdim=32,
                           chunk_size=16).eval()
    counts = {}
    for setting in ("off", "on"):
        monkeypatch.setenv(branches.ENV, setting)
        for batch in (1, 2):
            args = (torch.randn(batch, 8, 3, 8, 8), torch.rand(batch), torch.randn(batch, 5, 32),
                    torch.ones(batch, 5, dtype=torch.bool))
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(*args)
            counts[setting, batch] = counter.get_total_flops()
    assert counts["on", 1] == counts["off", 1] > 0 and counts["on", 2] == counts["off", 2] == 2 * counts["off", 1]
