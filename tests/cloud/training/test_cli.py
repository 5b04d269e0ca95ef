"""`autoglm train` and demo stage 1 on the tiny encoder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from autoglm.cli import app
from autoglm.demo.train_stage import run_stage_train
from cloud.model.checkpoint import read_checkpoint_meta


def test_help_explains_options() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--base",
        "--out",
        "--epochs",
        "--data-train",
        "--data-val",
        "--resume",
        "--seed",
        "--tiny",
    ):
        assert option in result.output


def test_train_command_prints_tables_and_checkpoint(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--base",
            str(tiny_base),
            "--out",
            str(out),
            "--tiny",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--no-progress",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "accuracy EN" in result.output and "accuracy ZH" in result.output
    assert "device_status" in result.output  # per-route table
    assert f"checkpoint: {out.resolve()}" in result.output.replace("\n", "")
    assert read_checkpoint_meta(out).training["finished"]


def test_bad_user_data_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "route": "greet"}\nnot json\n', encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autoglm",
            "train",
            "--tiny",
            "--out",
            str(tmp_path / "o"),
            "--data-train",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 2
    assert "bad.jsonl:2: not valid JSON" in proc.stderr.replace("\n", "")


def test_demo_stage_trains_once_then_reuses(tiny_base: Path, tmp_path: Path) -> None:
    overrides = {"base_path": tiny_base, "tiny": True, "epochs": 1, "num_threads": 1}
    out = tmp_path / "demo"
    c1 = Console(record=True, width=200)
    assert run_stage_train(c1, out_dir=out, progress=False, **overrides) == out
    first = c1.export_text()
    assert "trained in" in first and "accuracy ZH" in first and "checkpoint:" in first
    stamp = (out / "adapters.safetensors").stat().st_mtime_ns
    c2 = Console(record=True, width=200)
    run_stage_train(c2, out_dir=out, progress=False, **overrides)
    assert "reusing the finished checkpoint" in c2.export_text()
    assert (out / "adapters.safetensors").stat().st_mtime_ns == stamp
    c3 = Console(record=True, width=200)
    run_stage_train(c3, out_dir=out, progress=False, **{**overrides, "seed": 1})  # other config: retrains
    assert "trained in" in c3.export_text()
