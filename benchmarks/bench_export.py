"""Export benchmark: PyTorch eager vs. ONNX Runtime fp32 vs. int8, side by side in one run.

Exports one checkpoint to an fp32 and an int8 bundle (the int8 one with the sensitivity search
and the guard; kept even if the guard fails so the numbers print), then times the three engines on
the same real queries (route generator test split, padding per batch) at batch 1, 8 and 32 —
rounds alternate between engines so load from other processes hits all alike. Also prints file
sizes, the size of an adapter-only update relative to each full bundle, and the int8 parity
numbers against the goal (mean cosine >= 0.995, p1 >= 0.98, >= 2x fp32 at batch 32).

    python benchmarks/bench_export.py [--checkpoint DIR] [--tiny] [--threads 1] [--rounds 3]
                                      [--seconds 1.5] [--json-out FILE] [--options] [--no-torch]

``--gated-checkpoint DIR`` adds the int8 bundle of a checkpoint grown by a gated route
(``autoglm add-route … --method gate``; a ``cat`` / ``base`` gate runs the encoder a second time
inside the graph) as one more engine, timed in the same rounds; its guard and its p50 relative to
the plain int8 bundle are printed and recorded (headline: the guard must pass).

``--options`` adds int8 variants built from the same fp32 graph, timed in the same rounds and
scored on the same test queries (the speed-vs-accuracy table of docs/arch/bundle.md): dynamic
int8 with every node quantized (smoothed, no search) and static QDQ (u8s8, per-channel,
MatMul only, calibrated on the validation split). ``--no-torch`` drops the PyTorch row (faster).

Without ``--checkpoint`` it uses ``.autoglm/demo/checkpoint`` when present, else all-MiniLM-L6-v2
with random adapters (``--tiny``: a tiny random encoder, for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from autoglm.bench.records import HeadlineRow, write_record
from cloud.data import default_splits
from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import default_base_path, make_tiny_base
from cloud.model.checkpoint import load_checkpoint, save_checkpoint
from contracts.bundle import open_bundle
from contracts.routes import DEFAULT_ROUTES
from edge.runtime.bundle_session import bundle_tokenizer
from export.pipeline import bundle_size, export_adapter_update, export_checkpoint

BATCHES = (1, 8, 32)
GATED = "ort int8 gated"  # --gated-checkpoint


def random_checkpoint(root: Path, tiny: bool) -> Path:
    base = make_tiny_base(root / "base") if tiny else default_base_path()
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.adapter_set("default").parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return save_checkpoint(model, root / "ckpt", base_path=base)


def ort_runner(graph: Path, threads: int) -> Callable[[np.ndarray, np.ndarray], Any]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(graph), sess_options=so, providers=["CPUExecutionProvider"])
    return lambda ids, mask: sess.run(None, {"input_ids": ids, "attention_mask": mask})


def torch_runner(ckpt: Path) -> Callable[[np.ndarray, np.ndarray], Any]:
    model, _ = load_checkpoint(ckpt)
    model.eval()

    def run(ids: np.ndarray, mask: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(ids), torch.from_numpy(mask))

    return run


def measure(
    run: Callable[[np.ndarray, np.ndarray], Any], batches: list[tuple[np.ndarray, np.ndarray]], seconds: float
) -> list[float]:
    run(*batches[0])
    times = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or len(times) < 3:
        ids, mask = batches[i % len(batches)]
        t = time.perf_counter()
        run(ids, mask)
        times.append(time.perf_counter() - t)
        i += 1
    return times


def int8_options(fp32: Path, b32: Any, tok: Any, work: Path) -> dict[str, Path]:
    """Other int8 recipes from the same fp32 graph (same smoothing and calibration split as the
    exporter), for the speed-vs-accuracy table."""
    from export.optimize import nodes_consuming
    from export.pipeline import default_calibration_set
    from export.quantize import quantizable_nodes, quantize_int8, quantize_static_qdq
    from export.settings import ExportSettings
    from export.smooth import smooth_graph

    cfg = ExportSettings()
    graph = fp32 / b32.manifest.graphs["encoder"].file
    keep = nodes_consuming(graph, set(b32.manifest.adapter_sets[b32.manifest.default_adapter_set].tensors))
    cal = default_calibration_set(cfg.int8_calibration_samples)
    calib = cal[0] if cal else []
    feeds = []
    for i in range(0, len(calib), 32):
        ids, mask = tok(calib[i : i + 32])
        feeds.append({"input_ids": ids, "attention_mask": mask})
    smoothed = work / "options-smoothed.onnx"
    smooth_graph(
        graph,
        smoothed,
        nodes=[n for n in quantizable_nodes(graph) if n not in keep],
        calib_feeds=feeds,
        alpha=cfg.int8_smooth_alpha,
    )
    out = {
        "int8 dynamic, all nodes (no search)": work / "options-dynamic-all.onnx",
        "int8 static QDQ u8s8, MatMul": work / "options-qdq.onnx",
    }
    quantize_int8(
        smoothed,
        out["int8 dynamic, all nodes (no search)"],
        keep_float=keep,
        embeddings=cfg.int8_quantize_embeddings,
    )
    quantize_static_qdq(smoothed, out["int8 static QDQ u8s8, MatMul"], keep_float=keep, calib_feeds=feeds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="same for every engine (2-core shared machine: 1 avoids thread contention)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5, help="per engine, batch size and round")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument(
        "--options", action="store_true", help="also time/score int8 variants (speed vs accuracy table)"
    )
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager row")
    ap.add_argument(
        "--gated-checkpoint", type=Path, help="a checkpoint grown by a gated route (autoglm add-route)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    ckpt = args.checkpoint
    demo = Path(os.environ.get("AUTOGLM_DATA_DIR", ".autoglm")) / "demo" / "checkpoint"
    if ckpt is None and not args.tiny and (demo / "checkpoint.yaml").is_file():
        ckpt = demo
    source = (
        str(ckpt) if ckpt else ("tiny random encoder" if args.tiny else "all-MiniLM-L6-v2 + random adapters")
    )
    if ckpt is None:
        ckpt = random_checkpoint(work, args.tiny)
    test = default_splits(0)["test"]
    texts, labels = [e.text for e in test], [e.route for e in test]

    t = time.perf_counter()
    fp32 = export_checkpoint(ckpt, work / "fp32", precision="fp32")
    t_fp32 = time.perf_counter() - t
    t = time.perf_counter()
    int8 = export_checkpoint(
        ckpt, work / "int8", precision="int8", eval_texts=texts, eval_labels=labels, allow_degraded=True
    )
    t_int8 = time.perf_counter() - t
    gated = None
    t_gated = 0.0
    if args.gated_checkpoint is not None:
        t = time.perf_counter()
        gated = export_checkpoint(
            args.gated_checkpoint,
            work / "int8-gated",
            precision="int8",
            eval_texts=texts,
            eval_labels=labels,
            allow_degraded=True,
        )
        t_gated = time.perf_counter() - t
    upd32 = export_adapter_update(ckpt, work / "upd32", parent_bundle=fp32, version="0.1.1")
    upd8 = export_adapter_update(ckpt, work / "upd8", parent_bundle=int8, version="0.1.1")

    b32, b8 = open_bundle(fp32), open_bundle(int8)
    tok = bundle_tokenizer(b32)
    rng = np.random.default_rng(0)
    engines = {
        **({} if args.no_torch else {"pytorch eager": torch_runner(ckpt)}),
        "ort fp32": ort_runner(fp32 / b32.manifest.graphs["encoder"].file, args.threads),
        "ort int8": ort_runner(int8 / b8.manifest.graphs["encoder"].file, args.threads),
    }
    bg = open_bundle(gated) if gated is not None else None
    if bg is not None:
        engines[GATED] = ort_runner(bg.root / bg.manifest.graphs["encoder"].file, args.threads)
    option_graphs = int8_options(fp32, b32, tok, work) if args.options else {}
    for name, graph in option_graphs.items():
        engines[name] = ort_runner(graph, args.threads)
    accuracy = {}
    if option_graphs:
        from export.parity import parity_report, run_texts

        routes = list(b32.manifest.routes)
        ref = run_texts(engines["ort fp32"], tok, texts)
        for name in ["ort int8", *option_graphs]:
            rep = parity_report(ref, run_texts(engines[name], tok, texts), routes=routes, labels=labels)
            accuracy[name] = {
                k: rep[k]
                for k in (
                    "n",
                    "cosine_mean",
                    "cosine_p1",
                    "route_agreement",
                    "accuracy",
                    "accuracy_reference",
                    "accuracy_drop",
                )
                if k in rep
            }
    inputs = {}
    for bs in BATCHES:
        picks = [rng.choice(len(texts), bs, replace=False) for _ in range(8)]
        inputs[bs] = [tok([texts[i] for i in p]) for p in picks]
    samples: dict[tuple[str, int], list[float]] = {(e, b): [] for e in engines for b in BATCHES}
    # per round: each engine's p50 / fp32's p50 of the same round -> the spread of the ratio over rounds
    round_speedups: dict[str, dict[int, list[float]]] = {e: {b: [] for b in BATCHES} for e in engines}
    for _ in range(args.rounds):
        for bs in BATCHES:
            this_round = {}
            for name, run in engines.items():
                ts = measure(run, inputs[bs], args.seconds)
                samples[(name, bs)] += ts
                this_round[name] = statistics.median(ts)
            for name, p50 in this_round.items():
                round_speedups[name][bs].append(round(this_round["ort fp32"] / p50, 3))

    rows = []
    for bs in BATCHES:
        base_p50 = statistics.median(samples[("ort fp32", bs)])
        for name in engines:
            ts = samples[(name, bs)]
            p50 = statistics.median(ts)
            rows.append(
                {
                    "engine": name,
                    "batch": bs,
                    "p50_ms": round(p50 * 1000, 2),
                    "p90_ms": round(float(np.percentile(ts, 90)) * 1000, 2),
                    "seq_per_s": round(bs / p50, 1),
                    "speedup_vs_ort_fp32": round(base_p50 / p50, 2),
                    "speedup_rounds": round_speedups[name][bs],
                }
            )
    guard = b8.manifest.metrics.parity["int8_vs_fp32"]
    speed32 = next(r["speedup_vs_ort_fp32"] for r in rows if r["engine"] == "ort int8" and r["batch"] == 32)
    spread32 = round_speedups["ort int8"][32]
    sizes = {
        "fp32_bundle_mb": round(bundle_size(fp32) / 1e6, 2),
        "int8_bundle_mb": round(bundle_size(int8) / 1e6, 2),
        "fp32_graph_mb": round((fp32 / b32.manifest.graphs["encoder"].file).stat().st_size / 1e6, 2),
        "int8_graph_mb": round((int8 / b8.manifest.graphs["encoder"].file).stat().st_size / 1e6, 2),
        "adapter_file_kb": round((fp32 / b32.manifest.adapter_sets["default"].file).stat().st_size / 1e3, 1),
        "update_fp32_kb": round(bundle_size(upd32) / 1e3, 1),
        "update_int8_kb": round(bundle_size(upd8) / 1e3, 1),
        "update_fp32_share": round(bundle_size(upd32) / bundle_size(fp32), 4),
        "update_int8_share": round(bundle_size(upd8) / bundle_size(int8), 4),
    }

    print(f"\nexport benchmark — {source}; {args.threads} threads; shared machine, numbers are noisy")
    print(f"export time: fp32 {t_fp32:.1f} s, int8 (search + guard) {t_int8:.1f} s")
    print(f"fusions: {b32.manifest.metrics.export.get('fusions')}")
    print(f"\n{'engine':15s} {'batch':>5s} {'p50 ms':>9s} {'p90 ms':>9s} {'seq/s':>9s} {'vs ort fp32':>12s}")
    for r in rows:
        print(
            f"{r['engine']:15s} {r['batch']:5d} {r['p50_ms']:9.2f} {r['p90_ms']:9.2f} "
            f"{r['seq_per_s']:9.1f} {r['speedup_vs_ort_fp32']:11.2f}x"
        )
    print("\nsizes:", ", ".join(f"{k} {v}" for k, v in sizes.items()))
    print(
        f"\nint8 vs fp32 over {guard['n']} queries: cosine mean {guard['cosine_mean']:.4f} "
        f"p1 {guard['cosine_p1']:.4f} "
        f"min {guard['cosine_min']:.4f}; route agreement {guard['route_agreement']:.4f}; "
        f"accuracy {guard.get('accuracy', float('nan')):.4f} "
        f"vs fp32 {guard.get('accuracy_reference', float('nan')):.4f}; "
        f"guard {'passed' if guard['passed'] else 'FAILED: ' + '; '.join(guard['failures'])}"
    )
    kept = b8.manifest.metrics.export["int8"]["kept_float_nodes"]
    goal = guard["cosine_mean"] >= 0.995 and guard["cosine_p1"] >= 0.98 and speed32 >= 2.0
    print(
        f"goal (mean >= 0.995, p1 >= 0.98, >= 2x fp32 at batch 32): {'MET' if goal else 'not met'} — "
        f"int8 at batch 32 is {speed32:.2f}x fp32 (per round {min(spread32):.2f}-{max(spread32):.2f}x over "
        f"{len(spread32)} rounds), {len(kept)} node(s) kept in float: {kept}"
    )
    record = {
        "bench": "export",
        "source": source,
        "threads": args.threads,
        "host": platform.node(),
        "rows": rows,
        "sizes": sizes,
        "int8_parity": {k: v for k, v in guard.items() if k != "thresholds"},
        "int8_kept_float": kept,
        "int8_trials": b8.manifest.metrics.export["int8"]["trials"],
        "goal_met": goal,
        "int8_speedup_b32_rounds": spread32,
        "int8_guard_passed": bool(guard["passed"]),
        "export_settings": {
            k: v
            for k, v in b8.manifest.metrics.export["int8"].items()
            if k in ("method", "ranking", "smoothing", "kept_float_nodes")
        },
        "export_s": {"fp32": round(t_fp32, 1), "int8": round(t_int8, 1)},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "options_accuracy": accuracy,
    }
    gated_rows: list[HeadlineRow] = []
    if bg is not None:
        g_guard = bg.manifest.metrics.parity["int8_vs_fp32"]
        ratio = {
            bs: round(
                statistics.median(samples[(GATED, bs)]) / statistics.median(samples[("ort int8", bs)]), 3
            )
            for bs in BATCHES
        }
        ratio_text = ", ".join(f"batch {bs} {r:.2f}x" for bs, r in ratio.items())
        record["gated"] = {
            "checkpoint": str(args.gated_checkpoint),
            "route_gate": bg.manifest.metrics.export.get("route_gate"),
            "routes": list(bg.manifest.routes),
            "export_s": round(t_gated, 1),
            "int8_parity": {k: v for k, v in g_guard.items() if k != "thresholds"},
            "smoothing": bg.manifest.metrics.export["int8"].get("smoothing"),
            "p50_vs_int8": ratio,
        }
        print(
            f"\ngated int8 ({record['gated']['route_gate']}): export {t_gated:.1f} s, guard "
            f"{'passed' if g_guard['passed'] else 'FAILED: ' + '; '.join(g_guard['failures'])} (route "
            f"agreement {g_guard['route_agreement']:.4f}, cosine p1 {g_guard['cosine_p1']:.4f}); "
            f"p50 latency, gated / plain int8: {ratio_text}"
        )
        gated_rows.append(
            HeadlineRow(
                what="int8 bundle of a gated route (`add-route --method gate`, the gate in the graph): guard "
                f"and latency, {args.threads} thread(s)",
                baseline="--checkpoint (the gate's parent) as a plain int8 bundle, same rounds",
                result=f"guard {'passed' if g_guard['passed'] else 'FAILED'} (agreement "
                f"{g_guard['route_agreement']:.4f}); p50 latency gated / plain {ratio_text}",
                target="guard passing",
                met=bool(g_guard["passed"]),
            )
        )
    if accuracy:
        print(
            f"\n{'option':34s} {'x fp32 @32':>10s} {'cos mean':>9s} {'cos p1':>8s} "
            f"{'agree':>7s} {'acc drop':>9s}"
        )
        for name, acc in accuracy.items():
            sp = next(r["speedup_vs_ort_fp32"] for r in rows if r["engine"] == name and r["batch"] == 32)
            print(
                f"{name:34s} {sp:9.2f}x {acc['cosine_mean']:9.4f} {acc['cosine_p1']:8.4f} "
                f"{acc['route_agreement']:7.4f} "
                f"{acc.get('accuracy_drop', float('nan')):9.4f}"
            )
    print(json.dumps(record))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(record, indent=2))

    fp32_b32 = next(r["p50_ms"] for r in rows if r["engine"] == "ort fp32" and r["batch"] == 32)
    write_record(
        "export",
        record,
        [
            HeadlineRow(
                what="CPU encoder latency at batch 32, int8 bundle (default export, guard "
                f"{'passed' if guard['passed'] else 'FAILED'}) vs fp32, {args.threads} thread(s)",
                baseline=f"ORT fp32 1.00x ({fp32_b32:.0f} ms)",
                result=f"int8 {speed32:.2f}x (per round {min(spread32):.2f}–{max(spread32):.2f}x, "
                f"{len(spread32)} rounds)",
                target="≥ 2x, guard passing",
                met=speed32 >= 2.0 and bool(guard["passed"]),
            ),
            HeadlineRow(
                what=f"int8 parity with fp32 ({guard['n']} queries)",
                baseline="fp32",
                result=f"cosine mean {guard['cosine_mean']:.4f}, p1 {guard['cosine_p1']:.4f}",
                target="mean ≥ 0.995, p1 ≥ 0.98",
                met=guard["cosine_mean"] >= 0.995 and guard["cosine_p1"] >= 0.98,
            ),
            HeadlineRow(
                what="Bundle size; adapter-only update",
                baseline=f"fp32 bundle {sizes['fp32_bundle_mb']} MB",
                result=f"int8 bundle {sizes['int8_bundle_mb']} MB; "
                f"update {sizes['update_int8_share']:.2%} of it",
            ),
            *option_rows(rows, accuracy, round_speedups),
            *gated_rows,
        ],
    )


def option_rows(
    rows: list[dict[str, Any]],
    accuracy: dict[str, dict[str, Any]],
    round_speedups: dict[str, dict[int, list[float]]],
) -> list[Any]:
    """One headline row per int8 option (``--options``): speed at batch 32 with its spread over the
    rounds, and accuracy vs fp32 on the test split — the speed-vs-accuracy table of docs/arch/bundle.md."""
    from autoglm.bench.records import HeadlineRow

    out = []
    for name, acc in accuracy.items():
        sp = next(r["speedup_vs_ort_fp32"] for r in rows if r["engine"] == name and r["batch"] == 32)
        spread = round_speedups[name][32]
        label = "int8 bundle (default export)" if name == "ort int8" else name
        drop = acc.get("accuracy_drop")
        out.append(
            HeadlineRow(
                what=f"Speed vs accuracy option: {label}",
                baseline="ORT fp32 1.00x",
                result=(
                    f"{sp:.2f}x at batch 32 (rounds {min(spread):.2f}–{max(spread):.2f}x); cosine mean "
                    f"{acc['cosine_mean']:.4f}, p1 {acc['cosine_p1']:.4f}; "
                    f"agreement {acc['route_agreement']:.4f}"
                    + (f"; accuracy drop {drop * 100:+.2f} pt" if drop is not None else "")
                ),
            )
        )
    return out


if __name__ == "__main__":
    main()
