"""The floors, for every package: contracts/skillpack import no wing; the wings (cloud, edge,
export) do not import each other (export may import ``cloud.model`` / ``cloud.data``, the PyTorch
model it exports, but only inside the functions that need them); inside the edge, the runtime
(ONNX Runtime / TensorRT sessions) does not import the serving layer built on it; the CLI
modules import wings only inside command bodies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINGS = {"cloud", "edge", "export"}


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Full dotted names of the modules imported (module level only: not inside functions or
    ``if TYPE_CHECKING:`` blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _top_level_imports(path: Path, module_level_only: bool) -> set[str]:
    return {name.split(".")[0] for name in _imports(path, module_level_only)}


def _py_files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("pkg", ["contracts", "skillpack"])
def test_floor_imports_no_wing(pkg: str) -> None:
    for f in _py_files(pkg):
        bad = _top_level_imports(f, module_level_only=False) & (WINGS | {"autoglm", "torch", "transformers"})
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_edge_never_imports_cloud_or_export() -> None:
    for f in _py_files("edge"):
        bad = _top_level_imports(f, module_level_only=False) & {
            "cloud",
            "export",
            "torch",
            "transformers",
            "autoglm",
        }
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_edge_runtime_does_not_import_serving() -> None:
    for f in _py_files("edge/runtime"):
        bad = {m for m in _imports(f, module_level_only=False) if m.startswith(("edge.serving", "edge.http"))}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_cloud_never_imports_edge_export_or_cli() -> None:
    for f in _py_files("cloud"):
        bad = _top_level_imports(f, module_level_only=False) & {"edge", "export", "autoglm"}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_export_imports_only_cloud_model_and_data_and_only_lazily() -> None:
    for f in _py_files("export"):
        everywhere = _imports(f, module_level_only=False)
        assert not {m.split(".")[0] for m in everywhere} & {"edge", "autoglm"}, f"{f.relative_to(ROOT)}"
        cloud = {m for m in everywhere if m.split(".")[0] == "cloud"}
        assert all(m.startswith(("cloud.model", "cloud.data")) for m in cloud), (
            f"{f.relative_to(ROOT)} imports {cloud}"
        )
        at_load = {m for m in _imports(f, module_level_only=True) if m.split(".")[0] == "cloud"}
        assert not at_load, f"{f.relative_to(ROOT)} imports {at_load} at module level"


def test_cli_imports_wings_only_inside_commands() -> None:
    for f in _py_files("autoglm"):
        bad = _top_level_imports(f, module_level_only=True) & (WINGS | {"torch", "transformers", "onnx"})
        assert not bad, f"{f.relative_to(ROOT)} imports {bad} at module level"
