"""The learning loop's exporter: ``export``'s guarded adapter update behind the interface
``cloud.loop.pipeline.Exporter`` (``cloud`` never imports ``export``; the worker command wires
this in). Wings are imported inside the function (the CLI floor rule)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.loop.pipeline import ExportRequest


def guarded_update(req: ExportRequest) -> tuple[Path, dict[str, Any]]:
    """An adapter-only update with the guard; a full export (same precision as the parent, its own
    guard) when the route list grew (a new route changes the head's shape: no update fits) or the
    checkpoint has a gated route (its gate is part of the graph, refitted by the fine-tune)."""
    from cloud.loop.pipeline import GuardRefused
    from cloud.model.checkpoint import read_checkpoint_meta
    from contracts.bundle import open_bundle
    from export.errors import GuardFailed
    from export.update_guard import guarded_adapter_update

    pm = open_bundle(req.parent_bundle).manifest
    meta = read_checkpoint_meta(req.checkpoint_dir)
    routes = list(next(iter(meta.adapter_sets.values())).routes)
    if meta.route_gate_doc() is not None or routes != list(pm.adapter_sets[pm.default_adapter_set].routes):
        return _full_export(req, pm.precision, routes)
    try:
        bundle, report = guarded_adapter_update(
            req.checkpoint_dir,
            req.out_dir,
            parent_bundle=req.parent_bundle,
            name=req.name,
            version=req.version,
            texts=req.eval_texts,
            labels=req.eval_labels,
            sign_key=req.sign_key,
            graph_heads=_heads(req),
        )
    except GuardFailed as exc:
        raise GuardRefused(exc.message) from exc
    return bundle, _with_heads(bundle, report)


def _heads(req: ExportRequest) -> Any:
    """The graph-head trainer when the job asks for heads (production carries them), else None."""
    if not req.graph_heads:
        return None
    from autoglm.graph_heads import trainer

    return trainer(priors=req.fleet_priors)


def _with_heads(bundle: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The guard report with the graph heads' metrics beside it (what the job records)."""
    from contracts.bundle import open_bundle

    heads = open_bundle(bundle, verify=False).manifest.metrics.export.get("graph_heads")
    return {**report, "graph_heads": heads} if heads else report


def _full_export(req: ExportRequest, precision: str, routes: list[str]) -> tuple[Path, dict[str, Any]]:
    from cloud.loop.pipeline import GuardRefused
    from contracts.bundle import open_bundle
    from export.errors import GuardFailed
    from export.pipeline import export_checkpoint

    try:
        bundle = export_checkpoint(
            req.checkpoint_dir,
            req.out_dir,
            precision=precision,
            name=req.name,
            version=req.version,
            sign_key=req.sign_key,
            eval_texts=req.eval_texts,
            eval_labels=req.eval_labels,
            graph_heads=_heads(req),
        )
    except GuardFailed as exc:
        raise GuardRefused(exc.message) from exc
    parity = open_bundle(bundle).manifest.metrics.parity
    report = {
        "passed": True,
        "full_export": True,
        "precision": precision,
        "routes": routes,
        "parity": parity,
        "failures": [],
    }
    return bundle, _with_heads(bundle, report)
