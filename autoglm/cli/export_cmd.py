"""`autoglm export CHECKPOINT --out DIR`: a checkpoint becomes a verified (optionally signed) bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from autoglm.cli.common import console, fail


def _print_guard(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="int8 vs fp32")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    th = report.get("thresholds", {})
    rows = [
        ("queries", report.get("n"), f">= {th.get('min_eval_size')}"),
        ("route agreement", report.get("route_agreement"), f">= {th.get('min_route_agreement')}"),
        ("accuracy fp32", report.get("accuracy_reference"), ""),
        ("accuracy int8", report.get("accuracy"), ""),
        ("accuracy drop", report.get("accuracy_drop"), f"<= {th.get('max_accuracy_drop')}"),
        ("cosine mean", report.get("cosine_mean"), ""),
        ("cosine p1", report.get("cosine_p1"), f">= {th.get('min_cosine_p1')}"),
        ("cosine min", report.get("cosine_min"), ""),
    ]
    for name, value, limit in rows:
        if value is not None:
            table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value), limit)
    console.print(table)
    search = report.get("search") or {}
    for trial in search.get("trials", []):
        console.print(f"search trial: {trial}")


def _print_heads(m: dict[str, Any]) -> None:
    """The graph heads' numbers, as recorded in the manifest (``metrics.export.graph_heads``)."""
    hop, scope = m.get("hop_scorer", {}), m.get("scope_head", {})
    console.print(
        f"graph heads ({', '.join(m.get('roles', []))}; seed {m.get('seed')}, {m.get('seconds')} s): "
        f"path accuracy {hop.get('train_path_accuracy')} on {hop.get('train_questions')} training questions; "
        f"scope gate out-of-fold abstention {scope.get('oof_nonsense_abstention')}, "
        f"false abstention {scope.get('oof_false_abstention')}, threshold {scope.get('threshold')}"
    )
    fleet = hop.get("fleet_priors")
    if fleet is not None:
        console.print(
            f"fleet path priors: {fleet['paths']} paths read (digest {fleet['digest']}); "
            f"{fleet['weighted_questions']} questions weighted up "
            f"({fleet['confirmed_paths']} confirmed paths), {fleet['margin_questions']} "
            f"with a rejected path's margin ({fleet['rejected_paths']} rejected paths)"
        )


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""

    @app.command("export")
    def export(
        checkpoint: Annotated[
            Path, typer.Argument(help="Checkpoint directory (checkpoint.yaml + adapters.safetensors).")
        ],
        out: Annotated[
            Path, typer.Option("--out", help="Bundle directory to create (must be absent or empty).")
        ],
        precision: Annotated[str, typer.Option(help="fp32 | int8 | fp16")] = "fp32",
        tensorrt: Annotated[
            bool, typer.Option("--tensorrt", help="Also build TensorRT engines (needs a GPU).")
        ] = False,
        sign_key: Annotated[
            Path | None, typer.Option("--sign-key", help="ed25519 key file (autoglm bundle keygen).")
        ] = None,
        archive: Annotated[bool, typer.Option("--archive", help="Also write OUT.tar (one file).")] = False,
        allow_degraded: Annotated[
            bool, typer.Option("--allow-degraded", help="Keep an int8 bundle that fails the accuracy guard.")
        ] = False,
        name: Annotated[str, typer.Option(help="Model name in the manifest.")] = "autoglm-router",
        version: Annotated[str, typer.Option(help="Semantic version of this bundle.")] = "0.1.0",
        eval_jsonl: Annotated[
            Path | None,
            typer.Option("--eval-jsonl", help="Evaluation queries (JSONL text/route) for the int8 guard."),
        ] = None,
        parent: Annotated[
            Path | None,
            typer.Option("--parent", help="Write an adapter-only update of this parent bundle instead."),
        ] = None,
        variant_of: Annotated[
            str | None,
            typer.Option(
                "--variant-of",
                help="Make it a precision variant of this version (version becomes V+PRECISION).",
            ),
        ] = None,
        variants: Annotated[
            str | None,
            typer.Option(
                "--variants",
                help="Comma list, e.g. fp32,int8,fp16: OUT/<p>/ each; the first is VERSION, "
                "the others its variants VERSION+<p>.",
            ),
        ] = None,
        graph_heads: Annotated[
            bool,
            typer.Option(
                "--graph-heads",
                help="Train the edge reasoner's learned heads (path scorer + scope gate) on the exported "
                "encoder and attach them before signing.",
            ),
        ] = False,
        seed: Annotated[int, typer.Option(help="Seed of the --graph-heads training.")] = 0,
        fleet_priors_db: Annotated[
            Path | None,
            typer.Option(
                "--fleet-priors-db",
                help="With --graph-heads: train the path scorer with the fleet's path feedback sums "
                "read from the cloud sync hub's SQLite file (sync_db_path).",
            ),
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Export a checkpoint to an ONNX bundle (manifest, graph, adapters, tokenizer, signature)."""
        from contracts.bundle import pack_bundle
        from export.errors import ExportError, GuardFailed
        from export.pipeline import bundle_size, export_adapter_update, export_checkpoint, export_variants

        heads = None
        if graph_heads:
            if parent is not None:
                fail("--graph-heads needs a full export (not --parent)", 2)
            from autoglm.graph_heads import trainer

            priors = None
            if fleet_priors_db is not None:
                from cloud.sync.repository import read_fleet_priors

                try:
                    priors = read_fleet_priors(fleet_priors_db)
                except FileNotFoundError as exc:
                    fail(str(exc), 2)
            heads = trainer(seed=seed, priors=priors)
        elif fleet_priors_db is not None:
            fail("--fleet-priors-db needs --graph-heads", 2)
        texts = labels = None
        if eval_jsonl is not None:
            from cloud.data import load_jsonl

            examples = load_jsonl(eval_jsonl)
            texts, labels = [e.text for e in examples], [e.route for e in examples]
        try:
            if variants is not None:
                if parent is not None or variant_of is not None:
                    fail("--variants cannot be combined with --parent or --variant-of", 2)
                done = export_variants(
                    checkpoint,
                    out,
                    [p.strip() for p in variants.split(",") if p.strip()],
                    version=version,
                    name=name,
                    sign_key=sign_key,
                    eval_texts=texts,
                    eval_labels=labels,
                    allow_degraded=allow_degraded,
                    progress=not quiet,
                    tensorrt=tensorrt,
                    graph_heads=heads,
                )
                for p, path in done.items():
                    console.print(f"{p}: {path} ({bundle_size(path) / 1e6:.2f} MB)")
                return
            if parent is not None:
                result = export_adapter_update(
                    checkpoint,
                    out,
                    parent_bundle=parent,
                    version=version,
                    sign_key=sign_key,
                    progress=not quiet,
                )
            else:
                result = export_checkpoint(
                    checkpoint,
                    out,
                    precision=precision,
                    name=name,
                    version=version,
                    sign_key=sign_key,
                    eval_texts=texts,
                    eval_labels=labels,
                    allow_degraded=allow_degraded,
                    progress=not quiet,
                    tensorrt=tensorrt,
                    variant_of=variant_of,
                    graph_heads=heads,
                )
        except GuardFailed as exc:
            _print_guard(exc.report)
            fail(exc.message, code=3)
        except ExportError as exc:
            fail(exc.message, 2)  # the checkpoint, options or output the user named
        from contracts.bundle import open_bundle

        bundle = open_bundle(result, verify=False)
        guard = bundle.manifest.metrics.parity.get("int8_vs_fp32")
        if guard and not quiet:
            _print_guard(guard)
            if not guard.get("passed", True):
                console.print("[yellow]warning:[/] int8 guard failed; kept because of --allow-degraded")
        if heads is not None:
            _print_heads(bundle.manifest.metrics.export.get("graph_heads", {}))
        size = bundle_size(result)
        console.print(
            f"bundle {bundle.manifest.name}@{bundle.manifest.version} "
            f"({bundle.manifest.precision}, {size / 1e6:.2f} MB) -> {result}"
        )
        if archive:
            tar = pack_bundle(result, result.with_name(result.name + ".tar"))
            console.print(f"archive -> {tar}")
