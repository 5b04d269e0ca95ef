"""User JSONL: valid files load; every bad line is rejected with file, line number and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.data import Example, load_jsonl, write_jsonl
from contracts.errors import DataError

ROUTES = ["greet", "order"]


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '{"text": "hello there", "route": "greet"}',
        "",
        '{"text": "我要两杯咖啡", "route": "order"}',
        '{"text": "one tea", "route": "order", "lang": "en", "template_id": "t7"}',
    )
    exs = load_jsonl(path, ROUTES)
    assert exs == [
        Example("hello there", "greet", "en", "data.jsonl:1"),
        Example("我要两杯咖啡", "order", "zh", "data.jsonl:3"),
        Example("one tea", "order", "en", "t7"),
    ]


def test_round_trip_through_write_jsonl(tmp_path: Path) -> None:
    exs = [Example("a b", "greet", "en", "x.1"), Example("你好", "greet", "zh", "x.2")]
    assert load_jsonl(write_jsonl(tmp_path / "o.jsonl", exs)) == exs


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"text": "hi", "route": "greet"', "not valid JSON"),
        ('["hi", "greet"]', "expected a JSON object"),
        ('{"route": "greet"}', "missing field 'text'"),
        ('{"text": "hi"}', "missing field 'route'"),
        ('{"text": "hi", "route": "dance"}', "unknown route 'dance'"),
        ('{"text": "   ", "route": "greet"}', "empty text"),
        ('{"text": 5, "route": "greet"}', "must be a string"),
        ('{"text": "hi", "route": "greet", "lang": "fr"}', "lang must be one of"),
    ],
)
def test_bad_line_names_file_line_and_reason(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(
        tmp_path, '{"text": "fine", "route": "greet"}', line, '{"text": "also fine", "route": "order"}'
    )
    with pytest.raises(DataError) as err:
        load_jsonl(path, ROUTES)
    assert f"{path}:2:" in err.value.message
    assert reason in err.value.message
    assert err.value.status == 400


def test_any_route_is_accepted_without_a_route_list(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"text": "hi", "route": "dance"}')
    assert load_jsonl(path)[0].route == "dance"


def test_empty_or_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no examples"):
        load_jsonl(_write(tmp_path, "", "  "))
    with pytest.raises(DataError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl")
