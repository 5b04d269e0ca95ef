"""Precision variants from one checkpoint (issue 17 item 7): the exporter writes ``V+<precision>``
bundles that name ``V``; a real registry (SQLite, blob store) accepts them beside ``V`` and lists
the family; each variant carries its own parity numbers and runs in ONNX Runtime on the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.api.container import CloudServices
from contracts.bundle import open_bundle
from edge.runtime.bundle_session import smoke_test
from export.errors import ExportError
from export.pipeline import export_checkpoint
from tests.cloud.controller.conftest import make_settings


@pytest.fixture
def services(tmp_path: Path) -> Iterator[CloudServices]:
    svc = CloudServices.build(make_settings(tmp_path))
    yield svc
    svc.close()


def test_fp16_variant_of_the_fp32_export_registers_beside_it(
    tiny_ckpt: Path, fp32_bundle: Path, tmp_path: Path, services: CloudServices
) -> None:
    fp16 = export_checkpoint(
        tiny_ckpt, tmp_path / "fp16", precision="fp16", version="ignored", variant_of="1.2.3"
    )
    b = open_bundle(fp16)
    m = b.manifest
    assert m.version == "1.2.3+fp16" and m.variant is not None
    assert m.variant.of == "1.2.3" and m.variant.runs_on == ["cuda", "tensorrt"]
    assert m.provenance.checkpoint_sha256 == open_bundle(fp32_bundle).manifest.provenance.checkpoint_sha256
    assert m.metrics.parity["fp16_vs_fp32"]["cosine_p1"] >= 0.999  # its own numbers, measured on the CPU EP
    assert smoke_test(b, "other")["providers"] == ["CPUExecutionProvider"]

    reg = services.registry
    reg.register_dir(fp32_bundle, actor="t")
    reg.register_dir(fp16, actor="t")
    fam = reg.get_version("autoglm-router", "1.2.3").variants
    assert [(v.precision, v.version) for v in fam] == [("fp32", "1.2.3"), ("fp16", "1.2.3+fp16")]
    assert reg.get_version("autoglm-router", "1.2.3+fp16").variant_of == "1.2.3"


def test_variant_of_a_version_with_build_metadata_is_refused(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="without build metadata"):
        export_checkpoint(tiny_ckpt, tmp_path / "x", precision="fp16", variant_of="1.2.3+int8")


def test_cli_exports_a_version_and_its_variants(
    tiny_ckpt: Path, tmp_path: Path, services: CloudServices
) -> None:
    from typer.testing import CliRunner

    from autoglm.cli import app

    out = tmp_path / "family"
    res = CliRunner().invoke(
        app,
        ["export", str(tiny_ckpt), "--out", str(out), "--variants", "fp32,fp16", "--version", "2.0.0", "-q"],
    )
    assert res.exit_code == 0, res.output
    assert (
        open_bundle(out / "fp32").manifest.version == "2.0.0"
        and open_bundle(out / "fp32").manifest.variant is None
    )
    assert open_bundle(out / "fp16").manifest.version == "2.0.0+fp16"
    for p in ("fp32", "fp16"):
        services.registry.register_dir(out / p, actor="t")
    assert [v.version for v in services.registry.get_version("autoglm-router", "2.0.0").variants] == [
        "2.0.0",
        "2.0.0+fp16",
    ]
    bad = CliRunner().invoke(
        app, ["export", str(tiny_ckpt), "--out", str(tmp_path / "x"), "--variants", "fp32,fp8"]
    )
    assert bad.exit_code == 2 and "fp8" in bad.output


def test_an_edge_downloads_and_runs_a_variant_over_http(
    tiny_ckpt: Path, fp32_bundle: Path, tmp_path: Path
) -> None:
    """``1.2.3+int8`` through the real cloud API and the edge's registry downloader ('+' in the URL)."""
    import httpx

    from contracts.bundle import pack_bundle
    from edge.control.cache import ModelCache
    from edge.control.downloader import RegistryDownloader
    from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer

    int8 = export_checkpoint(
        tiny_ckpt, tmp_path / "int8", precision="int8", variant_of="1.2.3", allow_degraded=True
    )
    svc = CloudServices.build(make_settings(tmp_path / "cloud"))
    try:
        with LiveServer(svc) as live:
            with live.client() as admin:
                for b in (fp32_bundle, int8):
                    r = admin.post(
                        "/api/v1/bundles", content=pack_bundle(b, tmp_path / f"{b.name}.tar.gz").read_bytes()
                    )
                    assert r.status_code == 201, r.text
                fam = admin.get("/api/v1/models/autoglm-router/versions/1.2.3").json()["variants"]
            assert [(v["precision"], v["runs_on"]) for v in fam] == [
                ("fp32", ["cpu", "cuda", "tensorrt"]),
                ("int8", ["cpu"]),
            ]
            token = httpx.post(
                f"{live.url}/api/v1/nodes/register",
                json={"node_id": "cpu-edge"},
                headers={"Authorization": f"Bearer {BOOTSTRAP}"},
            ).json()["token"]
            dl = RegistryDownloader.connect(live.url, token, ModelCache(tmp_path / "cache"))
            try:
                vdir = dl.fetch_version("autoglm-router", "1.2.3+int8", fam[1]["manifest_sha256"])
            finally:
                dl.close()
        bundle = open_bundle(vdir, verify=True)
        assert bundle.manifest.version == "1.2.3+int8" and bundle.manifest.precision == "int8"
        assert smoke_test(bundle, "other")["binding"] == "external"
    finally:
        svc.close()
