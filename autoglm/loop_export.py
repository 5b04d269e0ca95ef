"""The learning loop's exporter: ``export``'s guarded adapter update behind the interface
``cloud.loop.pipeline.Exporter`` (``cloud`` never imports ``export``; the worker command wires
this in). Wings are imported inside the function (the CLI floor rule)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.loop.pipeline import ExportRequest


def guarded_update(req: ExportRequest) -> tuple[Path, dict[str, Any]]:
    from cloud.loop.pipeline import GuardRefused
    from export.errors import GuardFailed
    from export.update_guard import guarded_adapter_update

    try:
        return guarded_adapter_update(
            req.checkpoint_dir,
            req.out_dir,
            parent_bundle=req.parent_bundle,
            name=req.name,
            version=req.version,
            texts=req.eval_texts,
            labels=req.eval_labels,
            sign_key=req.sign_key,
        )
    except GuardFailed as exc:
        raise GuardRefused(exc.message) from exc
