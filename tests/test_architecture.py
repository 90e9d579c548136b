"""The layering contract (docs/design.md, "Layers"): ``lingen_cli`` → ``lingen_model``, never back.

Walks every module's import statements (top level and inside functions) with ``ast``, so a
lazy ``from lingen_cli... import`` inside a library function fails too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str, forbidden: str, root: Path = ROOT) -> list[str]:
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in _imports(path):
            if module == forbidden or module.startswith(forbidden + "."):
                out.append(f"{path.relative_to(root)}:{line} imports {module}")
    return out


def test_library_never_imports_the_cli():
    assert _violations("lingen_model", "lingen_cli") == []


@pytest.mark.parametrize("package", ["lingen_model"])
def test_library_has_no_cli_framework(package):
    """The library raises exceptions and returns values; printing and exit codes are the CLI's."""
    assert _violations(package, "typer") == []


def test_contract_checker_sees_a_violation(tmp_path):
    """The walker finds an upward import inside a function (so the tests above can fail)."""
    pkg = tmp_path / "lingen_model" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("import os\n\ndef f():\n    from lingen_cli.common import fail\n    return fail\n")
    assert _violations("lingen_model", "lingen_cli", root=tmp_path) == ["lingen_model/sub/bad.py:4 imports lingen_cli.common"]
