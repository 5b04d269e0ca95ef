"""Demo stage 2: export the checkpoint to a signed int8 bundle (1.0.0) and an adapter-only
update (1.1.0), verify both, print parity numbers and sizes.

Outputs are reused when the bundle on disk verifies against the demo key and was exported
from the same checkpoint (``provenance.checkpoint_sha256``) with the same precision.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoglm.demo.errors import StageFailed

MODEL_NAME = "autoglm-router"
STABLE_VERSION = "1.0.0"
UPDATE_VERSION = "1.1.0"


@dataclass
class ExportResult:
    bundle: Path
    update: Path
    public_key: Path
    secret_key: Path
    precision: str
    bundle_bytes: int
    update_bytes: int
    guard: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    wall_s: float = 0.0

    @property
    def public_key_hex(self) -> str:
        return self.public_key.read_text(encoding="utf-8").strip()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Hide ONNX Runtime's repeated "consider pre-processing" advice (one per quantization trial)."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _keys(keys_dir: Path, console: Console) -> tuple[Path, Path]:
    from contracts.bundle import generate_keypair

    secret, public = keys_dir / "bundle_signing.key", keys_dir / "bundle_signing.pub"
    if secret.is_file() and public.is_file():
        console.print(f"signing key: reusing the demo key in {keys_dir}")
        return secret, public
    keys_dir.mkdir(parents=True, exist_ok=True)
    secret, public = generate_keypair(keys_dir)
    console.print(
        f"signing key: generated a demo ed25519 key pair in {keys_dir} (demo only; keep real keys offline)"
    )
    return secret, public


def _reusable(
    bundle: Path, update: Path, public: Path, ckpt_sha: str, precision: str, allow_degraded: bool
) -> bool:
    from contracts.bundle import open_bundle
    from contracts.errors import AutoGLMError

    try:
        full = open_bundle(bundle, public_key=public, verify=True)
        upd = open_bundle(update, public_key=public, verify=True, parent=full)
    except (AutoGLMError, OSError, ValueError):
        return False
    fm, um = full.manifest, upd.manifest
    guard = fm.metrics.parity.get("int8_vs_fp32", {}) if precision == "int8" else {}
    return (
        fm.provenance.checkpoint_sha256 == ckpt_sha
        and um.provenance.checkpoint_sha256 == ckpt_sha
        and fm.precision == precision
        and (fm.version, um.version) == (STABLE_VERSION, UPDATE_VERSION)
        and (allow_degraded or not guard.get("failures"))
    )


def _guard_table(guard: dict[str, Any]) -> Table:
    t = Table(title="int8 vs fp32 accuracy guard (held-out test queries)", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("limit", justify="right")
    th = guard.get("thresholds", {})

    def pct(v: Any) -> str:
        return f"{float(v):.2%}" if isinstance(v, int | float) else "-"

    t.add_row(
        "queries",
        str(guard.get("n", "-")),
        f"≥ {th.get('min_eval_size', '-')}" if "min_eval_size" in th else "",
    )
    t.add_row("route agreement", pct(guard.get("route_agreement")), f"≥ {pct(th.get('min_route_agreement'))}")
    if guard.get("accuracy") is not None:
        t.add_row(
            "accuracy int8 / fp32",
            f"{pct(guard.get('accuracy'))} / {pct(guard.get('accuracy_reference'))}",
            "",
        )
        t.add_row(
            "accuracy drop (pt)",
            f"{100 * float(guard.get('accuracy_drop', 0.0)):.2f}",
            f"≤ {100 * float(th.get('max_accuracy_drop', 0.0)):.2f}",
        )
    t.add_row("embedding cosine mean", f"{float(guard.get('cosine_mean', 0.0)):.4f}", "")
    t.add_row(
        "embedding cosine p1",
        f"{float(guard.get('cosine_p1', 0.0)):.4f}",
        f"≥ {th.get('min_cosine_p1', '-')}",
    )
    verdict = (
        "[green]passed[/]"
        if not guard.get("failures")
        else "[red]failed: " + "; ".join(guard["failures"]) + "[/]"
    )
    t.add_row("guard", verdict, "")
    return t


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def run_stage_export(
    console: Console,
    checkpoint: Path,
    out_root: Path,
    *,
    precision: str = "int8",
    allow_degraded: bool = False,
    reexport: bool = False,
) -> ExportResult:
    """Export (or reuse) the demo bundles; returns where they are and what they measured."""
    from contracts.bundle import open_bundle
    from contracts.errors import AutoGLMError
    from edge.runtime.bundle_session import smoke_test
    from export.pipeline import bundle_size, checkpoint_sha256, export_adapter_update, export_checkpoint

    console.rule(
        f"[bold]Stage 2 · export: {precision} bundle {STABLE_VERSION} + adapter-only update {UPDATE_VERSION}"
    )
    t0 = time.perf_counter()
    if not (checkpoint / "checkpoint.yaml").is_file():
        raise StageFailed("export", f"no checkpoint at {checkpoint} (run stage 1 first)")
    secret, public = _keys(out_root / "keys", console)
    bundle = out_root / "bundles" / f"{MODEL_NAME}-{STABLE_VERSION}"
    update = out_root / "bundles" / f"{MODEL_NAME}-{UPDATE_VERSION}-adapters"
    ckpt_sha = checkpoint_sha256(checkpoint)
    reused = not reexport and _reusable(bundle, update, public, ckpt_sha, precision, allow_degraded)
    try:
        if reused:
            console.print(
                f"reusing the bundles in {bundle.parent} "
                f"(same checkpoint {ckpt_sha[:12]}…, signature verified)"
            )
        else:
            for stale in (
                update,
                bundle,
            ):  # from another checkpoint (or --reexport): the exporter wants empty dirs
                if stale.exists():
                    console.print(f"replacing {stale} (exported from another checkpoint or settings)")
                    shutil.rmtree(stale)
            console.print(
                f"exporting {checkpoint} → {precision} ONNX "
                "(fusions, smoothing, int8 sensitivity search, guard) …"
            )
            with _quiet_quantizer():
                export_checkpoint(
                    checkpoint,
                    bundle,
                    precision=precision,
                    name=MODEL_NAME,
                    version=STABLE_VERSION,
                    sign_key=secret,
                    allow_degraded=allow_degraded,
                    progress=True,
                )
            console.print(
                f"exporting the adapter-only update {UPDATE_VERSION} (the encoder graph is the parent's) …"
            )
            export_adapter_update(
                checkpoint,
                update,
                parent_bundle=bundle,
                version=UPDATE_VERSION,
                sign_key=secret,
                public_key=public,
            )
        full = open_bundle(bundle, public_key=public, verify=True)
        upd = open_bundle(update, public_key=public, verify=True, parent=full)
        for set_name in full.manifest.adapter_sets:
            smoke_test(full, set_name)
    except AutoGLMError as exc:
        raise StageFailed("export", exc.message) from exc
    guard = dict(full.manifest.metrics.parity.get("int8_vs_fp32", {}))
    fp32 = full.manifest.metrics.parity.get("fp32_vs_pytorch", {})
    for set_name, rep in fp32.items():
        console.print(
            f"fp32 ONNX vs PyTorch ({set_name}): "
            f"max |Δembedding| {rep.get('embedding_max_abs_diff', 0):.1e}, "
            f"route agreement {float(rep.get('route_agreement', 0)):.2%}"
        )
    if guard:
        console.print(_guard_table(guard))
        if guard.get("failures"):
            console.print(
                "[yellow]the int8 guard failed and --allow-degraded was given: serving a degraded bundle[/]"
            )
    bundle_bytes, update_bytes = bundle_size(bundle), bundle_size(update)
    sizes = Table(
        title="bundles (ed25519-signed, verified: schema, sha256 of every file, signature, "
        "ONNX Runtime smoke run)"
    )
    for col in ("bundle", "kind", "version", "size", "files"):
        sizes.add_column(col)
    sizes.add_row(str(bundle), "full", STABLE_VERSION, _mb(bundle_bytes), str(len(full.manifest.files)))
    sizes.add_row(
        str(update), "adapter_update", UPDATE_VERSION, _mb(update_bytes), str(len(upd.manifest.files))
    )
    console.print(sizes)
    console.print(
        f"the update is {update_bytes / max(bundle_bytes, 1):.2%} of the full bundle "
        f"({_mb(update_bytes)} vs {_mb(bundle_bytes)}); it carries the same trained adapters, "
        f"{upd.manifest.adapter_sets[upd.manifest.default_adapter_set].encoding}-encoded, "
        "bound into 1.0.0's graph"
    )
    wall = time.perf_counter() - t0
    return ExportResult(
        bundle, update, public, secret, precision, bundle_bytes, update_bytes, guard, reused, wall
    )
