"""Benchmark records under ``benchmarks/results/`` and the tables rendered from them.

Every benchmark ends by calling :func:`write_record` with its measured numbers and a few
*headline rows* (what, baseline, result, target, met) that it builds from those numbers itself.
``autoglm bench report`` renders the README and docs tables from the newest record of each
benchmark, between ``<!-- bench:NAME:start -->`` / ``<!-- bench:NAME:end -->`` markers; a test
checks that the committed tables equal what the committed records render to, so no number in
those tables is typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from autoglm.plots import Figure

RECORD_SCHEMA = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class Machine(BaseModel):
    """Where a record was measured."""

    model_config = ConfigDict(extra="forbid")

    cpu: str
    cores: int
    memory_gib: float
    platform: str
    python: str
    accelerator: str = "none"
    note: str = ""


class HeadlineRow(BaseModel):
    """One row of the README benchmark table, built by the benchmark from its own numbers."""

    model_config = ConfigDict(extra="forbid")

    what: str
    baseline: str
    result: str
    target: str = "—"
    met: bool | None = None


class BenchRecord(BaseModel):
    """One benchmark run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RECORD_SCHEMA
    bench: str
    created_at: datetime
    commit: str
    dirty: bool
    machine: Machine
    argv: list[str] = Field(default_factory=list)
    metrics: dict[str, Any]
    headline: list[HeadlineRow] = Field(default_factory=list)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def machine_info(accelerator: str = "none", note: str = "") -> Machine:
    """Describe this machine (CPU model, cores, memory, OS, Python)."""
    return Machine(
        cpu=_cpu_name(),
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        accelerator=accelerator,
        note=note or os.environ.get("AUTOGLM_BENCH_NOTE", ""),
    )


def git_commit(cwd: Path = REPO_ROOT) -> tuple[str, bool]:
    """(short commit, working tree dirty) or ("unknown", True) outside a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", True


def results_dir() -> Path:
    """``AUTOGLM_BENCH_RESULTS`` or ``benchmarks/results`` of the checkout."""
    env = os.environ.get("AUTOGLM_BENCH_RESULTS")
    return Path(env) if env else DEFAULT_RESULTS_DIR


def write_record(
    bench: str,
    metrics: dict[str, Any],
    headline: list[HeadlineRow] | None = None,
    *,
    accelerator: str = "none",
    out_dir: Path | None = None,
    figures: Sequence[Figure] | None = None,
) -> Path:
    """Write one record as ``{bench}-{UTC timestamp}.json`` and print its path; returns the path.

    A PNG of the same name goes beside it (:func:`write_plot`): ``figures`` when the benchmark
    gives them, else an overview of the record's numeric metrics."""
    if not _NAME.match(bench):
        raise ValueError(f"benchmark name {bench!r} must match {_NAME.pattern}")
    sha, dirty = git_commit()
    now = datetime.now(UTC)
    rec = BenchRecord(
        bench=bench,
        created_at=now,
        commit=sha,
        dirty=dirty,
        machine=machine_info(accelerator),
        argv=sys.argv[1:],
        metrics=metrics,
        headline=headline or [],
    )
    target = out_dir or results_dir()
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{bench}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(rec.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n")
    print(f"record: {path}", flush=True)
    write_plot(path, rec, figures)
    return path


def write_plot(record_path: Path, rec: BenchRecord, figures: Sequence[Figure] | None = None) -> Path | None:
    """Render ``figures`` (or :func:`autoglm.plots.overview` of the metrics) to ``<record>.png``.

    Returns the PNG's path, or ``None`` when matplotlib (extra ``plots``) is missing or there is
    nothing numeric to draw; either is said in one printed line."""
    from autoglm import plots

    if not plots.available():
        print("plot: skipped (matplotlib not installed: pip install 'open-autoglm-edge[plots]')", flush=True)
        return None
    panels = list(figures) if figures else plots.overview(rec.metrics)
    if not panels:
        print("plot: skipped (no numeric metrics)", flush=True)
        return None
    title = (
        f"{rec.bench} · {rec.created_at:%Y-%m-%d %H:%M} UTC · {rec.machine.cores} cores"
        f"{'' if rec.machine.accelerator == 'none' else ' · ' + rec.machine.accelerator} · {rec.commit}"
    )
    png = plots.render(panels, record_path.with_suffix(".png"), title=title)
    print(f"plot: {png}", flush=True)
    return png


def load_records(directory: Path | None = None) -> list[BenchRecord]:
    """Every record in ``directory`` (unreadable files raise ``ValueError`` naming the file)."""
    out: list[BenchRecord] = []
    d = directory or results_dir()
    if not d.is_dir():
        return out
    for path in sorted(d.glob("*.json")):
        try:
            out.append(BenchRecord.model_validate_json(path.read_text()))
        except ValueError as exc:
            raise ValueError(f"{path}: not a benchmark record: {str(exc).splitlines()[0]}") from None
    return out


def latest_by_bench(records: list[BenchRecord]) -> dict[str, BenchRecord]:
    """The newest record of each benchmark."""
    latest: dict[str, BenchRecord] = {}
    for rec in records:
        cur = latest.get(rec.bench)
        if cur is None or rec.created_at > cur.created_at:
            latest[rec.bench] = rec
    return latest


def _met(m: bool | None) -> str:
    return "" if m is None else (" ✅" if m else " ❌ missed")


def render_headline_table(latest: dict[str, BenchRecord], order: list[str]) -> str:
    """Markdown table of every headline row, benchmarks in ``order`` (missing ones say so)."""
    lines = ["| what | baseline (same run) | this project | target | record |", "|---|---|---|---|---|"]
    for bench in order:
        rec = latest.get(bench)
        if rec is None:
            lines.append(f"| `{bench}` | — | no record yet | — | — |")
            continue
        when = (
            f"{rec.created_at:%Y-%m-%d}, {rec.machine.cores} cores, "
            f"`{rec.commit}`{'+dirty' if rec.dirty else ''}"
        )
        if rec.machine.accelerator != "none":
            when += f", {rec.machine.accelerator}"
        for row in rec.headline:
            lines.append(
                f"| {row.what} | {row.baseline} | {row.result} | {row.target}{_met(row.met)} | {when} |"
            )
    return "\n".join(lines)


_BLOCK = re.compile(
    r"(<!-- bench:(?P<name>[a-z][a-z0-9_]*):start -->\n)(?P<body>.*?)(<!-- bench:(?P=name):end -->)", re.S
)


def render_blocks(text: str, latest: dict[str, BenchRecord], order: list[str]) -> str:
    """Replace every ``<!-- bench:NAME:start -->…<!-- bench:NAME:end -->`` block in ``text``.

    ``NAME`` is ``table`` (the headline table of all benchmarks in ``order``) or one benchmark.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        body = render_headline_table(latest, order if name == "table" else [name])
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return _BLOCK.sub(sub, text)
