"""Checkpoint -> bundle: the export pipeline.

``export_checkpoint`` (full bundle) runs: load + check the checkpoint -> ONNX export of the
default adapter set with named adapter initializers -> ONNX Runtime transformer fusions ->
adapter files for every set -> fp32 parity against PyTorch for every set (bound into the one
graph) -> optionally int8 (sensitivity search + accuracy guard) or fp16 -> optionally
TensorRT engines -> manifest, file table, signature. The bundle is staged in ``OUT.partial``
and renamed into place only when every check passed.

``export_adapter_update`` writes an adapter-only bundle: new adapter files + a manifest that
names the parent bundle and reuses its graph(s) and tokenizer by sha256.

``graph_heads`` (both): a callable that trains the edge reasoner's learned heads on the staged
bundle's own encoder (the int8 graph of an int8 bundle; for an update, the parent's graph with the
new adapters) and lists them in its manifest. It runs after the manifest is written and before it
is signed, so the signature and the file table cover the heads; its metrics land in
``metrics.export["graph_heads"]``. ``export`` does not import the trainer (it lives in
``cloud.training``): the CLI and the learning loop's exporter hand it in (``autoglm.graph_heads``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.adapter_codec import AdapterEncoding, decode_tensors, encode_tensors
from contracts.bundle import open_bundle, sha256_file
from contracts.logging import get_logger
from contracts.manifest import (
    PRECISION_RUNS_ON,
    SCHEMA_VERSION,
    SEMVER_RE,
    AdapterSetEntry,
    BaseEncoder,
    GraphEntry,
    Manifest,
    Metrics,
    ParentRef,
    Provenance,
    TokenizerSpec,
    VariantRef,
    default_signature,
    variant_version,
)
from contracts.tokenizer import TextTokenizer, TokenizerSettings, tokenizer_for
from export.bundle_writer import (
    file_table,
    git_commit,
    prepare_out_dir,
    publish,
    write_adapter_file,
    write_manifest,
)
from export.errors import ExportError, GuardFailed
from export.parity import GuardThresholds, RunFn, guard_failures, parity_report, run_texts
from export.settings import ExportSettings

log = get_logger("autoglm.export.pipeline")

PRECISIONS = ("fp32", "int8", "fp16")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

# Used for fp32 parity when no evaluation set is given and cloud.data is unavailable.
SAMPLE_TEXTS = [
    "what is 17 times 23",
    "convert 5 miles to kilometres",
    "what's the weather like in Shanghai in July",
    "who manages production line 3",
    "what is the temperature of chiller CH-2 right now",
    "turn off the conveyor on line 4",
    "what did I ask you a minute ago",
    "how do I reset the pressure relief valve",
    "hello, how are you today",
    "thanks, that was helpful",
    "计算 128 除以 4",
    "把 30 摄氏度换算成华氏度",
    "北京一月份的平均气温是多少",
    "二号车间的负责人是谁",
    "三号泵现在的转速是多少",
    "打开一号线的照明",
    "我刚才问了什么",
    "更换滤芯的步骤是什么",
    "你好",
    "",
    (
        "a much longer query that goes on and on about the maintenance schedule of the packaging line "
        "and who signs it off"
    ),
]


# (staged bundle dir, parent bundle dir of an adapter update | None) -> the trainer's metrics
GraphHeads = Callable[[Path, Path | None], dict[str, Any]]


@dataclass
class _Ctx:
    progress: bool

    def step(self, msg: str) -> None:
        log.info(msg)
        if self.progress:
            print(f"[export] {msg}", flush=True)


def default_eval_set(seed: int = 0, minimum: int = 200) -> tuple[list[str], list[str]] | None:
    """The route data generator's held-out test split (``cloud.data``), topped up from val."""
    try:
        from cloud.data import default_splits
    except ImportError:
        return None
    splits = default_splits(seed)
    examples = list(splits["test"])
    if len(examples) < minimum:
        examples += list(splits["val"])
    return [e.text for e in examples], [e.route for e in examples]


def default_calibration_set(n: int, seed: int = 0) -> tuple[list[str], list[str]] | None:
    """Calibration queries + labels from the generator's validation split (disjoint from the test
    split), shuffled so a prefix covers every route."""
    try:
        from cloud.data import default_splits
    except ImportError:
        return None
    import random

    val = list(default_splits(seed)["val"])
    random.Random(seed).shuffle(val)
    return [e.text for e in val[:n]], [e.route for e in val[:n]]


def checkpoint_sha256(ckpt_dir: Path) -> str:
    from cloud.model.checkpoint import CHECKPOINT_FILE, WEIGHTS_FILE

    h = hashlib.sha256()
    for name in (CHECKPOINT_FILE, WEIGHTS_FILE):
        h.update(f"{name}:{sha256_file(ckpt_dir / name)}\n".encode())
    return h.hexdigest()


def _ort_runner(
    graph: Path, tensors: dict[str, np.ndarray] | None = None, threads: int = 0, external: bool = False
) -> RunFn:
    """A CPU session on ``graph`` with ``tensors`` bound; ``external``: the graph's adapter
    initializers are external data (bundled graphs), bound with ``add_external_initializers``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    keep = [
        ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        for arr in (tensors or {}).values()
    ]
    if external and keep:
        so.add_external_initializers(list(tensors or {}), keep)
    else:
        for name, value in zip(tensors or {}, keep, strict=True):
            so.add_initializer(name, value)
    sess = ort.InferenceSession(str(graph), sess_options=so, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _ = keep  # keep bound initializers alive with the session
        e, lg = sess.run(["embedding", "route_logits"], {"input_ids": ids, "attention_mask": mask})
        return e, lg

    return run


def _torch_runner(model: Any, set_name: str) -> RunFn:
    import torch

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(ids), torch.from_numpy(mask), set_name)
        return out.embedding.numpy(), out.route_logits.numpy()

    return run


def _validate_args(precision: str, name: str, version: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not SEMVER_RE.match(version):
        raise ExportError(f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    if not name or not set(name) <= NAME_CHARS or not name[0].isalnum():
        raise ExportError(f"bundle name {name!r}: use letters, digits, '.', '_' and '-'")


def _load(checkpoint_dir: Path) -> tuple[Any, Any]:
    from cloud.model.checkpoint import CheckpointError, load_checkpoint

    try:
        model, meta = load_checkpoint(checkpoint_dir)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(f"{checkpoint_dir}: cannot load checkpoint: {exc}") from exc
    return model, meta


def _tokenizer(base_path: Path, settings: TokenizerSettings) -> tuple[Path, TextTokenizer, TokenizerSpec]:
    tok_file = base_path / "tokenizer.json"
    if not tok_file.is_file():
        raise ExportError(f"base encoder {base_path} has no tokenizer.json (the edge needs it)")
    spec = TokenizerSpec(
        max_length=settings.max_length,
        lowercase=settings.lowercase,
        oov_char_fallback=settings.oov_char_fallback,
    )
    return tok_file, TextTokenizer(tok_file, settings), spec


def export_checkpoint(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    precision: str = "fp32",
    name: str = "autoglm-router",
    version: str = "0.1.0",
    sign_key: Path | None = None,
    eval_texts: list[str] | None = None,
    eval_labels: list[str] | None = None,
    allow_degraded: bool = False,
    progress: bool = False,
    tensorrt: bool = False,
    settings: ExportSettings | None = None,
    variant_of: str | None = None,
    graph_heads: GraphHeads | None = None,
) -> Path:
    """Export a checkpoint to a verified bundle directory; returns ``out_dir``.

    ``variant_of``: make the bundle a precision variant of that version (issue 17): its version
    becomes ``{variant_of}+{precision}`` and its manifest says so (``variant``: ``of``, ``runs_on``);
    the registry accepts it only beside a version exported from the same checkpoint."""
    from export.onnx_graph import check_adapter_initializers, export_adapter_set_graph
    from export.optimize import nodes_consuming, optimize_fp32

    cfg = settings or ExportSettings()
    ctx = _Ctx(progress)
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    if variant_of is not None:
        if "+" in variant_of:
            raise ExportError(f"variant_of {variant_of!r} must be a version without build metadata (+...)")
        version = variant_version(variant_of, precision)
    _validate_args(precision, name, version)
    if eval_labels is not None and (eval_texts is None or len(eval_labels) != len(eval_texts)):
        raise ExportError("eval_labels needs eval_texts of the same length")
    if sign_key is not None and not Path(sign_key).is_file():
        raise ExportError(f"signing key {sign_key} not found")
    ctx.step(f"loading checkpoint {checkpoint_dir}")
    model, meta = _load(checkpoint_dir)
    base_path = Path(meta.base_path)
    set_names = list(meta.adapter_sets)
    default_set = set_names[0]
    mcfg = model.config
    tok_file, tokenizer, tok_spec = _tokenizer(base_path, meta.tokenizer_settings())

    staging = prepare_out_dir(out_dir)
    work = Path(tempfile.mkdtemp(prefix="autoglm-export-"))
    try:
        ctx.step(f"exporting ONNX (adapter set {default_set!r}, opset {cfg.onnx_opset})")
        raw = work / "encoder.raw.onnx"
        layout = export_adapter_set_graph(model, default_set, raw, cfg.onnx_opset)
        ctx.step("optimising fp32 graph (onnxruntime transformer fusions)")
        fp32 = work / "encoder.fp32.onnx"
        fusions = optimize_fp32(raw, fp32, num_heads=mcfg.num_attention_heads, hidden_size=mcfg.hidden_size)
        set_tensors = {s: layout.graph_tensors(model, s) for s in set_names}
        shapes = {k: tuple(v.shape) for k, v in set_tensors[default_set].items()}
        for s, tensors in set_tensors.items():
            if {k: tuple(v.shape) for k, v in tensors.items()} != shapes:
                raise ExportError(
                    f"adapter set {s!r} does not fit the graph of {default_set!r} "
                    "(different bottleneck or number of routes); export it from its own checkpoint"
                )
        check_adapter_initializers(fp32, shapes, "fp32 optimiser")

        adapter_entries: dict[str, AdapterSetEntry] = {}
        for s in set_names:
            rel = f"adapters/{s}.safetensors"
            table = write_adapter_file(staging / rel, set_tensors[s], s, layout.transposed)
            info = meta.adapter_sets[s]
            adapter_entries[s] = AdapterSetEntry(
                file=rel,
                sha256=sha256_file(staging / rel),
                routes=list(info.routes),
                temperature=float(info.temperature),
                bottleneck=int(info.bottleneck),
                tensors=table,
            )
        shutil.copy2(tok_file, staging / "tokenizer.json")

        ctx.step("fp32 parity vs PyTorch")
        if eval_texts is None:
            ev = default_eval_set(minimum=cfg.guard_min_eval_size)
            texts, labels = (ev[0], ev[1]) if ev else (list(SAMPLE_TEXTS), None)
        else:
            texts, labels = list(eval_texts), (list(eval_labels) if eval_labels is not None else None)
        parity_texts = (texts[:48] + SAMPLE_TEXTS)[:96]
        parity: dict[str, Any] = {"fp32_vs_pytorch": {}}
        for s in set_names:
            ref = run_texts(_torch_runner(model, s), tokenizer, parity_texts)
            got = run_texts(_ort_runner(fp32, set_tensors[s]), tokenizer, parity_texts)
            rep = parity_report(ref, got)
            parity["fp32_vs_pytorch"][s] = rep
            if rep["embedding_max_abs_diff"] > cfg.parity_max_abs_diff or rep["route_agreement"] < 1.0:
                raise ExportError(
                    f"fp32 ONNX graph differs from PyTorch for adapter set {s!r}: max abs embedding diff "
                    f"{rep['embedding_max_abs_diff']:.2e} (limit {cfg.parity_max_abs_diff:.0e}), "
                    f"route agreement {rep['route_agreement']:.4f}"
                )

        adapter_names = set(shapes)
        adapter_nodes = nodes_consuming(fp32, adapter_names)
        export_info: dict[str, Any] = {"fusions": fusions, "adapter_float_nodes": len(adapter_nodes)}
        if model.route_gates:  # the graph routes with the gate (AutoGLMModel.forward)
            export_info["route_gate"] = {
                s: {
                    "route": g.route,
                    "kind": g.kind,
                    "feature": g.feature,
                    "threshold": g.threshold,
                    **({"confidence_weight": g.confidence_weight} if g.confidence_weight else {}),
                }
                for s, g in model.route_gates.items()
            }
        graph_name = f"encoder.{precision}.onnx"
        graph_path = staging / graph_name
        if precision == "fp32":
            shutil.copy2(fp32, graph_path)
        elif precision == "int8":
            ctx.step("int8: sensitivity search and accuracy guard")
            int8_info, guard = _int8(
                fp32,
                graph_path,
                adapter_nodes,
                tokenizer,
                texts,
                labels,
                list(meta.adapter_sets[default_set].routes),
                cfg,
            )
            check_adapter_initializers(graph_path, shapes, "int8 quantizer")
            export_info["int8"] = int8_info
            parity["int8_vs_fp32"] = guard
            if guard["failures"] and not allow_degraded:
                guard = {**guard, "search": int8_info}
                raise GuardFailed(
                    "int8 accuracy guard failed: "
                    + "; ".join(guard["failures"])
                    + " (use --allow-degraded to keep it)",
                    guard,
                )
        else:
            ctx.step("fp16 conversion (adapters and heads stay float32)")
            from export.optimize import convert_fp16

            # From the fused graph: fused attention / layer norm kernels in fp16 on CUDA (the unfused
            # graph was slower in fp16 than the fused one in fp32). TensorRT engines are built from the
            # unfused graph separately (export.tensorrt_build); the TensorRT EP hands the contrib ops to CUDA.
            export_info["fp16"] = convert_fp16(fp32, graph_path, adapter_nodes)
            export_info["fp16"]["source"] = "fused fp32 graph (ORT transformer fusions), keep_io_types"
            check_adapter_initializers(graph_path, shapes, "fp16 conversion")
            parity["fp16_vs_fp32"] = _fp16_parity(fp32, graph_path, tokenizer, parity_texts)

        # The adapter initializers become external data pointing into the default set's adapter file,
        # so the edge binds any set with add_external_initializers, which every provider honours.
        from export.onnx_graph import externalize_adapters

        export_info["adapter_binding"] = {
            "mode": "external",
            "initializers": externalize_adapters(
                graph_path, staging / adapter_entries[default_set].file, adapter_names
            ),
        }
        check_adapter_initializers(graph_path, shapes, "externalising adapter initializers")

        engines = []
        if tensorrt:
            from export.tensorrt_build import TensorRTUnavailable, build_engines

            ctx.step("TensorRT engines")
            try:
                engines = build_engines(
                    raw,
                    staging,
                    precisions=("fp16",) if precision != "int8" else ("fp16", "int8"),
                    max_batch=cfg.tensorrt_max_batch,
                    max_seq=tok_spec.max_length,
                    workspace_mb=cfg.tensorrt_workspace_mb,
                    calib=(tokenizer, texts[:256]),
                    keep_float=nodes_consuming(raw, adapter_names),
                )
            except TensorRTUnavailable as exc:
                export_info["tensorrt_skipped"] = str(exc)
                ctx.step(f"TensorRT skipped: {exc}")

        sig = default_signature(mcfg.hidden_size, len(meta.adapter_sets[default_set].routes))
        files = file_table(staging)
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            kind="full",
            name=name,
            version=version,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            base_encoder=BaseEncoder(
                id=meta.base_id or base_path.name,
                sha256=meta.base_sha256,
                hidden_size=mcfg.hidden_size,
                num_layers=mcfg.num_hidden_layers,
                num_heads=mcfg.num_attention_heads,
            ),
            routes=list(meta.adapter_sets[default_set].routes),
            default_adapter_set=default_set,
            adapter_sets=adapter_entries,
            graphs={
                "encoder": GraphEntry(
                    file=graph_name,
                    sha256=files[graph_name].sha256,
                    precision=precision,  # type: ignore[arg-type]
                    signature=sig,
                    adapter_binding="external",
                )
            },
            opset=cfg.onnx_opset,
            precision=precision,  # type: ignore[arg-type]
            files=files,
            tokenizer=tok_spec,
            metrics=Metrics(training=dict(meta.metrics), parity=parity, export=export_info),
            provenance=Provenance(
                checkpoint_sha256=checkpoint_sha256(checkpoint_dir),
                git_commit=git_commit(),
                exporter_version=_version(),
                training=dict(meta.training),
            ),
            tensorrt=engines,
            variant=(
                VariantRef(of=variant_of, runs_on=list(PRECISION_RUNS_ON[precision]))  # type: ignore[arg-type]
                if variant_of is not None
                else None
            ),
        )
        if graph_heads is not None:
            manifest = _attach_graph_heads(ctx, staging, manifest, graph_heads, None)
        write_manifest(staging, manifest, Path(sign_key) if sign_key else None)
        ctx.step("verifying the written bundle")
        open_bundle(staging, _public_of(sign_key) if sign_key else None, verify=True)
        published = publish(staging, out_dir)
        ctx.step(f"bundle written to {published}")
        return published
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _attach_graph_heads(
    ctx: _Ctx, staging: Path, manifest: Manifest, graph_heads: GraphHeads, parent: Path | None
) -> Manifest:
    """Write the unsigned manifest, let ``graph_heads`` train and attach the heads, and return the
    manifest it left (head files and graph roles added) with the metrics recorded."""
    from contracts.manifest import MANIFEST_FILE

    write_manifest(staging, manifest, None)
    ctx.step("training the graph heads (path scorer + scope gate) on the exported encoder")
    try:
        metrics = graph_heads(staging, parent)
    except Exception as exc:  # the trainer's own error, said in one line
        raise ExportError(f"graph heads: training failed: {type(exc).__name__}: {exc}") from exc
    attached = Manifest.from_yaml((staging / MANIFEST_FILE).read_bytes())
    ctx.step(f"graph heads attached ({', '.join(metrics.get('roles', []))}) in {metrics.get('seconds')} s")
    export_info = {**attached.metrics.export, "graph_heads": metrics}
    return attached.model_copy(
        update={"metrics": attached.metrics.model_copy(update={"export": export_info})}
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("open-autoglm-edge")
    except Exception:
        return ""


def _public_of(sign_key: Path) -> bytes:
    from contracts.bundle import load_signing_key

    return bytes(load_signing_key(Path(sign_key)).verify_key).hex().encode()


def _int8(
    fp32: Path,
    dst: Path,
    adapter_nodes: list[str],
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    labels: Sequence[str] | None,
    routes: list[str],
    cfg: ExportSettings,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from export.quantize import quantizable_nodes, search_int8
    from export.smooth import smooth_graph

    # Calibration / sensitivity queries: the generator's validation split (never the guard's set).
    cal = default_calibration_set(cfg.int8_calibration_samples)
    calib, calib_labels = cal if cal else (list(texts[: cfg.int8_calibration_samples]), None)
    sens_texts = calib[: cfg.int8_sensitivity_samples]
    ref_calib = run_texts(_ort_runner(fp32), tokenizer, calib)
    ref_sens = (ref_calib[0][: len(sens_texts)], ref_calib[1][: len(sens_texts)])
    source = fp32
    smoothing: dict[str, Any] = {"alpha": 0.0}
    if cfg.int8_smooth_alpha > 0:
        feeds = []
        for i in range(0, len(calib), 32):
            ids, mask = tokenizer(calib[i : i + 32])
            feeds.append({"input_ids": ids, "attention_mask": mask})
        source = dst.with_name("encoder.smoothed.onnx")
        targets = [n for n in quantizable_nodes(fp32) if n not in set(adapter_nodes)]
        smoothing = smooth_graph(fp32, source, nodes=targets, calib_feeds=feeds, alpha=cfg.int8_smooth_alpha)

    def score(path: Path, full: bool) -> dict[str, float]:
        if not full:
            rep = parity_report(ref_sens, run_texts(_ort_runner(path), tokenizer, sens_texts))
            return {"cosine_mean": rep["cosine_mean"]}
        rep = parity_report(
            ref_calib, run_texts(_ort_runner(path), tokenizer, calib), routes=routes, labels=calib_labels
        )
        keys = ("cosine_mean", "cosine_p1", "route_agreement", "accuracy_drop")
        return {k: rep[k] for k in keys if k in rep}

    def goal(n: dict[str, float]) -> bool:
        """The cosine goal, and the guard's conditions with a safety margin on the calibration set."""
        return (
            n["cosine_mean"] >= cfg.int8_target_mean_cosine
            and n["cosine_p1"] >= cfg.int8_target_cosine_p1
            and n["route_agreement"] >= min(1.0, cfg.guard_min_route_agreement + cfg.int8_agreement_margin)
            and n.get("accuracy_drop", 0.0) <= cfg.guard_max_accuracy_drop / 2
        )

    try:
        result = search_int8(
            source,
            dst,
            always_float=adapter_nodes,
            score=score,
            goal=goal,
            max_float_nodes=cfg.int8_max_float_nodes,
            embeddings=cfg.int8_quantize_embeddings,
            rank_per_cost=cfg.int8_rank_per_cost,
        )
    finally:
        if source != fp32:
            source.unlink(missing_ok=True)
    ref = run_texts(_ort_runner(fp32), tokenizer, texts)
    got = run_texts(_ort_runner(dst), tokenizer, texts)
    report = parity_report(ref, got, routes=routes, labels=labels)
    thresholds = GuardThresholds(
        cfg.guard_min_route_agreement,
        cfg.guard_max_accuracy_drop,
        cfg.guard_min_cosine_p1,
        cfg.guard_min_eval_size,
    )
    failures = guard_failures(report, thresholds)
    guard = {
        **report,
        "thresholds": {
            "min_route_agreement": thresholds.min_route_agreement,
            "max_accuracy_drop": thresholds.max_accuracy_drop,
            "min_cosine_p1": thresholds.min_cosine_p1,
            "min_eval_size": thresholds.min_eval_size,
        },
        "passed": not failures,
        "failures": failures,
        "goal_met": report["cosine_mean"] >= cfg.int8_target_mean_cosine
        and report["cosine_p1"] >= cfg.int8_target_cosine_p1,
    }
    return {
        **result.summary(),
        "smoothing": smoothing,
        "calibration_queries": len(calib),
        "calibration_split": "val" if cal else "eval",
    }, guard


def _fp16_parity(fp32: Path, fp16: Path, tokenizer: TextTokenizer, texts: list[str]) -> dict[str, Any]:
    try:
        ref = run_texts(_ort_runner(fp32), tokenizer, texts)
        got = run_texts(_ort_runner(fp16), tokenizer, texts)
    except Exception as exc:  # CPU kernels for some fp16 ops may be missing
        return {"measured": False, "reason": f"fp16 graph does not run on the CPU provider here: {exc}"[:300]}
    return {"measured": True, "provider": "CPUExecutionProvider", **parity_report(ref, got)}


# -- adapter-only updates -------------------------------------------------------------------------


def export_variants(
    checkpoint_dir: Path, out_root: Path, precisions: Sequence[str], *, version: str = "0.1.0", **kwargs: Any
) -> dict[str, Path]:
    """Export one checkpoint in several precisions (issue 17 item 7): the first precision is the
    version itself (``OUT/<p>/``, version ``version``), each other one its variant
    (``OUT/<p>/``, version ``version+<p>``, ``manifest.variant.of == version``). Register the first
    before the others. ``kwargs`` go to every :func:`export_checkpoint` call (the int8 guard gates
    the int8 variant alone)."""
    wanted = list(dict.fromkeys(precisions))
    if not wanted:
        raise ExportError("no precision to export")
    for p in wanted:
        if p not in PRECISIONS:
            raise ExportError(f"precision {p!r} is not one of {', '.join(PRECISIONS)}")
    out: dict[str, Path] = {}
    for i, p in enumerate(wanted):
        out[p] = export_checkpoint(
            checkpoint_dir,
            Path(out_root) / p,
            precision=p,
            version=version,
            variant_of=None if i == 0 else version,
            **kwargs,
        )
    return out


def export_adapter_update(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    parent_bundle: Path,
    version: str,
    name: str | None = None,
    sign_key: Path | None = None,
    public_key: Path | None = None,
    adapter_sets: Sequence[str] | None = None,
    encoding: AdapterEncoding | None = None,
    progress: bool = False,
    graph_heads: GraphHeads | None = None,
) -> Path:
    """An adapter-only bundle: the checkpoint's adapter sets bound into the parent's graph.

    The checkpoint must be trained on the same base encoder (sha256) and fit the parent's
    adapter tensor table. Parity: the parent graph with the new adapters bound (decoded exactly as
    the edge decodes them) vs PyTorch. ``encoding``: how the adapter files store the tensors
    (default: int8 for an int8 parent — about a quarter of the size — else float32).
    """
    ctx = _Ctx(progress)
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    parent = open_bundle(parent_bundle, public_key, verify=True)
    pm = parent.manifest
    if pm.kind != "full":
        raise ExportError(f"parent bundle {parent_bundle} is itself an adapter update; use its full parent")
    _validate_args(pm.precision, name or pm.name, version)
    model, meta = _load(checkpoint_dir)
    if model.route_gates:
        raise ExportError(
            f"{checkpoint_dir}: route {next(iter(model.route_gates.values())).route!r} is gated; its gate "
            "lives in the graph, not in the adapter tensors: export a full bundle, not an adapter update"
        )
    if pm.metrics.export.get("route_gate"):
        raise ExportError(
            f"parent bundle {parent_bundle} routes with a gate calibrated on its own adapters; new adapters "
            "would move the embedding it reads: export a full bundle instead of an adapter update"
        )
    if meta.base_sha256 != pm.base_encoder.sha256:
        raise ExportError(
            f"checkpoint was trained on base {meta.base_sha256[:12]}…, "
            f"parent bundle carries {pm.base_encoder.sha256[:12]}…"
        )
    set_names = list(adapter_sets or meta.adapter_sets)
    enc: AdapterEncoding = encoding or ("int8" if pm.precision == "int8" else "float32")
    layout_entry = pm.adapter_sets[pm.default_adapter_set]
    staging = prepare_out_dir(out_dir)
    try:
        from export.onnx_graph import AdapterLayout

        layout = AdapterLayout({k: t.transposed for k, t in layout_entry.tensors.items()})
        entries: dict[str, AdapterSetEntry] = {}
        tensors_by_set = {}
        for s in set_names:
            if s not in meta.adapter_sets:
                raise ExportError(f"checkpoint has no adapter set {s!r} (has {list(meta.adapter_sets)})")
            tensors = layout.graph_tensors(model, s)
            for k, v in tensors.items():
                if list(v.shape) != layout_entry.tensors[k].shape:
                    raise ExportError(
                        f"adapter set {s!r}: tensor {k!r} {list(v.shape)} does not fit the parent graph"
                    )
            rel = f"adapters/{s}.safetensors"
            table = write_adapter_file(staging / rel, tensors, s, layout.transposed, enc)
            info = meta.adapter_sets[s]
            entries[s] = AdapterSetEntry(
                file=rel,
                sha256=sha256_file(staging / rel),
                routes=list(info.routes),
                temperature=float(info.temperature),
                bottleneck=int(info.bottleneck),
                encoding=enc,
                tensors=table,
            )
            tensors_by_set[s] = decode_tensors(encode_tensors(tensors, enc), enc, sorted(tensors))
        ctx.step("parity: parent graph + new adapters vs PyTorch")
        tok = tokenizer_for(parent.tokenizer_file(), pm.tokenizer)
        parity = {}
        graph_file = parent.graph_file("encoder")
        for s in set_names:
            ref = run_texts(_torch_runner(model, s), tok, SAMPLE_TEXTS)
            external = pm.graphs["encoder"].adapter_binding == "external"
            got = run_texts(_ort_runner(graph_file, tensors_by_set[s], external=external), tok, SAMPLE_TEXTS)
            parity[s] = parity_report(ref, got)
        key = f"{pm.precision}_graph_bound_vs_pytorch"
        files = file_table(staging)
        graphs = {role: g.model_copy(update={"from_parent": True}) for role, g in pm.graphs.items()}
        default = set_names[0]
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            kind="adapter_update",
            name=name or pm.name,
            version=version,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            base_encoder=pm.base_encoder,
            routes=list(entries[default].routes),
            default_adapter_set=default,
            adapter_sets=entries,
            graphs=graphs,
            opset=pm.opset,
            precision=pm.precision,
            files=files,
            tokenizer=pm.tokenizer.model_copy(update={"from_parent": True}),
            metrics=Metrics(training=dict(meta.metrics), parity={key: parity}),
            provenance=Provenance(
                checkpoint_sha256=checkpoint_sha256(checkpoint_dir),
                git_commit=git_commit(),
                exporter_version=_version(),
                training=dict(meta.training),
            ),
            parent=ParentRef(name=pm.name, version=pm.version, manifest_sha256=parent.manifest_sha256),
        )
        if graph_heads is not None:  # heads of its own replace the parent's (trained on other embeddings)
            manifest = _attach_graph_heads(ctx, staging, manifest, graph_heads, Path(parent_bundle))
        write_manifest(staging, manifest, Path(sign_key) if sign_key else None)
        open_bundle(staging, _public_of(sign_key) if sign_key else None, verify=True, parent=parent)
        return publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def bundle_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
