"""The floors: contracts/skillpack import no wing; wings do not import each other's code at
module level; the CLI modules import wings only inside command bodies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINGS = {"cloud", "edge", "export"}


def _top_level_imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _py_files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("pkg", ["contracts", "skillpack"])
def test_floor_imports_no_wing(pkg: str) -> None:
    for f in _py_files(pkg):
        bad = _top_level_imports(f, module_level_only=False) & (WINGS | {"autoglm", "torch", "transformers"})
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_edge_never_imports_cloud_or_export() -> None:
    for f in _py_files("edge"):
        bad = _top_level_imports(f, module_level_only=False) & {"cloud", "export", "torch", "transformers", "autoglm"}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_cli_imports_wings_only_inside_commands() -> None:
    for f in _py_files("autoglm"):
        bad = _top_level_imports(f, module_level_only=True) & (WINGS | {"torch", "transformers", "onnx"})
        assert not bad, f"{f.relative_to(ROOT)} imports {bad} at module level"
