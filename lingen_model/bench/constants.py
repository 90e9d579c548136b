"""Constants of the benchmark: worker environment, labels, per-size defaults."""
from __future__ import annotations

#: Environment the workers start with unless the user set these already (see module docstring):
#: glibc malloc keeps big buffers instead of unmapping them after every call, and OpenMP
#: threads sleep instead of spinning at barriers (spinning threads fight over shared cores).
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824",
              "OMP_WAIT_POLICY": "PASSIVE"}
MIXERS = {"lingen": "mate", "dit": "attention"}
LABELS = {"mate": "LinGen", "attention": "DiT"}
#: Per size: default resolution, frame rate and lengths. ``tiny`` is the embedded model's native
#: setting (128² px, 8 fps); ``4b`` is the paper's efficiency setting (512², 17/34/68 s), with
#: 16 fps assumed (see docs/benchmarks.md).
MODEL_DEFAULTS = {
    "tiny": {"res": "128", "fps": 8.0, "lengths": "4s,8s,15s,30s,60s"},
    "small": {"res": "256", "fps": 16.0, "lengths": "4s,8s,17s"},
    "4b": {"res": "512", "fps": 16.0, "lengths": "17s,34s,68s"},
}
RESULT_TAG = "LINGEN_BENCH_RESULT "


