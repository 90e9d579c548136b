"""The OpenMP wait policy chosen by `lingen_cli` before torch loads: ACTIVE for `train`; for every
other command OpenMP's default on a quiet machine and PASSIVE on a busy one; the user's setting wins."""
import os
import subprocess
import sys

import pytest

from lingen_cli import wait_policy

PROBE = "import sys; sys.argv = {argv!r}; import lingen_cli, os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"


@pytest.mark.parametrize("argv, load, cores, expected", [
    (["lingen", "train", "r.yaml"], 0.0, 2, "ACTIVE"),
    (["lingen", "train", "r.yaml"], 9.0, 2, "ACTIVE"),
    (["lingen", "generate", "a red circle"], 0.2, 2, None),      # quiet: OpenMP's default (spin, then sleep)
    (["lingen", "generate", "a red circle"], 0.99, 2, None),
    (["lingen", "generate", "a red circle"], 1.0, 2, "PASSIVE"),  # half the cores busy: sleep
    (["lingen", "eval"], 3.5, 8, None),
    (["lingen", "eval"], 4.0, 8, "PASSIVE"),
    (["lingen"], float("inf"), 2, "PASSIVE"),                   # no load average: the cautious choice
])
def test_wait_policy_rule(argv, load, cores, expected):
    assert wait_policy(argv, load, cores) == expected


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


def test_generate_follows_the_load_average():
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    out = run_probe(["lingen", "generate", "x"], None)
    # the load may cross the threshold between the two reads; only a clear side is checked
    if load < 0.4 * cores:
        assert out == "unset"
    elif load > 0.6 * cores:
        assert out == "PASSIVE"
