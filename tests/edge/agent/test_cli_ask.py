"""``autoglm ask`` in-process (hashing encoder, no cloud) prints the answer with its steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.cli import app


def test_autoglm_ask_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["ask", "convert 37 °C to Fahrenheit", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["source"] == "local_tool" and doc["answer"] == "37 °C = 98.6 °F"
    assert doc["steps"][0]["kind"] == "route"
    assert (tmp_path / "edge" / "memory.sqlite3").is_file()


def test_autoglm_ask_unreachable_edge_fails_cleanly() -> None:
    result = CliRunner().invoke(app, ["ask", "hi", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "not reachable" in result.output
