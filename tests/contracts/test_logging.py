"""contracts.logging: console lines on a terminal, JSON otherwise or when asked; ISO timestamps."""

from __future__ import annotations

import io
import json
import logging

import pytest

from contracts.logging import ConsoleFormatter, JsonFormatter, json_wanted, level_name, log_context
from contracts.settings import ConfigError


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_follows_the_terminal_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOGLM_LOG_FORMAT", raising=False)
    assert json_wanted(_Tty()) is False
    assert json_wanted(io.StringIO()) is True  # a container or a pipe
    monkeypatch.setenv("AUTOGLM_LOG_FORMAT", "json")
    assert json_wanted(_Tty()) is True
    monkeypatch.setenv("AUTOGLM_LOG_FORMAT", "console")
    assert json_wanted(io.StringIO()) is False
    monkeypatch.setenv("AUTOGLM_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="AUTOGLM_LOG_FORMAT"):
        json_wanted()


def test_records_carry_context_in_both_formats() -> None:
    record = logging.makeLogRecord(
        {
            "name": "autoglm.x",
            "levelname": "INFO",
            "levelno": 20,
            "msg": "hi %s",
            "args": ("there",),
            "created": 1_780_000_000.25,
            "msecs": 250.0,
        }
    )
    with log_context(node_id="n1"):
        doc = json.loads(JsonFormatter().format(record))
        line = ConsoleFormatter().format(record)
    assert doc["ts"].endswith("Z") and doc["ts"].startswith("2026-") and doc["msg"] == "hi there"
    assert doc["node_id"] == "n1"
    assert line.endswith("INFO  autoglm.x: hi there  node_id=n1") and line[2] == ":"


def test_level_names() -> None:
    assert level_name("debug") == "DEBUG"
    with pytest.raises(ConfigError, match="--log-level='LOUD'"):
        level_name("LOUD", "--log-level")
