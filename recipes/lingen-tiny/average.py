"""Average the EMA denoiser weights of several exports of one run into one checkpoint.

    python recipes/lingen-tiny/average.py OUT SNAPSHOT [SNAPSHOT ...]

Each SNAPSHOT is an export directory (config.json + safetensors) of the same training run, for
example copies of the export taken at every save. See ``lingen_model.generation.checkpoint.average_checkpoints``.
"""
import argparse
import sys

from lingen_model.generation.checkpoint import CheckpointError, average_checkpoints, read_config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="checkpoint directory to write (replaced atomically)")
    ap.add_argument("snapshots", nargs="+", help="export directories of one run")
    args = ap.parse_args()
    try:
        out = average_checkpoints(args.snapshots, args.out)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (average of steps {read_config(out)['training']['averaged_steps']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
