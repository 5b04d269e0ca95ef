"""scripts/gpu_check.py: ``--help``, and a CPU dry run of every step (the GPU run uses the same code).

No GPU here: asking for CUDA makes ONNX Runtime fall back to the CPU for real (this build has no
CUDA provider), and the check must report that step as failed, naming the fallback — the silent
"ok" on a fallen-back provider is what issue 17 found. Nothing is mocked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def test_help() -> None:
    res = _run("--help", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--providers" in res.stdout and "preload_dlls" in res.stdout and "--serving-s" in res.stdout
    assert "--cpu-dry-run" in res.stdout


def test_unknown_provider_is_one_clear_line() -> None:
    res = _run("--providers", "cpu,rocm", timeout=60)
    assert res.returncode == 2 and "unknown provider(s) ['rocm']" in res.stderr


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA present: no fallback to see"
)
def test_cpu_dry_run_and_cuda_fallback_fails_its_steps(tmp_path: Path) -> None:
    res = _run("--cpu-dry-run", "--providers", "cpu,cuda", "--out", str(tmp_path))
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert "dry_run" in report
    cpu = {k: v for k, v in steps.items() if k.startswith("cpu:")}
    assert len(cpu) == 6 and all(v["status"] == "ok" for v in cpu.values()), json.dumps(cpu)[:2000]
    assert steps["cpu: precision variant for this node"]["variant_chosen"] == "int8"
    parity = steps["cpu: bound-set parity (fp32, set 'other')"]
    assert (
        parity["providers_used"] == ["CPUExecutionProvider"] and parity["parity_b32"]["max_abs_diff"] <= 1e-5
    )
    assert parity["vs_default_b32"] > 1e-2  # the bound set really changed the outputs
    assert steps["cpu: adapter-only update hot swap"]["vs_parent_b32"] > 1e-2
    assert steps["cpu: fp16"]["parity_b32"]["cosine_min"] >= 0.999
    cuda = {k: v for k, v in steps.items() if k.startswith("cuda:")}
    assert cuda and all(v["status"] == "failed" for v in cuda.values()), json.dumps(cuda)[:2000]
    assert (
        "CUDAExecutionProvider did not start" in cuda["cuda: bound-set parity (fp32, set 'other')"]["reason"]
    )
    assert res.returncode == 1 and set(report["failed_steps"]) == set(cuda)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| cpu: bound-set parity (fp32, set 'other') | ok | CPUExecutionProvider |" in md
    assert "FAILED: CUDAExecutionProvider did not start" in md


def _gpu_check_module() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serving_step_runs_the_worker_and_io_binding_rows(tmp_path: Path) -> None:
    """The GPU run's serving step (skipped in the dry run: it needs minutes) asks bench_serving for
    the 2-worker and IOBinding rows at concurrency 256, and reads them from a real record of that
    benchmark (a committed CPU run with those rows) into the report and the issue-17 target row."""
    gc = _gpu_check_module()
    cmd = gc.serving_command("cuda", 3.0, tmp_path / "s.json")
    assert cmd[cmd.index("--workers") + 1] == "1,2" and "--io-binding" in cmd
    assert cmd[cmd.index("--concurrency") + 1].split(",")[-1] == "256"
    assert cmd[cmd.index("--provider") + 1] == "cuda"
    records = sorted((ROOT / "benchmarks" / "results").glob("serving-*.json"))
    rec = next(
        (
            r
            for r in (json.loads(p.read_text())["metrics"] for p in reversed(records))
            if "edge-w2" in r["servers"]
        ),
        None,
    )
    assert rec is not None, "no committed serving record with the edge-w2 / edge-iob rows"
    res = gc.serving_summary(rec)
    assert set(res["served_vs_raw_by_server"]) == {"edge", "edge-w2", "edge-iob"}
    assert res["best_server"] in res["served_vs_raw_by_server"]
    assert any(k.startswith("edge-w2 c=") for k in res["rows"]) and "edge_w2_vs_edge_c32" in res["checks"]
    steps = {"cuda: serving": {"status": "ok", **res}}
    (target,) = gc.issue_targets(steps)
    assert "c=256" in target["what"] and res["best_server"] in target["what"]
