"""Benchmark records and the tables rendered from them (autoglm/bench/records.py, `autoglm bench report`)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.bench.records import (
    DEFAULT_RESULTS_DIR,
    REPO_ROOT,
    BenchRecord,
    HeadlineRow,
    latest_by_bench,
    load_records,
    machine_info,
    render_blocks,
)
from autoglm.cli import app
from autoglm.cli.bench_cmd import BENCHMARKS, report_files


def _rec(bench: str, when: datetime, result: str, met: bool | None = None) -> BenchRecord:
    return BenchRecord(
        bench=bench,
        created_at=when,
        commit="abc",
        dirty=False,
        machine=machine_info(),
        metrics={"x": 1},
        headline=[HeadlineRow(what="w", baseline="b", result=result, target="t", met=met)],
    )


def test_committed_readme_and_docs_tables_equal_what_the_committed_records_render() -> None:
    latest = latest_by_bench(load_records(DEFAULT_RESULTS_DIR))
    stale = [
        p.name
        for p in report_files(REPO_ROOT)
        if p.is_file() and render_blocks(p.read_text(), latest, list(BENCHMARKS)) != p.read_text()
    ]
    assert not stale, f"run `autoglm bench report`: {stale}"
    assert "<!-- bench:table:start -->" in (REPO_ROOT / "README.md").read_text()


def test_every_record_names_a_listed_benchmark() -> None:
    unknown = {r.bench for r in load_records(DEFAULT_RESULTS_DIR)} - set(BENCHMARKS)
    assert not unknown, f"records of benchmarks missing from `autoglm bench list`: {unknown}"


def test_newest_record_wins_and_missed_targets_say_so() -> None:
    old = _rec("mqtt", datetime(2026, 1, 1, tzinfo=UTC), "old number", met=True)
    new = _rec("mqtt", datetime(2026, 2, 1, tzinfo=UTC), "new number", met=False)
    text = "intro\n<!-- bench:table:start -->\nTYPED BY HAND\n<!-- bench:table:end -->\noutro\n"
    out = render_blocks(text, latest_by_bench([new, old]), ["mqtt", "fleet"])
    assert "new number" in out and "old number" not in out and "TYPED BY HAND" not in out
    assert "❌ missed" in out and "| `fleet` | — | no record yet |" in out
    assert out.startswith("intro\n") and out.endswith("outro\n")


def test_a_block_of_a_name_with_digits_is_rendered() -> None:
    """Benchmark names may hold digits (``reasoning_v3``); their blocks render like any other
    (they were once left empty, and ``--check`` passed over them)."""
    rec = _rec("reasoning_v3", datetime(2026, 1, 1, tzinfo=UTC), "a v3 number")
    text = "<!-- bench:reasoning_v3:start -->\n<!-- bench:reasoning_v3:end -->\n"
    assert "a v3 number" in render_blocks(text, latest_by_bench([rec]), ["reasoning_v3"])


def test_report_check_fails_when_a_newer_record_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    shutil.copytree(DEFAULT_RESULTS_DIR, results)
    runner = CliRunner()
    ok = runner.invoke(app, ["bench", "report", "--check", "--results", str(results)])
    assert ok.exit_code == 0, ok.output
    newer = _rec("mqtt", datetime(2099, 1, 1, tzinfo=UTC), "a number nobody rendered")
    (results / "mqtt-20990101T000000Z.json").write_text(newer.model_dump_json())
    bad = runner.invoke(app, ["bench", "report", "--check", "--results", str(results)])
    assert bad.exit_code == 1 and "autoglm bench report" in bad.output


def test_a_broken_record_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "mqtt-x.json").write_text("{not json")
    res = CliRunner().invoke(app, ["bench", "report", "--check", "--results", str(tmp_path)])
    assert res.exit_code == 1 and "mqtt-x.json" in res.output and "Traceback" not in res.output
