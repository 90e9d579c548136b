"""lingen command-line interface (Typer + rich). Entry point: ``lingen_cli.app:main``."""
import os
import sys

from lingen_cli import interrupt as _interrupt

_interrupt.install_early()  # Ctrl-C during the imports below: one line, exit 130

# OpenMP wait policy, set before torch loads (an OMP_WAIT_POLICY already in the environment wins).
# - PASSIVE (idle threads sleep) for every command but `train`: on a CPU shared with other work,
#   spinning threads slowed the VAE decoder 5-20x (measured on 2 cores).
# - ACTIVE (idle threads spin) for `lingen train`, which usually has the machine to itself: a
#   lingen-tiny step (batch 4 × 33 frames, 2 cores) took 3.8 s -> 2.1 s in float32 and
#   4.5 s -> 1.25 s with bf16 autocast (denoiser forward + backward).
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE" if sys.argv[1:2] == ["train"] else "PASSIVE")
