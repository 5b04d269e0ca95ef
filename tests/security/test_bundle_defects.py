"""D4 / D5: truncated archives and a garbage tokenizer.json give one clear message, never a
traceback or a 500 (cloud upload and ``autoglm bundle verify``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from autoglm.cli import app
from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from contracts.bundle import pack_bundle
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import ADMIN, LiveServer, make_settings

runner = CliRunner()


def _truncated(tmp_path: Path, suffix: str) -> Path:
    bundle = make_bundle(tmp_path / "b", version="1.0.0")
    archive = pack_bundle(bundle, tmp_path / f"bundle{suffix}")
    data = archive.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return cut


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    try:
        with LiveServer(svc) as server:
            yield server
    finally:
        svc.close()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_d4_truncated_upload_is_a_400_with_a_reason(live: LiveServer, tmp_path: Path, suffix: str) -> None:
    cut = _truncated(tmp_path, suffix)
    r = httpx.post(
        live.url + "/api/v1/bundles",
        content=cut.read_bytes(),
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert "truncated" in r.json()["error"]
    garbage = httpx.post(
        live.url + "/api/v1/bundles",
        content=b"\x1f\x8b\x08\x00garbage" * 100,
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=60,
    )
    assert garbage.status_code == 400 and garbage.json()["code"] == "bad_request"
    with live.client() as admin:
        assert admin.get("/api/v1/models").json() == []  # nothing half-registered


def _verify(*args: object) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["bundle", "verify", *[str(a) for a in args]], env={"COLUMNS": "300"})
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_d5_verify_truncated_archive_prints_one_line(tmp_path: Path, suffix: str) -> None:
    code, lines = _verify(_truncated(tmp_path, suffix))
    assert code == 1 and len(lines) == 1, lines
    assert "truncated" in lines[0] and "Traceback" not in lines[0] and lines[0] != "Aborted!"


def test_d5_verify_garbage_tokenizer_prints_one_line(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", version="1.0.0")
    tok = bundle / "tokenizer.json"
    tok.write_bytes(b"{ this is not a tokenizer")
    manifest = yaml.safe_load((bundle / "manifest.yaml").read_text())
    manifest["files"]["tokenizer.json"] = {
        "sha256": hashlib.sha256(tok.read_bytes()).hexdigest(),
        "size": tok.stat().st_size,
    }
    (bundle / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    code, lines = _verify(bundle)
    assert code == 1, lines
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and "not a valid tokenizer.json" in errors[0], lines
    assert not any("Traceback" in line for line in lines)
