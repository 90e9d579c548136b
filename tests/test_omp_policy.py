"""Process settings `lingen_cli` makes before torch loads. The OpenMP wait policy: ACTIVE for `train`; for every
other command OpenMP's default on a quiet machine and PASSIVE on a busy one; the user's setting wins. glibc
malloc keeps freed activation buffers (tune_malloc)."""
import multiprocessing as mp
import time
import os
import subprocess
import sys

import pytest

from lingen_cli import _busy_cores, wait_policy

PROBE = "import sys; sys.argv = {argv!r}; import lingen_cli, os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"


@pytest.mark.parametrize("argv, busy, cores, expected", [
    (["lingen", "train", "r.yaml"], 0.0, 2, "ACTIVE"),
    (["lingen", "train", "r.yaml"], 9.0, 2, "ACTIVE"),
    (["lingen", "generate", "a red circle"], 0.2, 2, None),      # quiet: OpenMP's default (spin, then sleep)
    (["lingen", "generate", "a red circle"], 0.99, 2, None),
    (["lingen", "generate", "a red circle"], 1.0, 2, "PASSIVE"),  # half the cores busy: sleep
    (["lingen", "eval"], 3.5, 8, None),
    (["lingen", "eval"], 4.0, 8, "PASSIVE"),
    (["lingen"], float("inf"), 2, "PASSIVE"),                   # nothing to measure: the cautious choice
])
def test_wait_policy_rule(argv, busy, cores, expected):
    assert wait_policy(argv, busy, cores) == expected


def run_probe(argv, env):
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env:
        environ["OMP_WAIT_POLICY"] = env
    return subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], env=environ, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("argv, env, expected", [
    (["lingen", "train", "r.yaml"], None, "ACTIVE"),
    (["lingen", "train", "r.yaml"], "PASSIVE", "PASSIVE"),  # the user's setting wins
    (["lingen", "eval"], "ACTIVE", "ACTIVE"),
    (["lingen", "generate", "x"], "PASSIVE", "PASSIVE"),
])
def test_wait_policy_set_before_torch(argv, env, expected):
    assert run_probe(argv, env) == expected


def _spin(stop):
    while not stop.is_set():
        pass


def test_busy_cores_sees_other_processes():
    """One spinning process per core: /proc/stat sampled while this process sleeps shows them busy."""
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    cores = os.cpu_count() or 1
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(cores)]
    for p in spinners:
        p.start()
    try:
        time.sleep(0.3)
        busy = _busy_cores(0.3)
    finally:
        stop.set()
        for p in spinners:
            p.join()
    assert busy > 0.5 * cores, busy
    assert wait_policy(["lingen", "generate", "x"], busy, cores) == "PASSIVE"


# ------------------------------------------------------------------ glibc malloc (lingen_cli.tune_malloc)

FAULTS_PROBE = """
import resource
if {tune}:
    import lingen_cli
import torch
from lingen_model.models.denoiser import build_denoiser
torch.manual_seed(0)
model = build_denoiser("tiny", depth=2).eval()
args = (torch.randn(2, 8, 9, 16, 16), torch.rand(2), torch.randn(2, 12, model.config.text_dim),
        torch.ones(2, 12, dtype=torch.bool))
with torch.no_grad():
    model(*args)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):  # the steps of a sampling run: the same buffers freed and allocated again
        model(*args)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(tune: bool) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return int(subprocess.run([sys.executable, "-c", FAULTS_PROBE.format(tune=tune)], env=environ,
                              capture_output=True, text=True, check=True).stdout.strip())


def test_tune_malloc_keeps_freed_buffers_mapped():
    """With glibc's defaults a 4 s CFG step of a (2-block) tiny denoiser frees activation buffers back to
    the OS and faults them in again on the next step (thousands of page faults a step); with
    lingen_cli's settings the freed memory is reused (measured ~5k-17k against ~150-650 a step)."""
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    plain, tuned = _page_faults(False), _page_faults(True)
    assert plain > 3 * 2000, plain  # the premise: buffers are faulted in anew every step
    assert tuned < plain / 4, (tuned, plain)


def test_tune_malloc_leaves_a_users_setting_alone():
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    probe = "import lingen_cli; print(sorted(lingen_cli.tune_malloc()))"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    both = subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True, check=True)
    assert both.stdout.strip() == "['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_']"
    environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    one = subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True, check=True)
    assert one.stdout.strip() == "['MALLOC_TRIM_THRESHOLD_']"
