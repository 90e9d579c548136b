"""``python -m lingen_cli`` (also what ``torchrun -m lingen_cli`` runs)."""
from lingen_cli.app import main

if __name__ == "__main__":
    main()
