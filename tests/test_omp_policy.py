"""The OpenMP wait policy chosen by `lingen_cli` before torch loads: ACTIVE for `train`; for every
other command OpenMP's default on a quiet machine and PASSIVE on a busy one; the user's setting wins."""
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
