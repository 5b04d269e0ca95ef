"""`autoglm bench …`: run the side-by-side benchmarks in ``benchmarks/``.

Each benchmark is a standalone script that runs its baseline in the same run and prints a
table plus one JSON record; this command finds it in the checkout and passes the rest of the
command line through (``autoglm bench serving -- --help`` shows a script's own options).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from autoglm.cli.common import console, fail

BENCHMARKS: dict[str, tuple[str, str]] = {
    "training": ("bench_training.py", "training samples/s: adapters vs. full fine-tuning; trainable share"),
    "export": ("bench_export.py", "PyTorch eager vs. ORT fp32 vs. int8 at batch 1/8/32; sizes; int8 parity"),
    "serving": (
        "bench_serving.py",
        "naive PyTorch server vs. ORT unbatched vs. this server; raw engine limit",
    ),
    "mqtt": (
        "bench_mqtt.py",
        "records/s edge->cloud batched+LZ4 vs. one per message; LZ4 ratio; sync latency",
    ),
    "fleet": ("bench_fleet.py", "500 simulated edges over MQTT: rollout convergence, heartbeat ingestion"),
    "agent": (
        "quality_agent.py",
        "agent quality: route accuracy, exact match, graph hits@1, cache false hits",
    ),
    "cache": (
        "quality_cache.py",
        "semantic-cache false / true hits on hard negatives over thresholds; default by rule",
    ),
    "tools": (
        "quality_tools.py",
        "calculator and unit conversion on generated EN/ZH questions vs fractions / pint",
    ),
    "edge_download": (
        "bench_edge_download.py",
        "edge bundle download: registry downloader (verified, resumable, cached) vs. plain HTTP GET",
    ),
    "reasoning": (
        "reasoning_ablation.py",
        "graph hits@1 on frozen paraphrase families: lexical vs learned scorers, "
        "3 seeds; router; abstention; ask latency",
    ),
    "reasoning_abstention": (
        "reasoning_abstention.py",
        "abstention on frozen nonsense / false abstention on real questions: scope heads /1, /2, /3 "
        "side by side, 3 seeds (reasoning_ablation.py --abstention-only)",
    ),
    "reasoning_trained": (
        "reasoning_ablation.py",
        "the reasoning ablation on a trained bundle (the demo's int8 MiniLM bundle): "
        "--record-name reasoning_trained",
    ),
    "reasoning_cotrained": (
        "reasoning_ablation.py",
        "the reasoning ablation on a co-trained bundle (cloud.training.cotrain on the demo checkpoint, "
        "int8 export): --record-name reasoning_cotrained",
    ),
    "reasoning_cotrained_gnn": (
        "reasoning_ablation.py",
        "the reasoning ablation on a bundle co-trained with the entity graph encoder "
        "(cloud.training.cotrain --entity-gnn on the demo checkpoint, int8 export): "
        "--record-name reasoning_cotrained_gnn",
    ),
    "reasoning_priors": (
        "reasoning_priors.py",
        "fleet path priors: graph hits@1 without / with the fleet's feedback in training and at answer "
        "time (simulated fleet on the validation families), 3 seeds",
    ),
    "reasoning_v3": (
        "reasoning_ablation.py",
        "the reasoning ablation on re-split 3 (reasoning_eval_v3, the demo's int8 bundle, variants at the "
        "ablation's own size, 24 questions per pattern): --record-name reasoning_v3",
    ),
    "reasoning_families": (
        "reasoning_families.py",
        "graph hits@1 on the re-split 3 evaluation families: the shipped path scorer trained on "
        "re-split 3 families vs re-split 2 families (same size), 3 seeds; lexical baseline",
    ),
    "reasoning_abstention_trained": (
        "reasoning_abstention.py",
        "the same abstention run on a trained bundle (the demo's int8 MiniLM bundle): "
        "--record-name reasoning_abstention_trained",
    ),
    "ask_latency": (
        "bench_ask.py",
        "Agent.ask latency on graph questions: lexical vs learned scorer, sequential vs prefetch "
        "path, hashing or served-bundle routing; same answers checked",
    ),
    "edge_body_memory": (
        "bench_edge_body_memory.py",
        "edge RSS under 80 concurrent 8 MB bodies: this tree vs a baseline commit",
    ),
    "console": ("bench_console.py", "web console page and API latency with 500 nodes"),
    "loop": (
        "bench_loop.py",
        "new route from k = 4/8/16 examples: MAML init vs plain fine-tuning, held-out "
        "families, other routes' drop, training time; 3 seeds",
    ),
    "loop_gate": (
        "loop_gate.py",
        "a gated route across one loop job: grown gate vs refitted gate vs the old gate on the new "
        "adapters vs the loop's proto, frozen new-route set, 3 seeds",
    ),
    "loop_gate_jobs": (
        "loop_gate.py",
        "the same over 3 successive loop jobs, each on the previous job's model: --jobs 3",
    ),
    "loop_fleet": (
        "bench_loop_fleet.py",
        "learning loop: first hard example -> promoted version on 50 simulated "
        "nodes (triage, auto-approve, fine-tune, guarded export, canary); baseline the fine-tune alone",
    ),
}
SOURCE_ONLY = (
    "benchmarks are source-only (they need the checkout's benchmarks/ and test fixtures): "
    "run them from a git checkout installed with `pip install -e .`"
)


def benchmarks_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks"


def bench_list() -> None:
    """List the benchmarks (source-only: they run from a checkout)."""
    from rich.table import Table

    if not benchmarks_dir().is_dir():
        fail(f"{SOURCE_ONLY}; {benchmarks_dir()} not found")

    table = Table("name", "script", "what it measures")
    for name, (script, what) in BENCHMARKS.items():
        table.add_row(name, f"benchmarks/{script}", what)
    console.print(table)


def bench_run(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(BENCHMARKS)}.")],
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments passed to the script (after --).")
    ] = None,
) -> None:
    """Run one benchmark script with this interpreter and pass arguments through."""
    if name not in BENCHMARKS:
        fail(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", 2)
    script = benchmarks_dir() / BENCHMARKS[name][0]
    if not script.is_file():
        fail(f"{SOURCE_ONLY}; {script} not found")
    rc = subprocess.call([sys.executable, str(script), *(args or [])], cwd=script.parents[1])
    raise typer.Exit(rc)


def report_files(root: Path) -> list[Path]:
    """The files whose ``<!-- bench:… -->`` blocks are rendered: the README and every doc."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def bench_report(
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a table differs from the records; write nothing.")
    ] = False,
    results: Annotated[Path | None, typer.Option(help="Records folder (default benchmarks/results).")] = None,
) -> None:
    """Render the README and docs benchmark tables from the newest record of each benchmark."""
    from autoglm.bench.records import REPO_ROOT, latest_by_bench, load_records, render_blocks

    try:
        latest = latest_by_bench(load_records(results))
    except ValueError as exc:
        fail(str(exc))
    order = list(BENCHMARKS)
    stale: list[str] = []
    files = report_files(REPO_ROOT)
    for path in files:
        rel = str(path.relative_to(REPO_ROOT))
        if not path.is_file():
            continue
        old = path.read_text()
        new = render_blocks(old, latest, order)
        if new != old:
            stale.append(rel)
            if not check:
                path.write_text(new)
    if check and stale:
        fail(f"benchmark tables out of date in {', '.join(stale)}: run `autoglm bench report`")
    console.print(
        f"{'checked' if check else 'rendered'} {len(files)} files from {len(latest)} benchmarks"
        + (f"; updated {', '.join(stale)}" if stale and not check else "")
    )


def register(app: typer.Typer) -> None:
    """Attach ``autoglm bench`` to the root app."""
    bench = typer.Typer(
        help="Run the side-by-side benchmarks (each prints a table and a JSON record). Source-only: "
        "run from a git checkout (`pip install -e .`).",
        no_args_is_help=True,
    )
    bench.command("list")(bench_list)
    bench.command("run")(bench_run)
    bench.command("report")(bench_report)
    app.add_typer(bench, name="bench")
