"""lingen command-line interface (Typer + rich). Entry point: ``lingen_cli.app:main``."""
