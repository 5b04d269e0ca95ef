"""The accuracy guard for adapter-only updates (the learning loop's exports).

``export_adapter_update`` checks parity on a few sample texts; a loop version must also meet the
int8 guard that a full export meets (``export.parity.guard_failures`` with the
``ExportSettings.guard_*`` thresholds): the parent's graph (int8 for an int8 parent) with the new
adapters bound exactly as the edge binds them, against the fp32 PyTorch checkpoint, on the frozen
evaluation set. :func:`guarded_adapter_update` exports and guards in one call; on failure the
bundle directory is removed and :class:`export.errors.GuardFailed` carries the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file

from contracts.adapter_codec import decode_tensors
from contracts.bundle import open_bundle
from contracts.tokenizer import tokenizer_for
from export.errors import GuardFailed
from export.parity import GuardThresholds, guard_failures, parity_report, run_texts
from export.settings import ExportSettings

if TYPE_CHECKING:
    from export.pipeline import GraphHeads


def guard_report(
    bundle_dir: Path, parent_dir: Path, checkpoint_dir: Path, texts: list[str], labels: list[str]
) -> dict[str, Any]:
    """Parity + accuracy of the bundle's default adapter set (ONNX Runtime) vs the checkpoint (PyTorch)."""
    from export.pipeline import _load, _ort_runner, _torch_runner

    parent = open_bundle(parent_dir, verify=True)
    bundle = open_bundle(bundle_dir, verify=True, parent=parent)
    man = bundle.manifest
    entry = man.adapter_sets[man.default_adapter_set]
    stored = load_file(str(bundle.adapter_file(man.default_adapter_set)))
    tensors = decode_tensors(stored, entry.encoding, sorted(entry.tensors))
    external = parent.manifest.graphs["encoder"].adapter_binding == "external"
    tok = tokenizer_for(parent.tokenizer_file(), parent.manifest.tokenizer)
    model, _ = _load(checkpoint_dir)
    ref = run_texts(_torch_runner(model, man.default_adapter_set), tok, texts)
    got = run_texts(_ort_runner(parent.graph_file("encoder"), tensors, external=external), tok, texts)
    return parity_report(ref, got, routes=list(entry.routes), labels=labels)


def guarded_adapter_update(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    parent_bundle: Path,
    name: str,
    version: str,
    texts: list[str],
    labels: list[str],
    sign_key: Path | None = None,
    settings: ExportSettings | None = None,
    graph_heads: GraphHeads | None = None,
) -> tuple[Path, dict[str, Any]]:
    from export.pipeline import export_adapter_update

    cfg = settings or ExportSettings()
    bundle = export_adapter_update(
        checkpoint_dir,
        out_dir,
        parent_bundle=parent_bundle,
        name=name,
        version=version,
        sign_key=sign_key,
        graph_heads=graph_heads,
    )
    report = guard_report(bundle, parent_bundle, checkpoint_dir, texts, labels)
    thresholds = GuardThresholds(
        cfg.guard_min_route_agreement,
        cfg.guard_max_accuracy_drop,
        cfg.guard_min_cosine_p1,
        cfg.guard_min_eval_size,
    )
    fails = guard_failures(report, thresholds)
    report = {
        **report,
        "passed": not fails,
        "failures": fails,
        "precision": open_bundle(parent_bundle).manifest.precision,
    }
    if fails:
        shutil.rmtree(bundle, ignore_errors=True)
        raise GuardFailed("export guard: " + "; ".join(fails), report)
    return bundle, {k: (float(v) if isinstance(v, np.floating) else v) for k, v in report.items()}
