"""The OpenMP wait policy chosen by `lingen_cli` before torch loads: ACTIVE for `train`, PASSIVE otherwise."""
import os
import subprocess
import sys

import pytest

PROBE = "import sys; sys.argv = {argv!r}; import lingen_cli, os; print(os.environ['OMP_WAIT_POLICY'])"


@pytest.mark.parametrize("argv, env, expected", [
    (["lingen", "train", "r.yaml"], None, "ACTIVE"),
    (["lingen", "generate", "a red circle"], None, "PASSIVE"),
    (["lingen"], None, "PASSIVE"),
    (["lingen", "train", "r.yaml"], "PASSIVE", "PASSIVE"),  # the user's setting wins
    (["lingen", "eval"], "ACTIVE", "ACTIVE"),
])
def test_wait_policy(argv, env, expected):
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env:
        environ["OMP_WAIT_POLICY"] = env
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], env=environ, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == expected
