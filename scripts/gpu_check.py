#!/usr/bin/env python3
"""One short, self-contained check of the GPU path: bound adapter sets, adapter-only updates,
fp16 / int8 / TensorRT, honest provider reports and serving numbers — on each execution provider.

Run on a GPU machine with only the repository (and its Python dependencies)::

    python scripts/gpu_check.py [--providers cpu,cuda,tensorrt] [--real] [--out DIR]
                                [--serving-s 3] [--install] [--budget-s 480]
    python scripts/gpu_check.py --cpu-dry-run
        # = --providers cpu --tiny --serving-s 0 (tests/export/test_gpu_check.py)

Steps (each timed and guarded; a failing step does not stop the rest; the report says why):

1. Environment: Python, ``nvidia-smi``, onnxruntime version and providers, tensorrt, torch.
   For CUDA / TensorRT it first calls ``onnxruntime.preload_dlls()`` (onnxruntime-gpu for CUDA 13
   finds the nvidia cu13 runtime wheels that way; else put them on ``LD_LIBRARY_PATH``).
   ``--install`` first tries ``pip install onnxruntime-gpu tensorrt cuda-python``.
2. Bundles from one checkpoint (tiny random encoder, or ``--real`` all-MiniLM-L6-v2; random
   adapter sets "default" and "other"): fp32, fp16 (with TensorRT engines when tensorrt is
   importable), int8 (no sensitivity search: a runtime check, not an accuracy one) and an
   adapter-only update of the fp32 bundle carrying retrained "default" weights.
3. References on the CPU provider: fp32 bound to "default" and to "other", int8, the update.
4. Per provider in ``--providers``:
   - **bound-set parity**: a session bound to "other" vs the CPU session bound to "other"
     (≤ 1e-5 on CPU, ≤ 1e-3 on a GPU) and ≠ the default set (binding took effect);
   - **fp32 / fp16 latency** at batch 1 and 32, fp16 vs fp32 ratio, fp16 cosine to fp32;
   - **int8 bundle** on that provider (parity vs CPU int8, latency);
   - **adapter-only update hot swap**: the edge loader loads the parent, then the update on top
     of it, on that provider; outputs vs the CPU session of the update;
   - **precision variant**: which variant the rollout controller sends a node whose model really
     runs on that provider (fp16 on CUDA / TensorRT, int8 on the CPU);
   - **TensorRT native** (tensorrt only): the bundle's engine, latency, refit with "other"; and the
     edge loader serving "other" on the native engine (``TensorRTEngineRuntime.refit``, timed);
   - **TensorRT engine cache** (tensorrt only): the edge loader serves the fp16 bundle, then an
     adapter-only update of it — the node's cached engine refitted with the update's weights
     (``edge.runtime.trt_cache``; source ``refit``, timed), parity vs the CPU session of the update,
     a reload from the cache (source ``cache``, timed), and a full TensorRT build of the same
     weights from the unfused graph (what the refit avoids, timed): ``refit_vs_build``;
   - **serving**: ``benchmarks/bench_serving.py --provider P --workers 1,2 --io-binding`` (servers
     ort, edge, edge with 2 worker processes, edge with IOBinding on; concurrency 1, 32, 256;
     ``--serving-s`` seconds each; 0 skips), served / raw-engine throughput per server, the best
     one against the issue's target.
   Every session records the providers that **really** ran (``get_providers()``); a requested
   provider that fell back (e.g. the TensorRT EP without libnvinfer → CUDA) makes that step
   ``failed`` and says so.
5. Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out`` (default ``$OUT`` or ``.``).
   Exit code 0 only when no step failed or errored.
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
ORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PARITY_TOL = {"cpu": 1e-5, "cuda": 1e-3, "tensorrt": 2e-2}  # TensorRT EP runs fp16 kernels (trt_fp16_enable)


def log(msg: str) -> None:
    print(f"[gpu_check {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class SkipStep(Exception):
    pass


class CheckFailed(Exception):
    """The step ran but a check did not hold (fallback, parity); ``result`` goes into the report."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


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
        public = {
            k: v for k, v in (result if isinstance(result, dict) else {}).items() if not k.startswith("_")
        }
        REPORT["steps"][name] = {"status": "ok", "seconds": round(time.monotonic() - t, 2), **public}
        log(f"{name}: ok ({time.monotonic() - t:.1f}s)")
        return result
    except SkipStep as exc:
        REPORT["steps"][name] = {"status": "skipped", "reason": str(exc)}
        log(f"{name}: skipped: {exc}")
    except CheckFailed as exc:
        REPORT["steps"][name] = {
            "status": "failed",
            "seconds": round(time.monotonic() - t, 2),
            "reason": str(exc),
            **exc.result,
        }
        log(f"{name}: FAILED: {exc}")
    except Exception as exc:
        REPORT["steps"][name] = {
            "status": "error",
            "seconds": round(time.monotonic() - t, 2),
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "trace": traceback.format_exc()[-3000:],
        }
        log(f"{name}: ERROR {type(exc).__name__}: {exc}")
    return None


def sh(cmd: list[str], timeout: float = 30) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"<{exc}>"


# -- environment ------------------------------------------------------------------------------


def env_info(providers: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    info["nvidia_smi"] = (
        sh(
            [
                "nvidia-smi",
                "--query-gpu=name,compute_cap,driver_version,memory.total",
                "--format=csv,noheader",
            ]
        )
        if shutil.which("nvidia-smi")
        else None
    )
    try:
        import onnxruntime as ort

        if any(p != "cpu" for p in providers) and hasattr(ort, "preload_dlls"):
            try:  # onnxruntime-gpu (CUDA 13): load the nvidia-*-cu13 wheels' libraries before any session
                ort.preload_dlls()
                info["preload_dlls"] = "ok"
            except Exception as exc:
                info["preload_dlls"] = f"failed: {exc}"
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
        out = sh(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pkgs], timeout=150
        )
        res[" ".join(pkgs)] = out[-400:] or "ok"
    return res


# -- bundles ----------------------------------------------------------------------------------


def build_bundles(work: Path, real: bool, tiny: bool = False) -> dict[str, Any]:
    try:
        import torch

        from cloud.model.autoglm_model import AutoGLMModel
        from cloud.model.base import default_base_path, make_tiny_base
        from cloud.model.checkpoint import save_checkpoint
        from export.pipeline import export_adapter_update, export_checkpoint
        from export.settings import ExportSettings
        from export.tensorrt_build import tensorrt_unavailable_reason
    except ImportError as exc:
        raise SkipStep(f"cannot export here ({exc}); needs torch + onnx") from exc
    if real:
        base = default_base_path()
    elif tiny:
        base = make_tiny_base(work / "base")  # the test suite's size: seconds to export
    else:
        base = make_tiny_base(work / "base", hidden=128, layers=4, heads=4)
    routes = [
        "calculator",
        "unit_convert",
        "climate",
        "kg_query",
        "device_status",
        "device_control",
        "memory_recall",
        "doc_search",
        "chitchat",
    ]

    def checkpoint(out: Path, seed: int, names: tuple[str, ...]) -> Path:
        model = AutoGLMModel.from_pretrained(base)
        gen = torch.Generator().manual_seed(seed)
        for name in names:
            model.add_adapter_set(name, routes)
            with torch.no_grad():
                for p in model.adapter_set(name).parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        return save_checkpoint(model, out, base_path=base)

    ckpt = checkpoint(work / "ckpt", 0, ("default", "other"))
    retrained = checkpoint(work / "ckpt-retrained", 7, ("default",))
    fp32 = export_checkpoint(ckpt, work / "fp32", precision="fp32")
    fp16 = export_checkpoint(
        ckpt, work / "fp16", precision="fp16", tensorrt=tensorrt_unavailable_reason() is None
    )
    # a runtime check of the int8 graph on each provider, not an accuracy one: no search, guard kept
    int8 = export_checkpoint(
        ckpt,
        work / "int8",
        precision="int8",
        allow_degraded=True,
        settings=ExportSettings(int8_max_float_nodes=0),
    )
    update = export_adapter_update(retrained, work / "update", parent_bundle=fp32, version="0.1.1")
    # the same retrained weights as an update of the fp16 bundle (the one with TensorRT engines)
    update_fp16 = export_adapter_update(retrained, work / "update-fp16", parent_bundle=fp16, version="0.1.2")
    return {
        "fp32": str(fp32),
        "fp16": str(fp16),
        "int8": str(int8),
        "update": str(update),
        "update_fp16": str(update_fp16),
        "ckpt_retrained": str(retrained),
        "base": "all-MiniLM-L6-v2"
        if real
        else ("tiny random (test size)" if tiny else "tiny random (h128, 4 layers)"),
    }


def read_manifest(bundle: Path) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((bundle / "manifest.yaml").read_text(encoding="utf-8")))


def adapter_tensors(bundle: Path, set_name: str) -> dict[str, Any]:
    from contracts.bundle import open_bundle
    from edge.runtime.bundle_session import load_adapter_tensors

    b = open_bundle(bundle, verify=False)
    return load_adapter_tensors(b.adapter_file(set_name), b.manifest.adapter_sets[set_name], set_name)


def make_inputs(bundle: Path) -> dict[int, tuple[Any, Any]]:
    from contracts.bundle import open_bundle
    from edge.runtime.bundle_session import bundle_tokenizer

    texts = [
        "what is 17 times 23",
        "convert 5 miles to km",
        "weather in Shanghai in July",
        "who manages line 3",
        "temperature of chiller CH-2",
        "turn off conveyor 4",
        "what did I ask before",
        "how to reset the valve",
        "你好",
        "北京一月份的平均气温是多少",
        "三号泵现在的转速是多少",
        "更换滤芯的步骤是什么",
    ]
    texts = (texts * 3)[:32]
    tok = bundle_tokenizer(open_bundle(bundle, verify=False))
    return {b: tok(texts[:b]) for b in (1, 32)}


# -- running and comparing --------------------------------------------------------------------


def compare(ref: tuple[Any, Any], got: tuple[Any, Any]) -> dict[str, float]:
    import numpy as np

    re_, rl = (np.asarray(x, dtype=np.float32) for x in ref)
    ge, gl = (np.asarray(x, dtype=np.float32) for x in got)
    cos = (re_ * ge).sum(1) / np.maximum(np.linalg.norm(re_, axis=1) * np.linalg.norm(ge, axis=1), 1e-12)
    return {
        "max_abs_diff": float(np.abs(re_ - ge).max()),
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "route_agreement": float((rl.argmax(1) == gl.argmax(1)).mean()),
    }


def time_it(fn: Callable[[], Any], seconds: float = 2.0, min_iters: int = 5) -> dict[str, float]:
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
    return {
        "p50_ms": round(times[len(times) // 2] * 1000, 3),
        "p90_ms": round(times[int(len(times) * 0.9)] * 1000, 3),
        "iters": len(times),
    }


def provider_args(provider: str, cache: Path, fp16: bool) -> list[Any]:
    """ORT providers for ``provider`` with the CPU provider last (as the edge builds them)."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    chain: list[Any] = []
    if provider == "tensorrt":
        cache.mkdir(parents=True, exist_ok=True)
        chain.append(
            (
                "TensorrtExecutionProvider",
                {
                    "trt_fp16_enable": fp16,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                },
            )
        )
    chain.append("CUDAExecutionProvider")
    return [*chain, "CPUExecutionProvider"]


def session(bundle: Path, set_name: str, provider: str, cache: Path, fp16: bool = False) -> Any:
    from contracts.bundle import open_bundle
    from edge.runtime.bundle_session import BundleSession

    return BundleSession(
        open_bundle(bundle, verify=False),
        adapter_set=set_name,
        providers=provider_args(provider, cache, fp16),
    )


def really_ran(sess: Any, provider: str) -> dict[str, Any]:
    """What ran vs what was asked; a fallback is a failed check, never a silent CPU number."""
    used = list(sess.providers)
    return {
        "providers_requested": sess.requested_providers,
        "providers_used": used,
        "fallback": sess.fallback,
        "provider_ok": used[0] == ORT_NAMES[provider],
    }


def require_provider(res: dict[str, Any], provider: str) -> None:
    if not res["provider_ok"]:
        raise CheckFailed(
            f"{ORT_NAMES[provider]} did not start: the session ran on {res['providers_used']}", res
        )


def run(sess: Any, ids: Any, mask: Any) -> tuple[Any, Any]:
    out: tuple[Any, Any] = sess.run(ids, mask)
    return out


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

    def run(
        self, engine: Any, context: Any, feeds: dict[str, Any], out_shapes: dict[str, tuple[int, ...]]
    ) -> dict[str, Any]:
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
                cudart.cudaMemcpy(
                    h.ctypes.data, outp[k], h.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
                )
            cudart.cudaStreamDestroy(stream)
            return host
        finally:
            for p in ptrs:
                cudart.cudaFree(p)


def trt_case(
    fp16_bundle: Path,
    inputs: dict[int, tuple[Any, Any]],
    ref: dict[int, tuple[Any, Any]],
    ref_other: dict[int, tuple[Any, Any]],
) -> dict[str, Any]:
    """The bundle's own TensorRT engine (built by the exporter from the unfused graph): parity with
    the CPU reference, latency, then a refit with the 'other' adapter set and parity again."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise SkipStep("tensorrt is not installed (pip install tensorrt; needs libnvinfer)") from exc
    m = read_manifest(fp16_bundle)
    engines = m.get("tensorrt") or []
    if not engines:
        raise SkipStep(
            "bundle has no TensorRT engine: "
            f"{m.get('metrics', {}).get('export', {}).get('tensorrt_skipped', '?')}"
        )
    spec = engines[0]
    hidden = int(m["base_encoder"]["hidden_size"])
    n_routes = len(m["routes"])
    res: dict[str, Any] = {
        "engine": {k: spec[k] for k in ("file", "precision", "gpu_arch", "trt_version", "refittable")}
    }
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine((fp16_bundle / spec["file"]).read_bytes())
    context = engine.create_execution_context()
    bufs = DeviceBuffers()
    res["device_buffers"] = bufs.kind
    res["providers_used"] = [f"TensorRT-native({spec['gpu_arch']}, {spec['precision']})"]

    def run(b: int) -> tuple[Any, Any]:
        ids, mask = inputs[b]
        out = bufs.run(
            engine,
            context,
            {"input_ids": ids, "attention_mask": mask},
            {"embedding": (b, hidden), "route_logits": (b, n_routes)},
        )
        return out["embedding"], out["route_logits"]

    for b in inputs:
        res[f"parity_b{b}"] = compare(ref[b], run(b))
        res[f"latency_b{b}"] = time_it(lambda b=b: run(b))
    refitter = trt.Refitter(engine, logger)
    other = adapter_tensors(fp16_bundle, "other")
    names = set(refitter.get_all_weights())
    res["refit_missing_weights"] = sorted(set(other) - names)[:10]
    t = time.monotonic()
    for name, arr in other.items():
        if name in names:
            refitter.set_named_weights(name, trt.Weights(arr))
    res["refit_ok"] = bool(refitter.refit_cuda_engine())
    res["refit_s"] = round(time.monotonic() - t, 3)
    res["refit_parity_b32"] = compare(ref_other[32], run(32))
    if not res["refit_ok"] or res["refit_missing_weights"] or res["refit_parity_b32"]["max_abs_diff"] > 2e-2:
        raise CheckFailed("refit with the 'other' set does not match the CPU session bound to 'other'", res)
    if res["parity_b32"]["max_abs_diff"] > 2e-2:
        raise CheckFailed("native engine differs from the CPU reference", res)
    return res


def trt_loader_other_set(
    fp16_bundle: Path, inputs: dict[int, tuple[Any, Any]], ref_other: dict[int, tuple[Any, Any]], work: Path
) -> dict[str, Any]:
    """The edge loader serving the non-default set 'other' on the bundle's native TensorRT engine:
    ``BundleModelLoader`` refits the engine with the set's weights (no rebuild) — timed."""
    from edge.serving.bundle_loader import BundleModelLoader
    from edge.settings import ServeSettings

    if not (read_manifest(fp16_bundle).get("tensorrt") or []):
        raise SkipStep("bundle has no TensorRT engine")
    settings = ServeSettings(
        providers=["tensorrt", "cuda", "cpu"], model_cache_dir=work / "model-cache-trt-native"
    )  # type: ignore[arg-type]
    model = BundleModelLoader(settings)(fp16_bundle, adapter_set="other")
    res: dict[str, Any] = {"providers_used": list(model.providers), "refit_s": model.extra.get("trt_refit_s")}
    try:
        if not str(res["providers_used"][0]).startswith("TensorRT-native"):
            raise CheckFailed(f"the loader did not use the native engine: {res['providers_used']}", res)
        res["parity_b32"] = compare(ref_other[32], model.engine(*inputs[32]))
    finally:
        model.close()
    if res["parity_b32"]["max_abs_diff"] > 2e-2:
        raise CheckFailed(
            "native engine refitted with 'other' differs from the CPU session bound to 'other'", res
        )
    return res


def trt_cache_update(b: dict[str, Path], inputs: dict[int, tuple[Any, Any]], work: Path) -> dict[str, Any]:
    """The node's engine cache on an adapter-only update (``edge.runtime.trt_cache``): the loader
    serves the fp16 bundle, then its update — the cached engine refitted with the update's weights
    instead of a rebuild (timed) —, then reloads the update from the cache (timed); and, for the
    comparison, a full TensorRT build of the update's weights from the unfused graph (timed)."""
    from cloud.model.checkpoint import load_checkpoint
    from contracts.bundle import open_bundle
    from edge.runtime.bundle_session import BundleSession
    from edge.serving.bundle_loader import BundleModelLoader
    from edge.settings import ServeSettings
    from export.onnx_graph import export_adapter_set_graph
    from export.settings import ExportSettings
    from export.tensorrt_build import build_engine

    m = read_manifest(b["fp16"])
    if not (m.get("tensorrt") or []):
        raise SkipStep("bundle has no TensorRT engine")
    settings = ServeSettings(
        providers=["tensorrt", "cuda", "cpu"], model_cache_dir=work / "model-cache-trt-update"
    )  # type: ignore[arg-type]
    served: list[Path] = []

    def loader() -> BundleModelLoader:
        return BundleModelLoader(settings, parent_of=lambda: served[-1] if served else None)

    load = loader()
    t = time.monotonic()
    parent = load(b["fp16"])
    res: dict[str, Any] = {
        "parent_load_s": round(time.monotonic() - t, 3),
        "parent_source": parent.extra.get("trt_engine_source"),
    }
    served.append(b["fp16"])
    t = time.monotonic()
    upd = load(b["update_fp16"])
    res.update(
        {
            "update_load_s": round(time.monotonic() - t, 3),
            "update_source": upd.extra.get("trt_engine_source"),
            "refit_s": upd.extra.get("trt_refit_s"),
            "providers_used": list(upd.providers),
        }
    )
    ref_sess = BundleSession(
        open_bundle(b["update_fp16"], verify=False, parent=open_bundle(b["fp16"], verify=False))
    )
    try:
        if not str(res["providers_used"][0]).startswith("TensorRT-native"):
            raise CheckFailed(f"the update did not run on the native engine: {res['providers_used']}", res)
        res["parity_b32"] = compare(run(ref_sess, *inputs[32]), upd.engine(*inputs[32]))
    finally:
        upd.close()
        parent.close()
    t = time.monotonic()
    again = loader()(b["update_fp16"])
    res["restart_load_s"] = round(time.monotonic() - t, 3)
    res["restart_source"] = again.extra.get("trt_engine_source")
    again.close()
    # the alternative the refit avoids: a TensorRT build of the update's weights from the unfused graph
    model, _meta = load_checkpoint(b["ckpt_retrained"])
    cfg = ExportSettings()
    raw = work / "trt-rebuild" / "encoder.raw.onnx"
    raw.parent.mkdir(parents=True, exist_ok=True)
    export_adapter_set_graph(model, "default", raw, cfg.onnx_opset)
    t = time.monotonic()
    build_engine(
        raw,
        raw.with_suffix(".plan"),
        precision=str(m["tensorrt"][0]["precision"]),
        max_batch=cfg.tensorrt_max_batch,
        max_seq=int(m["tokenizer"]["max_length"]),
        workspace_mb=cfg.tensorrt_workspace_mb,
    )
    res["full_build_s"] = round(time.monotonic() - t, 3)
    if res["refit_s"]:
        res["refit_vs_build"] = round(float(res["refit_s"]) / res["full_build_s"], 4)
    if res["update_source"] != "refit" or res["restart_source"] != "cache":
        raise CheckFailed(
            "the update was not refitted into the cached engine / not reloaded from the cache", res
        )
    if res["parity_b32"]["max_abs_diff"] > 2e-2:
        raise CheckFailed("the refitted engine differs from the CPU session of the update", res)
    return res


# -- per-provider checks ----------------------------------------------------------------------


def bound_set_parity(
    b: dict[str, Path], provider: str, inputs: dict[int, Any], refs: dict[str, Any], cache: Path
) -> dict[str, Any]:
    other = session(b["fp32"], "other", provider, cache)
    res = really_ran(other, provider)
    require_provider(res, provider)
    default = session(b["fp32"], "default", provider, cache)
    for bs in inputs:
        got = run(other, *inputs[bs])
        res[f"parity_b{bs}"] = compare(refs["fp32_other"][bs], got)
        res[f"vs_default_b{bs}"] = compare(run(default, *inputs[bs]), got)["max_abs_diff"]
    res["tolerance"] = PARITY_TOL[provider]
    if res["parity_b32"]["max_abs_diff"] > PARITY_TOL[provider]:
        raise CheckFailed(
            "bound 'other' differs from the CPU session bound to 'other' by "
            f"{res['parity_b32']['max_abs_diff']:.2e}",
            res,
        )
    if res["vs_default_b32"] < 1e-2:
        raise CheckFailed("bound 'other' gives the default set's outputs: the binding was ignored", res)
    return res


def variant_choice(b: dict[str, Path], provider: str, cache: Path) -> dict[str, Any]:
    """The precision variant the rollout controller would send a node whose model runs on this
    provider (its heartbeat reports the session's real providers): fp16 on CUDA / TensorRT, int8 on
    the CPU (cloud/rollout/variants.py)."""
    from cloud.registry.schemas import DEFAULT_RUNS_ON, VariantOut
    from cloud.rollout.variants import choose_variant

    res = really_ran(session(b["fp32"], "default", provider, cache), provider)
    require_provider(res, provider)
    fam = [
        VariantOut(
            precision=p,
            version="1.0.0" if p == "fp32" else f"1.0.0+{p}",
            manifest_sha256="0" * 64,
            runs_on=DEFAULT_RUNS_ON[p],
        )
        for p in ("fp32", "fp16", "int8")
    ]
    choice = choose_variant(fam, fam[0], {"providers": res["providers_used"]}, {})
    res["variant_chosen"] = choice.variant.precision if choice.variant else None
    want = "int8" if provider == "cpu" else "fp16"
    if res["variant_chosen"] != want:
        raise CheckFailed(
            f"a node running on {res['providers_used']} would get {res['variant_chosen']}, not {want}", res
        )
    return res


def latency_case(
    bundle: Path,
    provider: str,
    inputs: dict[int, Any],
    ref: dict[int, Any],
    cache: Path,
    fp16: bool,
    min_cos: float,
) -> dict[str, Any]:
    sess = session(bundle, "other", provider, cache, fp16=fp16)
    res = really_ran(sess, provider)
    require_provider(res, provider)
    for bs in inputs:
        res[f"parity_b{bs}"] = compare(ref[bs], run(sess, *inputs[bs]))
        res[f"latency_b{bs}"] = time_it(lambda s=sess, i=inputs[bs]: run(s, *i))
    if res["parity_b32"]["cosine_min"] < min_cos:
        raise CheckFailed(
            f"embedding cosine to the CPU reference {res['parity_b32']['cosine_min']:.5f} < {min_cos}", res
        )
    return res


def update_hot_swap(
    b: dict[str, Path], provider: str, inputs: dict[int, Any], refs: dict[str, Any], work: Path
) -> dict[str, Any]:
    """The edge loader serving the parent, then the adapter-only update on top of it, on ``provider``."""
    from edge.serving.bundle_loader import BundleModelLoader
    from edge.settings import ServeSettings

    chain = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}[provider]
    settings = ServeSettings(providers=chain, model_cache_dir=work / f"model-cache-{provider}")  # type: ignore[arg-type]
    served: list[Path] = []
    loader = BundleModelLoader(settings, parent_of=lambda: served[-1] if served else None)
    parent = loader(b["fp32"])
    served.append(b["fp32"])
    t = time.monotonic()
    updated = loader(b["update"])
    res: dict[str, Any] = {
        "update_load_s": round(time.monotonic() - t, 3),
        "providers_used": list(updated.providers),
        "provider_fallback": updated.extra.get("provider_fallback", ""),
        "provider_ok": next(iter(updated.providers), "") == ORT_NAMES[provider],
        "update_mb": round(sum(p.stat().st_size for p in b["update"].rglob("*") if p.is_file()) / 1e6, 3),
    }
    require_provider(res, provider)
    got = updated.engine(*inputs[32])
    res["parity_b32"] = compare(refs["update"][32], got)
    res["vs_parent_b32"] = compare(parent.engine(*inputs[32]), got)["max_abs_diff"]
    updated.close()
    parent.close()
    if res["parity_b32"]["max_abs_diff"] > PARITY_TOL[provider]:
        raise CheckFailed("the update on this provider differs from the CPU session of the update", res)
    if res["vs_parent_b32"] < 1e-2:
        raise CheckFailed("the update computes the parent's adapters: the new adapters were not bound", res)
    return res


def serving_command(provider: str, seconds: float, out: Path) -> list[str]:
    """``bench_serving.py`` on ``provider``: ort, edge, edge with 2 worker processes, edge with IOBinding."""
    return [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_serving.py"),
        "--provider",
        provider,
        "--servers",
        "ort,edge",
        "--workers",
        "1,2",
        "--io-binding",
        "--concurrency",
        "1,32,256",
        "--duration",
        str(seconds),
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--out",
        str(out),
    ]


def serving_case(provider: str, seconds: float, work: Path) -> dict[str, Any]:
    out = work / f"serving-{provider}.json"
    proc = subprocess.run(
        serving_command(provider, seconds, out),
        capture_output=True,
        text=True,
        timeout=max(240.0, 80 * seconds + 240),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"bench_serving exited {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")
    res = serving_summary(json.loads(out.read_text(encoding="utf-8")))
    if not res["providers_all_as_requested"]:
        raise CheckFailed(f"rows ran on another provider than {provider}: {res['providers_fallback']}", res)
    return res


def serving_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """A bench_serving record as this report's serving step: rows, and each edge variant (1 process;
    2 worker processes; IOBinding on) at its top concurrency against the raw engine."""
    raw = rec["raw_engine"]["throughput_seq_s"]
    rows = {
        f"{k} c={r['concurrency']}": {
            "rps": r["throughput_rps"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
        }
        for k, rs in rec["servers"].items()
        for r in rs
    }
    by_server: dict[str, dict[str, Any]] = {}
    for kind in ("edge", "edge-w2", "edge-iob"):
        rs = {r["concurrency"]: r for r in rec["servers"].get(kind, [])}
        top = rs.get(256) or rs.get(max(rs)) if rs else None
        if top and raw:
            by_server[kind] = {
                "concurrency": top["concurrency"],
                "served_vs_raw": round(top["throughput_rps"] / raw, 3),
                "p99_ms": top["p99_ms"],
            }
    best = max(by_server, key=lambda k: by_server[k]["served_vs_raw"], default=None)
    checks = rec.get("checks", {})
    return {
        "providers_used": rec.get("providers_used"),
        "providers_all_as_requested": bool(checks.get("providers_all_as_requested", False)),
        "providers_fallback": checks.get("providers_fallback"),
        "raw_engine_seq_s": raw,
        "rows": rows,
        "checks": {k: v for k, v in checks.items() if k.startswith(("edge_w", "edge_iob"))},
        "served_vs_raw_by_server": by_server,
        "best_server": best,
        "served_vs_raw_top": by_server[best]["served_vs_raw"] if best else None,
        "edge_top_p99_ms": by_server[best]["p99_ms"] if best else None,
    }


# -- report -------------------------------------------------------------------------------------


def issue_targets(steps: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's "done when" numbers, where this run measured them (GPU providers only)."""
    out: list[dict[str, Any]] = []
    for name, st in steps.items():
        provider = name.split(":", 1)[0]
        if provider not in ("cuda", "tensorrt") or st.get("status") != "ok":
            continue
        if "bound-set parity" in name and st.get("parity_b32"):
            d = st["parity_b32"]["max_abs_diff"]
            out.append(
                {
                    "what": f"{provider}: bound-set parity max |Δ| ≤ 1e-3",
                    "measured": f"{d:.2e}",
                    "met": d <= 1e-3,
                }
            )
        if st.get("fp16_vs_fp32_b32") is not None:
            r = st["fp16_vs_fp32_b32"]
            out.append(
                {"what": f"{provider}: fp16 / fp32 p50 at batch 32 ≤ 0.6", "measured": r, "met": r <= 0.6}
            )
        if st.get("served_vs_raw_top") is not None:
            r, p99 = st["served_vs_raw_top"], st.get("edge_top_p99_ms")
            out.append(
                {
                    "what": f"{provider}: served / raw engine throughput ≥ 0.5, p99 ≤ 20 ms (c=256; best of "
                    f"edge / 2 workers / IOBinding: {st.get('best_server')})",
                    "measured": f"{r} ({p99} ms)",
                    "met": r >= 0.5 and p99 is not None and p99 <= 20,
                }
            )
    return out


def write_report(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    REPORT["wall_s"] = round(time.monotonic() - T0, 1)
    (out / "gpu_check.json").write_text(json.dumps(REPORT, indent=2, default=str), encoding="utf-8")
    lines = ["# GPU check", "", f"started {REPORT['started']}, wall {REPORT['wall_s']} s", ""]
    env = REPORT["steps"].get("environment", {})
    for k in (
        "nvidia_smi",
        "onnxruntime",
        "ort_providers",
        "preload_dlls",
        "tensorrt",
        "torch",
        "torch_cuda",
        "cpus",
    ):
        if k in env:
            lines.append(f"- {k}: {env[k]}")
    lines += [
        "",
        "| step | status | really ran on | parity b32 (max abs / cos min / agree) "
        "| p50 b1 ms | p50 b32 ms | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in REPORT["steps"].items():
        if name == "environment":
            continue
        p = s.get("parity_b32", {})
        par = f"{p['max_abs_diff']:.2e} / {p['cosine_min']:.5f} / {p['route_agreement']:.3f}" if p else ""
        l1 = s.get("latency_b1", {}).get("p50_ms", "")
        l32 = s.get("latency_b32", {}).get("p50_ms", "")
        used = s.get("providers_used")
        ran = ", ".join(used) if isinstance(used, list) else (json.dumps(used) if used else "")
        notes = []
        for key in (
            "variant_chosen",
            "fallback",
            "provider_fallback",
            "vs_default_b32",
            "vs_parent_b32",
            "fp16_vs_fp32_b32",
            "refit_ok",
            "refit_s",
            "update_source",
            "restart_source",
            "restart_load_s",
            "full_build_s",
            "refit_vs_build",
            "served_vs_raw_top",
            "best_server",
            "edge_top_p99_ms",
            "update_load_s",
        ):
            if s.get(key) not in (None, "", []):
                notes.append(f"{key} {s[key]}")
        status = s["status"].upper() if s["status"] in ("failed", "error") else s["status"]
        if s["status"] != "ok":
            status += f": {s.get('reason') or s.get('error', '')}"[:200]
        lines.append(f"| {name} | {status} | {ran} | {par} | {l1} | {l32} | {'; '.join(notes)} |")
    targets = issue_targets(REPORT["steps"])
    REPORT["targets"] = targets
    (out / "gpu_check.json").write_text(json.dumps(REPORT, indent=2, default=str), encoding="utf-8")
    if targets:
        lines += ["", "## Issue 17 targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['what']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |" for t in targets]
    if REPORT.get("dry_run"):
        lines += ["", f"Dry run — {REPORT['dry_run']}."]
    serving = [(n, s) for n, s in REPORT["steps"].items() if s.get("rows")]
    for name, s in serving:
        lines += ["", f"## {name}", "", "| row | req/s | p50 ms | p99 ms |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['rps']} | {v['p50_ms']} | {v['p99_ms']} |" for k, v in s["rows"].items()]
        lines.append(f"| raw engine, batch 32 | {s['raw_engine_seq_s']} seq/s | | |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"report -> {out / 'gpu_check.md'}")


def main(argv: list[str] | None = None) -> int:
    global BUDGET_S
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").split("\n")[2:]),
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument(
        "--providers",
        default=None,
        help="comma list of cpu, cuda, tensorrt (default: all three; with --cpu-dry-run: cpu)",
    )
    ap.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="every step on the CPU in about a minute: --tiny, "
        "--serving-s 0, --providers cpu unless given (tests/export/test_gpu_check.py)",
    )
    ap.add_argument(
        "--install", action="store_true", help="pip install onnxruntime-gpu, tensorrt, cuda-python first"
    )
    ap.add_argument(
        "--real", action="store_true", help="export the real all-MiniLM-L6-v2 instead of a tiny encoder"
    )
    ap.add_argument(
        "--tiny", action="store_true", help="the smallest random encoder (CPU dry runs and tests)"
    )
    ap.add_argument(
        "--serving-s", type=float, default=3.0, help="seconds per serving measurement (0: skip serving)"
    )
    ap.add_argument(
        "--budget-s", type=float, default=480.0, help="stop starting new steps after this many seconds"
    )
    args = ap.parse_args(argv)
    BUDGET_S = args.budget_s
    if args.cpu_dry_run:
        args.tiny, args.serving_s = True, 0.0
        args.providers = args.providers or "cpu"
        REPORT["dry_run"] = "cpu: tiny random encoder, no serving step; GPU numbers need a GPU run"
    providers = [p.strip() for p in (args.providers or "cpu,cuda,tensorrt").split(",") if p.strip()]
    bad = [p for p in providers if p not in ORT_NAMES]
    if bad:
        ap.error(f"unknown provider(s) {bad}; use {sorted(ORT_NAMES)}")
    REPORT["providers_checked"] = providers
    try:
        if args.install:
            step("install", try_install, min_left_s=200)
        REPORT["steps"]["environment"] = {"status": "ok", **env_info(providers)}
        log(f"environment: {REPORT['steps']['environment']}")
        work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        built = step("build bundles", lambda: build_bundles(work, args.real, args.tiny), min_left_s=60)
        if not built:
            return 2
        b = {k: Path(v) for k, v in built.items() if k != "base"}
        inputs = make_inputs(b["fp32"])
        cache = work / "trt-cache"

        def references() -> dict[str, Any]:
            refs: dict[str, Any] = {}
            for key, bundle, set_name in (
                ("fp32_default", "fp32", "default"),
                ("fp32_other", "fp32", "other"),
                ("int8_other", "int8", "other"),
            ):
                sess = session(b[bundle], set_name, "cpu", cache)
                refs[key] = {bs: run(sess, *inputs[bs]) for bs in inputs}
            from contracts.bundle import open_bundle
            from edge.runtime.bundle_session import BundleSession

            upd = BundleSession(
                open_bundle(b["update"], verify=False, parent=open_bundle(b["fp32"], verify=False))
            )
            refs["update"] = {bs: run(upd, *inputs[bs]) for bs in inputs}
            return {"_refs": refs}

        got = step("cpu references", references)
        if not got:
            return 2
        refs = got["_refs"]
        import onnxruntime as ort

        for p in providers:
            if ORT_NAMES[p] not in ort.get_available_providers():
                # still run: ORT falls back to the CPU, and the check must say so (this is what hid it before)
                log(
                    f"{ORT_NAMES[p]} is not in this onnxruntime build "
                    f"({ort.get_available_providers()}); its steps will fail"
                )
            step(
                f"{p}: bound-set parity (fp32, set 'other')",
                lambda p=p: bound_set_parity(b, p, inputs, refs, cache),
            )
            f32 = step(
                f"{p}: fp32 latency",
                lambda p=p: latency_case(b["fp32"], p, inputs, refs["fp32_other"], cache, False, 0.9999),
            )
            f16 = step(
                f"{p}: fp16",
                lambda p=p: latency_case(b["fp16"], p, inputs, refs["fp32_other"], cache, True, 0.999),
            )
            if f32 and f16:
                ratio = round(f16["latency_b32"]["p50_ms"] / f32["latency_b32"]["p50_ms"], 3)
                REPORT["steps"][f"{p}: fp16"]["fp16_vs_fp32_b32"] = ratio
            step(
                f"{p}: int8 bundle",
                lambda p=p: latency_case(b["int8"], p, inputs, refs["int8_other"], cache, False, 0.999),
            )
            step(f"{p}: adapter-only update hot swap", lambda p=p: update_hot_swap(b, p, inputs, refs, work))
            step(f"{p}: precision variant for this node", lambda p=p: variant_choice(b, p, cache))
            if p == "tensorrt":
                step(
                    "tensorrt: native engine + refit",
                    lambda: trt_case(b["fp16"], inputs, refs["fp32_default"], refs["fp32_other"]),
                    min_left_s=60,
                )
                step(
                    "tensorrt: edge loader serves set 'other' on the native engine (refit)",
                    lambda: trt_loader_other_set(b["fp16"], inputs, refs["fp32_other"], work),
                    min_left_s=60,
                )
                step(
                    "tensorrt: engine cache — adapter-only update refitted vs a full build",
                    lambda: trt_cache_update(b, inputs, work),
                    min_left_s=120,
                )
            if args.serving_s > 0:
                step(f"{p}: serving", lambda p=p: serving_case(p, args.serving_s, work), min_left_s=120)
        bad_steps = [n for n, s in REPORT["steps"].items() if s["status"] in ("failed", "error")]
        REPORT["failed_steps"] = bad_steps
        return 1 if bad_steps else 0
    finally:
        write_report(args.out)


if __name__ == "__main__":
    sys.exit(main())
