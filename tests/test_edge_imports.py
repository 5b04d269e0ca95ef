"""Every ``edge`` module imports with torch and transformers made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib, pkgutil, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked on the edge")
        return None

sys.meta_path.insert(0, Block())
import edge
names = ["edge"] + [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
for n in names:
    importlib.import_module(n)
import autoglm.cli
assert "torch" not in sys.modules and "transformers" not in sys.modules
print(len(names))
"""


def test_edge_modules_import_without_torch() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) >= 1


def test_probe_really_blocks_torch() -> None:
    """The blocker itself works: importing torch under it fails."""
    code = PROBE.split("import edge")[0] + "import torch\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "blocked on the edge" in out.stderr
