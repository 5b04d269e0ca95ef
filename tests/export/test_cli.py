"""`autoglm export` and `autoglm bundle` through the real CLI app."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, " ".join(result.output.split())  # rich may wrap long lines


def test_export_missing_checkpoint(tmp_path: Path) -> None:
    code, out = _run("export", tmp_path / "nope", "--out", tmp_path / "b", "-q")
    assert code == 2 and "no such checkpoint directory" in out
    assert not (tmp_path / "b").exists()


def test_export_foreign_checkpoint(tmp_path: Path, tiny_ckpt: Path) -> None:
    """A Hugging Face model directory is not a checkpoint; a checkpoint of another format neither."""
    base = tiny_ckpt.parent / "base"
    code, out = _run("export", base, "--out", tmp_path / "b", "-q")
    assert code == 2 and "not a checkpoint (no checkpoint.yaml)" in out
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_ckpt, foreign)
    text = (foreign / "checkpoint.yaml").read_text().replace("format: 1", "format: 9")
    (foreign / "checkpoint.yaml").write_text(text)
    code, out = _run("export", foreign, "--out", tmp_path / "b", "-q")
    assert code == 2 and "unsupported checkpoint format 9" in out
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_export_bad_arguments(tmp_path: Path, tiny_ckpt: Path) -> None:
    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "b", "--precision", "int4", "-q")
    assert code == 2 and "precision 'int4'" in out
    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "b", "--version", "1.0", "-q")
    assert code == 2 and "semantic version" in out
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "full", "-q")
    assert code == 2 and "not empty" in out


def test_signed_export_and_verify(tmp_path: Path, tiny_ckpt: Path) -> None:
    code, out = _run("bundle", "keygen", "--out", tmp_path / "keys")
    assert code == 0, out
    key, pub = tmp_path / "keys/bundle_signing.key", tmp_path / "keys/bundle_signing.pub"
    code, out = _run(
        "export",
        tiny_ckpt,
        "--out",
        tmp_path / "b",
        "--sign-key",
        key,
        "--archive",
        "--version",
        "3.0.0",
        "-q",
    )
    assert code == 0, out
    assert (tmp_path / "b/manifest.sig").is_file() and (tmp_path / "b.tar").is_file()
    code, out = _run("bundle", "verify", tmp_path / "b", "--public-key", pub)
    assert code == 0, out
    assert "signature ok" in out and "smoke inference ok: adapter set 'other'" in out
    code, out = _run("bundle", "verify", tmp_path / "b.tar", "--public-key", pub)
    assert code == 0 and "autoglm-router@3.0.0" in out

    # another key: bad signature
    _run("bundle", "keygen", "--out", tmp_path / "k2")
    code, out = _run("bundle", "verify", tmp_path / "b", "--public-key", tmp_path / "k2/bundle_signing.pub")
    assert code == 1 and "bad signature" in out


@pytest.mark.parametrize("tamper", ["modify", "truncate", "delete"])
def test_verify_catches_tampering(tmp_path: Path, fp32_bundle: Path, tamper: str) -> None:
    copy = tmp_path / "b"
    shutil.copytree(fp32_bundle, copy)
    graph = copy / "encoder.fp32.onnx"
    if tamper == "modify":
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0x01
        graph.write_bytes(bytes(data))
        expect = "sha256 mismatch"
    elif tamper == "truncate":
        graph.write_bytes(graph.read_bytes()[:1000])
        expect = "is truncated"
    else:
        graph.unlink()
        expect = "missing file 'encoder.fp32.onnx'"
    code, out = _run("bundle", "verify", copy)
    assert code == 1 and expect in out and "encoder.fp32.onnx" in out


def test_verify_unknown_schema(tmp_path: Path, fp32_bundle: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(fp32_bundle, copy)
    m = copy / "manifest.yaml"
    m.write_text(m.read_text().replace("schema_version: 1", "schema_version: 2"))
    code, out = _run("bundle", "verify", copy)
    assert code == 1 and "unknown schema_version 2" in out


def test_verify_graph_that_onnxruntime_cannot_load(tmp_path: Path, fp32_bundle: Path) -> None:
    """Hashes can be right and the graph still broken (re-hashed garbage): the load step catches it."""
    import yaml

    from contracts.bundle import sha256_file

    copy = tmp_path / "b"
    shutil.copytree(fp32_bundle, copy)
    graph = copy / "encoder.fp32.onnx"
    graph.write_bytes(b"not an onnx graph")
    data = yaml.safe_load((copy / "manifest.yaml").read_text())
    sha = sha256_file(graph)
    data["files"]["encoder.fp32.onnx"] = {"sha256": sha, "size": graph.stat().st_size}
    data["graphs"]["encoder"]["sha256"] = sha
    (copy / "manifest.yaml").write_text(yaml.safe_dump(data))
    code, out = _run("bundle", "verify", copy)
    assert code == 1 and "ONNX Runtime cannot load" in out
