"""Benchmark plots: figure specs, the metrics overview, and the PNG written beside a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoglm.bench.records import write_record
from autoglm.plots import Figure, overview, render

PNG = b"\x89PNG\r\n\x1a\n"


def _size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figure_checks_series_lengths() -> None:
    with pytest.raises(ValueError, match="series 'b' has 1 values for 2 categories"):
        Figure("t", categories=["x", "y"], series={"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="for 3 x values"):
        Figure("t", kind="lines", x=[1, 2, 3], series={"a": [1, 2]})


def test_overview_groups_numeric_metrics() -> None:
    figs = overview(
        {
            "serving": {"c1": {"rps": 10, "p99_ms": 2.5}, "ok": True},
            "ratio": 7.1,
            "note": "x",
            "nan": float("nan"),
            "empty": {},
        }
    )
    assert [f.title for f in figs] == ["serving", "scalars"]
    assert list(figs[0].categories) == ["c1.rps", "c1.p99_ms"] and list(figs[0].series["serving"]) == [
        10.0,
        2.5,
    ]
    assert list(figs[1].categories) == ["ratio"]


def test_render_draws_panels(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    one = render(
        [Figure("rps", categories=["c1", "c32"], series={"naive": [38, 40], "this": [268, 352]})],
        tmp_path / "one.png",
    )
    two = render(
        [
            Figure("rps", categories=["a"], series={"s": [1.0]}),
            Figure("p99", kind="lines", x=[1, 2, 4], series={"p99": [1.0, None, 3.0]}, logx=True),
        ],
        tmp_path / "two.png",
        title="t",
    )
    assert _size(two)[0] > _size(one)[0]  # two columns
    with pytest.raises(ValueError, match="nothing to plot"):
        render([], tmp_path / "none.png")


def test_write_record_puts_a_png_beside_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path = write_record("plotcheck", {"a": {"x": 1.0, "y": 2.0}}, out_dir=tmp_path)
    png = path.with_suffix(".png")
    assert json.loads(path.read_text())["bench"] == "plotcheck" and _size(png)[0] > 100
    assert f"plot: {png}" in capsys.readouterr().out
    path2 = write_record(
        "plotcheck2",
        {"n": "text only"},
        out_dir=tmp_path,
        figures=[Figure("given", categories=["a"], series={"s": [3.0]})],
    )
    assert path2.with_suffix(".png").exists()
    path3 = write_record("plotcheck3", {"n": "text only"}, out_dir=tmp_path)
    assert not path3.with_suffix(".png").exists() and "no numeric metrics" in capsys.readouterr().out
