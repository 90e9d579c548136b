"""lingen command-line interface (Typer + rich). Entry point: ``lingen_cli.app:main``."""
import os

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other work, spinning
# threads slowed the VAE decoder 5-20x (measured on 2 cores). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
