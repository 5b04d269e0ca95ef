#!/usr/bin/env python3
"""One short, self-contained check of the GPU path of the export pipeline.

Run on a GPU machine with only the repository::

    python scripts/gpu_check.py [--out DIR] [--bundle FP32_BUNDLE] [--fp16-bundle FP16_BUNDLE]
                                [--install] [--budget-s 480]

What it does (each step is timed, guarded and reported; a failing step does not stop the rest):

1. Environment: Python, ``nvidia-smi``, onnxruntime version and providers, tensorrt version.
   ``--install`` first tries ``pip install onnxruntime-gpu tensorrt cuda-python`` (short timeout;
   machines without a registry simply skip it).
2. Bundles: ``--bundle`` / ``--fp16-bundle`` if given, else it builds tiny fp32 and fp16 bundles
   from a random MiniLM-shaped encoder with the repository's exporter (needs torch + onnx); with
   ``--real`` it exports the real all-MiniLM-L6-v2 (random adapters) instead.
3. Reference: ONNX Runtime **CPU fp32** outputs for batch 1 and 32.
4. ONNX Runtime CUDA EP on the fp32 and fp16 graphs, TensorRT EP on the fp16 graph: parity
   (max abs diff, cosine, route agreement vs the CPU reference) and latency at batch 1 / 32.
5. TensorRT Python API: builds an fp16 engine (profile batch 1..32 x sequence 1..max, refittable)
   from the fp16 graph, runs it (device buffers through torch.cuda or cuda-python), checks parity
   and times batch 1 / 32; then refits the adapter weights of a second adapter set and checks the
   refit engine against ONNX Runtime CPU with that set bound.
6. Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out`` (default ``$OUT`` or ``.``).

Only numpy and onnxruntime are required; everything else is optional and reported when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPORT: dict[str, Any] = {"steps": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
T0 = time.monotonic()
BUDGET_S = 480.0


def log(msg: str) -> None:
    print(f"[gpu_check {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def step(name: str, fn: Callable[[], Any], *, min_left_s: float = 20.0) -> Any:
    left = BUDGET_S - (time.monotonic() - T0)
    if left < min_left_s:
        REPORT["steps"][name] = {"status": "skipped", "reason": f"time budget: {left:.0f}s left"}
        log(f"{name}: skipped (budget)")
        return None
    log(f"{name} ...")
    t = time.monotonic()
    try:
        result = fn()
        REPORT["steps"][name] = {"status": "ok", "seconds": round(time.monotonic() - t, 2), **(result if isinstance(result, dict) else {})}
        log(f"{name}: ok ({time.monotonic() - t:.1f}s)")
        return result
    except SkipStep as exc:
        REPORT["steps"][name] = {"status": "skipped", "reason": str(exc)}
        log(f"{name}: skipped: {exc}")
    except Exception as exc:
        REPORT["steps"][name] = {
            "status": "error",
            "seconds": round(time.monotonic() - t, 2),
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "trace": traceback.format_exc()[-3000:],
        }
        log(f"{name}: ERROR {type(exc).__name__}: {exc}")
    return None


class SkipStep(Exception):
    pass


def sh(cmd: list[str], timeout: float = 30) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"<{exc}>"


# -- environment ------------------------------------------------------------------------------


def env_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    info["nvidia_smi"] = sh(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,memory.total", "--format=csv,noheader"]) if shutil.which("nvidia-smi") else None
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["ort_providers"] = ort.get_available_providers()
    except ImportError as exc:
        info["onnxruntime"] = f"missing ({exc})"
    try:
        import tensorrt as trt

        info["tensorrt"] = trt.__version__
    except ImportError:
        info["tensorrt"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        info["torch"] = None
    return info


def try_install() -> dict[str, Any]:
    res = {}
    for pkgs in (["onnxruntime-gpu"], ["tensorrt"], ["cuda-python"]):
        out = sh([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pkgs], timeout=150)
        res[" ".join(pkgs)] = out[-400:] or "ok"
    return res


# -- bundles ----------------------------------------------------------------------------------


def build_bundles(work: Path, real: bool) -> dict[str, Any]:
    try:
        import torch

        from cloud.model.autoglm_model import AutoGLMModel
        from cloud.model.base import default_base_path, make_tiny_base
        from cloud.model.checkpoint import save_checkpoint
        from export.pipeline import export_checkpoint
    except ImportError as exc:
        raise SkipStep(f"cannot export here ({exc}); pass --bundle/--fp16-bundle built elsewhere") from exc
    base = default_base_path() if real else make_tiny_base(work / "base", hidden=128, layers=4, heads=4)
    model = AutoGLMModel.from_pretrained(base)
    routes = ["calculator", "unit_convert", "climate", "kg_query", "device_status", "device_control", "memory_recall", "doc_search", "chitchat"]
    gen = torch.Generator().manual_seed(0)
    for name in ("default", "other"):
        model.add_adapter_set(name, routes)
        with torch.no_grad():
            for p in model.adapter_set(name).parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.03)
    ckpt = save_checkpoint(model, work / "ckpt", base_path=base)
    fp32 = export_checkpoint(ckpt, work / "fp32", precision="fp32")
    fp16 = export_checkpoint(ckpt, work / "fp16", precision="fp16")
    return {"fp32": str(fp32), "fp16": str(fp16), "base": "all-MiniLM-L6-v2" if real else "tiny random (h128, 4 layers)"}


def read_manifest(bundle: Path) -> dict[str, Any]:
    text = (bundle / "manifest.yaml").read_text(encoding="utf-8")
    try:
        import yaml

        return dict(yaml.safe_load(text))
    except ImportError as exc:
        raise SkipStep("pyyaml is needed to read manifest.yaml") from exc


def graph_of(bundle: Path) -> Path:
    return bundle / read_manifest(bundle)["graphs"]["encoder"]["file"]


def adapter_tensors(bundle: Path, set_name: str) -> dict[str, Any]:
    import numpy as np

    m = read_manifest(bundle)
    entry = m["adapter_sets"][set_name]
    try:
        from safetensors.numpy import load_file

        from contracts.adapter_codec import decode_tensors
    except ImportError as exc:
        raise SkipStep(f"reading adapter files needs safetensors ({exc})") from exc
    stored = load_file(str(bundle / entry["file"]))
    return {k: np.ascontiguousarray(v) for k, v in decode_tensors(stored, entry.get("encoding", "float32"), sorted(entry["tensors"])).items()}


def make_inputs(bundle: Path) -> dict[int, tuple[Any, Any]]:
    import numpy as np

    texts = [
        "what is 17 times 23", "convert 5 miles to km", "weather in Shanghai in July", "who manages line 3",
        "temperature of chiller CH-2", "turn off conveyor 4", "what did I ask before", "how to reset the valve",
        "你好", "北京一月份的平均气温是多少", "三号泵现在的转速是多少", "更换滤芯的步骤是什么",
    ]
    texts = (texts * 3)[:32]
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
        tok.enable_truncation(max_length=64)
        encs = [e.ids for e in tok.encode_batch(texts)]
    except Exception:
        rng = np.random.default_rng(0)
        encs = [[101, *rng.integers(1000, 5000, int(n)).tolist(), 102] for n in rng.integers(3, 20, 32)]
    out = {}
    for b in (1, 32):
        rows = encs[:b]
        length = max(len(r) for r in rows)
        ids = np.zeros((b, length), dtype=np.int64)
        mask = np.zeros((b, length), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        out[b] = (ids, mask)
    return out


# -- running and comparing --------------------------------------------------------------------


def compare(ref: tuple[Any, Any], got: tuple[Any, Any]) -> dict[str, float]:
    import numpy as np

    re_, rl = ref
    ge, gl = (np.asarray(x, dtype=np.float32) for x in got)
    cos = (re_ * ge).sum(1) / np.maximum(np.linalg.norm(re_, axis=1) * np.linalg.norm(ge, axis=1), 1e-12)
    return {
        "max_abs_diff": float(np.abs(re_ - ge).max()),
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "route_agreement": float((rl.argmax(1) == gl.argmax(1)).mean()),
    }


def time_it(fn: Callable[[], Any], seconds: float = 3.0, min_iters: int = 5) -> dict[str, float]:
    fn()
    fn()
    times = []
    end = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 2000:
            break
    times.sort()
    return {"p50_ms": round(times[len(times) // 2] * 1000, 3), "p90_ms": round(times[int(len(times) * 0.9)] * 1000, 3), "iters": len(times)}


def ort_session(graph: Path, providers: list[Any], bind: dict[str, Any] | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    keep = []
    for name, arr in (bind or {}).items():
        v = ort.OrtValue.ortvalue_from_numpy(arr)
        keep.append(v)
        so.add_initializer(name, v)
    sess = ort.InferenceSession(str(graph), sess_options=so, providers=providers)
    sess._autoglm_keep = keep  # type: ignore[attr-defined]
    return sess


def run_ort(sess: Any, ids: Any, mask: Any) -> tuple[Any, Any]:
    e, lg = sess.run(["embedding", "route_logits"], {"input_ids": ids, "attention_mask": mask})
    return e, lg


def ort_case(graph: Path, providers: list[Any], inputs: dict[int, tuple[Any, Any]], ref: dict[int, tuple[Any, Any]]) -> dict[str, Any]:
    import onnxruntime as ort

    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if wanted not in ort.get_available_providers():
        raise SkipStep(f"{wanted} not in this onnxruntime build ({ort.get_available_providers()})")
    t = time.monotonic()
    sess = ort_session(graph, providers)
    res: dict[str, Any] = {"providers_used": sess.get_providers(), "session_create_s": round(time.monotonic() - t, 2)}
    for b, (ids, mask) in inputs.items():
        res[f"parity_b{b}"] = compare(ref[b], run_ort(sess, ids, mask))
        res[f"latency_b{b}"] = time_it(lambda s=sess, i=ids, m=mask: run_ort(s, i, m))
    return res


# -- TensorRT python API ----------------------------------------------------------------------


class DeviceBuffers:
    """Device memory through torch.cuda if present, else cuda-python."""

    def __init__(self) -> None:
        self.kind = ""
        try:
            import torch

            if torch.cuda.is_available():
                self.kind, self.torch = "torch", torch
                return
        except ImportError:
            pass
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart  # type: ignore[no-redef]
            self.kind, self.cudart = "cuda-python", cudart
        except ImportError as exc:
            raise SkipStep("running an engine needs torch with CUDA or cuda-python") from exc

    def run(self, engine: Any, context: Any, feeds: dict[str, Any], out_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
        import numpy as np

        if self.kind == "torch":
            torch = self.torch
            dev = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}
            outs = {k: torch.empty(s, dtype=torch.float32, device="cuda") for k, s in out_shapes.items()}
            for k, v in dev.items():
                context.set_input_shape(k, tuple(v.shape))
                context.set_tensor_address(k, v.data_ptr())
            for k, v in outs.items():
                context.set_tensor_address(k, v.data_ptr())
            stream = torch.cuda.current_stream().cuda_stream
            context.execute_async_v3(stream)
            torch.cuda.synchronize()
            return {k: v.cpu().numpy() for k, v in outs.items()}
        cudart = self.cudart
        ptrs = []
        try:
            for k, v in feeds.items():
                _, p = cudart.cudaMalloc(v.nbytes)
                ptrs.append(p)
                cudart.cudaMemcpy(p, v.ctypes.data, v.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                context.set_input_shape(k, v.shape)
                context.set_tensor_address(k, p)
            host = {k: np.empty(s, dtype=np.float32) for k, s in out_shapes.items()}
            outp = {}
            for k, h in host.items():
                _, p = cudart.cudaMalloc(h.nbytes)
                ptrs.append(p)
                outp[k] = p
                context.set_tensor_address(k, p)
            _, stream = cudart.cudaStreamCreate()
            context.execute_async_v3(stream)
            cudart.cudaStreamSynchronize(stream)
            for k, h in host.items():
                cudart.cudaMemcpy(h.ctypes.data, outp[k], h.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
            cudart.cudaStreamDestroy(stream)
            return host
        finally:
            for p in ptrs:
                cudart.cudaFree(p)


def trt_case(fp16_bundle: Path, inputs: dict[int, tuple[Any, Any]], ref: dict[int, tuple[Any, Any]], ref_other: dict[int, tuple[Any, Any]] | None) -> dict[str, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise SkipStep("tensorrt is not installed") from exc
    from export.tensorrt_build import build_engine

    m = read_manifest(fp16_bundle)
    hidden = int(m["base_encoder"]["hidden_size"])
    n_routes = len(m["routes"])
    max_seq = int(m["tokenizer"]["max_length"])
    engine_path = Path(tempfile.mkdtemp()) / "encoder.fp16.plan"
    t = time.monotonic()
    info = build_engine(graph_of(fp16_bundle), engine_path, precision="fp16", max_batch=32, max_seq=max_seq, workspace_mb=4096)
    res: dict[str, Any] = {"build_s": round(time.monotonic() - t, 1), "engine": info.model_dump(), "engine_mb": round(engine_path.stat().st_size / 1e6, 2)}
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    bufs = DeviceBuffers()
    res["device_buffers"] = bufs.kind

    def run(b: int) -> tuple[Any, Any]:
        ids, mask = inputs[b]
        out = bufs.run(engine, context, {"input_ids": ids, "attention_mask": mask}, {"embedding": (b, hidden), "route_logits": (b, n_routes)})
        return out["embedding"], out["route_logits"]

    for b in inputs:
        res[f"parity_b{b}"] = compare(ref[b], run(b))
        res[f"latency_b{b}"] = time_it(lambda b=b: run(b))
    if ref_other is not None:
        refitter = trt.Refitter(engine, logger)
        other = adapter_tensors(fp16_bundle, "other")
        names = set(refitter.get_all_weights())
        missing = sorted(set(other) - names)
        res["refit_missing_weights"] = missing[:10]
        for name, arr in other.items():
            if name in names:
                refitter.set_named_weights(name, trt.Weights(arr))
        res["refit_ok"] = bool(refitter.refit_cuda_engine())
        res["refit_parity_b32"] = compare(ref_other[32], run(32))
    return res


# -- main ---------------------------------------------------------------------------------------


def write_report(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    REPORT["wall_s"] = round(time.monotonic() - T0, 1)
    (out / "gpu_check.json").write_text(json.dumps(REPORT, indent=2, default=str), encoding="utf-8")
    lines = ["# GPU check", "", f"started {REPORT['started']}, wall {REPORT['wall_s']} s", ""]
    env = REPORT["steps"].get("environment", {})
    for k in ("nvidia_smi", "onnxruntime", "ort_providers", "tensorrt", "torch"):
        if k in env:
            lines.append(f"- {k}: {env[k]}")
    lines += ["", "| step | status | parity b32 (max abs / cos min / agree) | p50 b1 ms | p50 b32 ms |", "|---|---|---|---|---|"]
    for name, s in REPORT["steps"].items():
        p = s.get("parity_b32", {})
        par = f"{p['max_abs_diff']:.2e} / {p['cosine_min']:.5f} / {p['route_agreement']:.3f}" if p else ""
        l1 = s.get("latency_b1", {}).get("p50_ms", "")
        l32 = s.get("latency_b32", {}).get("p50_ms", "")
        status = s["status"] + (f": {s.get('reason') or s.get('error', '')}"[:160] if s["status"] != "ok" else "")
        lines.append(f"| {name} | {status} | {par} | {l1} | {l32} |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"report -> {out / 'gpu_check.md'}")


def main() -> int:
    global BUDGET_S
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--bundle", type=Path, help="fp32 bundle (reference graph)")
    ap.add_argument("--fp16-bundle", type=Path, help="fp16 bundle (CUDA/TensorRT graph)")
    ap.add_argument("--install", action="store_true", help="pip install onnxruntime-gpu, tensorrt, cuda-python first")
    ap.add_argument("--real", action="store_true", help="export the real all-MiniLM-L6-v2 instead of a tiny encoder")
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new steps after this many seconds")
    args = ap.parse_args()
    BUDGET_S = args.budget_s
    try:
        if args.install:
            step("install", try_install, min_left_s=200)
        REPORT["steps"]["environment"] = {"status": "ok", **env_info()}
        log(f"environment: {REPORT['steps']['environment']}")
        work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        fp32, fp16 = args.bundle, args.fp16_bundle
        if fp32 is None or fp16 is None:
            built = step("build bundles", lambda: build_bundles(work, args.real), min_left_s=120)
            if built:
                fp32, fp16 = fp32 or Path(built["fp32"]), fp16 or Path(built["fp16"])
        if fp32 is None:
            log("no fp32 bundle: nothing to compare against")
            return 2
        inputs = make_inputs(fp32)
        ref = step("ort cpu fp32 (reference)", lambda: {"_": {b: run_ort(ort_session(graph_of(fp32), ["CPUExecutionProvider"]), *inputs[b]) for b in inputs}})
        if not ref:
            return 2
        ref_out = ref.pop("_")
        REPORT["steps"]["ort cpu fp32 (reference)"].pop("_", None)
        cpu = step("ort cpu fp32 timing", lambda: ort_case(graph_of(fp32), ["CPUExecutionProvider"], inputs, ref_out))
        del cpu
        ref_other = None
        if fp16 is not None:
            other = step("ort cpu fp32 + bound 'other' (refit reference)", lambda: {"_": {32: run_ort(ort_session(graph_of(fp32), ["CPUExecutionProvider"], adapter_tensors(fp32, "other")), *inputs[32])}})
            if other:
                ref_other = other.pop("_")
                REPORT["steps"]["ort cpu fp32 + bound 'other' (refit reference)"].pop("_", None)
        step("ort cuda fp32", lambda: ort_case(graph_of(fp32), ["CUDAExecutionProvider", "CPUExecutionProvider"], inputs, ref_out))
        if fp16 is not None:
            step("ort cuda fp16", lambda: ort_case(graph_of(fp16), ["CUDAExecutionProvider", "CPUExecutionProvider"], inputs, ref_out))
            cache = work / "trt-cache"
            trt_ep = ("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)})
            step("ort tensorrt-ep fp16", lambda: ort_case(graph_of(fp16), [trt_ep, "CUDAExecutionProvider", "CPUExecutionProvider"], inputs, ref_out), min_left_s=90)
            step("tensorrt python api fp16 engine", lambda: trt_case(fp16, inputs, ref_out, ref_other), min_left_s=90)
        return 0
    finally:
        write_report(args.out)


if __name__ == "__main__":
    sys.exit(main())
