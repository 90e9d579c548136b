"""scripts/gpu_check.sh on a machine without a GPU: usage errors and the early "no CUDA device" stop."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"


def run(*args):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_usage_needs_one_folder():
    for args in ((), ("a", "b")):
        r = run(*args)
        assert r.returncode == 2 and r.stderr.startswith("usage: scripts/gpu_check.sh OUT_DIR"), r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_stops_early_without_cuda(tmp_path):
    out = tmp_path / "check"
    r = run(out)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 3, r.stderr
    assert lines == [lines[0]] and lines[0].startswith("gpu_check: error: no CUDA device"), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert (out / "gpu_check.log").read_text().strip() == lines[0]  # the log is in the folder too
    assert not (out / "constraints.txt").exists()  # stopped before installing anything
