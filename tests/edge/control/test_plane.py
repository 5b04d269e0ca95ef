"""The command handler on a real inference service (real ONNX Runtime on exported tiny bundles)
fed by a real controller: apply a version, an adapter-only update, a broken version (fails with
the reason, the node stays on its version), last-known-good after a restart without the cloud,
a weighted traffic split between two loaded versions, and the heartbeat window fields."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from contracts.errors import AutoGLMError, BundleError, NotFound
from contracts.heartbeat import Heartbeat
from edge.agent.routing import ServiceEncoder
from edge.control.cache import ModelCache
from edge.control.downloader import RegistryDownloader
from edge.control.heartbeat import ServingHeartbeat, histogram_quantile
from edge.control.plane import ControlPlane
from edge.control.settings import ControlSettings
from edge.http.server import free_port
from edge.node import EdgeNode, build_service
from tests.edge.conftest import MODEL, settings_for, wait_ready
from tests.edge.control.helpers import Cloud


def command(cloud: Cloud, version: str, **extra: Any) -> dict[str, Any]:
    base = f"/api/v1/models/{MODEL}/versions/{version}"
    return {
        "type": "set_desired_version",
        "model": MODEL,
        "version": version,
        "manifest_sha256": cloud.manifest_sha(version),
        "manifest_url": f"{base}/manifest",
        "files_url": f"{base}/files/",
        "command_id": f"c-{version}",
        **extra,
    }


def _plane(cloud: Cloud, tmp_path: Path, node: str) -> tuple[ControlPlane, Any]:
    settings = settings_for(tmp_path)
    cache = ModelCache(settings.model_cache_dir)
    dl = RegistryDownloader.connect(cloud.url, cloud.node_token(node), cache)
    service = build_service(settings, cache)
    return ControlPlane(service, cache, dl), service


def test_apply_update_broken_version_and_last_known_good(cloud: Cloud, tmp_path: Path) -> None:
    plane, service = _plane(cloud, tmp_path, "edge-plane")

    async def run() -> None:
        await service.start()
        plane.bind(asyncio.get_running_loop())
        try:
            # The MQTT thread's path: handle() blocks until the version serves, returns the ack result.
            out = await asyncio.to_thread(plane.handle, command(cloud, "1.0.0"))
            assert out == {"version": "1.0.0", "model": MODEL, "adapter_set": "default", "detail": "applied"}
            before = (await service.infer(["turn on pump 3"]))[0]
            out = await asyncio.to_thread(plane.handle, command(cloud, "1.1.0"))  # adapter-only update
            assert out["version"] == "1.1.0" and service.active.version == "1.1.0"
            after = (await service.infer(["turn on pump 3"]))[0]
            assert after.model_version == "1.1.0"
            assert not np.allclose(before.route_logits, after.route_logits), "the update's adapters serve"
            # Same version again: acked at once, nothing downloaded.
            out = await asyncio.to_thread(plane.handle, command(cloud, "1.1.0"))
            assert out["detail"] == "already serving"
            # A version whose graph cannot load: the handler raises (=> ok: false + reason),
            # 1.1.0 keeps serving.
            with pytest.raises(BundleError, match="cannot load"):
                await asyncio.to_thread(plane.handle, command(cloud, "3.0.0"))
            assert service.active.version == "1.1.0"
            assert (await service.infer(["still answering?"]))[0].model_version == "1.1.0"
            with pytest.raises(NotFound):
                await asyncio.to_thread(
                    plane.handle, {"type": "set_desired_version", "model": MODEL, "version": "9.9.9"}
                )
            assert plane.handle({"type": "not_mine"}) is None
            assert [(a["version"], a["ok"]) for a in plane.applied] == [
                ("1.0.0", True),
                ("1.1.0", True),
                ("1.1.0", True),
                ("3.0.0", False),
                ("9.9.9", False),
            ]
        finally:
            await service.stop()
            plane.downloader.close()

    asyncio.run(run())
    lkg = plane.cache.read_last_good()
    assert lkg is not None and (lkg.version, lkg.model) == ("1.1.0", MODEL)

    # Restart with the cloud unreachable (registration keeps retrying in the background): the
    # node serves its last good bundle (an update: its parent comes from the cache) with no
    # bundle given.
    settings = settings_for(tmp_path, http_host="127.0.0.1", http_port=free_port())
    down = ControlSettings(
        control_cloud_url=f"http://127.0.0.1:{free_port()}", control_bootstrap_token="boot"
    )
    node = EdgeNode.build(settings, control=down, with_sync=False).start()
    try:
        wait_ready(node.url)
        meta = httpx.get(f"{node.url}/v2/models/{MODEL}").json()
        assert meta["versions"] == ["1.1.0"]
        r = httpx.post(
            f"{node.url}/v2/models/{MODEL}/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]},
        )
        assert r.status_code == 200, r.text
        assert node.control.downloader is None  # still no cloud: nothing needed it
    finally:
        node.stop()


def test_traffic_split_between_two_loaded_versions(cloud: Cloud, tmp_path: Path) -> None:
    plane, service = _plane(cloud, tmp_path, "edge-split")
    hb = ServingHeartbeat(service)

    async def run() -> None:
        await service.start()
        plane.bind(asyncio.get_running_loop())
        try:
            await plane.apply_version(command(cloud, "1.0.0"))
            split = {
                "type": "set_traffic_split",
                "model": MODEL,
                "weights": {"1.0.0": 0.5, "1.1.0": 0.5},
                "manifests": {v: {"manifest_sha256": cloud.manifest_sha(v)} for v in ("1.0.0", "1.1.0")},
            }
            out = await asyncio.to_thread(plane.handle, split)
            assert out["weights"] == {"1.0.0": 0.5, "1.1.0": 0.5}
            results = [
                r for rs in await asyncio.gather(*(service.infer([f"q {i}"]) for i in range(60))) for r in rs
            ]
            seen = [r.model_version for r in results]
            assert set(seen) == {"1.0.0", "1.1.0"}
            # Each result carries the route labels of the slot that computed it, not of the active one.
            slots = {v: service.resolve(version=v) for v in ("1.0.0", "1.1.0")}
            assert all(r.routes == tuple(slots[r.model_version].routes) for r in results)
            encoded = await ServiceEncoder(service).encode(["route me"])
            assert list(encoded[0].probabilities) == list(results[0].routes)
            pinned = [
                (await service.infer(["q"], model=service.resolve(version="1.1.0")))[0].model_version
                for _ in range(5)
            ]
            assert pinned == ["1.1.0"] * 5
            assert hb()["traffic_split"] == {"1.0.0": 0.5, "1.1.0": 0.5}
            with pytest.raises(AutoGLMError, match="one or two versions"):
                await plane.apply_split({**split, "weights": {"1.0.0": 0.2, "1.1.0": 0.3, "2.0.0": 0.5}})
            # A desired version ends the split.
            await plane.apply_version(command(cloud, "1.0.0"))
            assert service.split_weights == {} and service.status()["split"] is None
            after = {(await service.infer([f"z {i}"]))[0].model_version for i in range(10)}
            assert after == {"1.0.0"}
        finally:
            await service.stop()
            plane.downloader.close()

    asyncio.run(run())


def test_heartbeat_window_fields(cloud: Cloud, tmp_path: Path) -> None:
    plane, service = _plane(cloud, tmp_path, "edge-hb")
    hb = ServingHeartbeat(
        service,
        extra=[lambda: {"fallback_rate": 0.25}],
        hardware={"providers_available": ["CPUExecutionProvider"], "device": "cpu"},
    )

    async def run() -> None:
        await service.start()
        plane.bind(asyncio.get_running_loop())
        try:
            await plane.apply_version(command(cloud, "1.0.0"))
            hb()  # the window starts now
            for i in range(20):
                await service.infer([f"text {i}"])
            await service.infer(["text 1"])  # a cache hit
            with pytest.raises(AutoGLMError):
                await service.infer(
                    ["late"], deadline_s=-1.0
                )  # deadline already passed: a server-side timeout
            doc = hb()
            assert doc["model_version"] == "1.0.0" and doc["adapters"] == ["default"]
            assert doc["providers"] == ["CPUExecutionProvider"] and "provider_fallback" not in doc
            assert (doc["variant"], doc["device"], doc["providers_available"]) == (
                "fp32",
                "cpu",
                ["CPUExecutionProvider"],
            )
            assert doc["requests"] == 22
            assert doc["error_rate"] == pytest.approx(1 / 22, abs=1e-3)
            assert 0 < doc["latency_p50_ms"] <= doc["latency_p99_ms"]
            assert doc["cache_hit_rate"] == pytest.approx(1 / 22, abs=1e-3)
            assert doc["fallback_rate"] == 0.25
            assert doc["resources"]["mem_mb"] > 0
            Heartbeat.model_validate({**doc, "node_id": "edge-hb", "ts_ms": 1})
            assert hb()["requests"] == 0  # a new window
        finally:
            await service.stop()
            plane.downloader.close()

    asyncio.run(run())


def test_histogram_quantile() -> None:
    buckets = [(0.001, 0.0), (0.002, 50.0), (0.005, 99.0), (0.01, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.002)
    assert 0.005 < histogram_quantile(0.995, buckets) <= 0.01
    assert histogram_quantile(0.99, []) == 0.0


def test_fleet_key_accepts_signed_and_refuses_unsigned(cloud: Cloud, bundles: Any, tmp_path: Path) -> None:
    """With the fleet public key configured, a version must carry a valid signature: the
    signature travels with the download (manifest.sig) and the load verifies it."""
    import shutil

    from contracts.bundle import generate_keypair, sign_bundle
    from contracts.manifest import Manifest

    key, pub = generate_keypair(tmp_path / "keys")
    signed = shutil.copytree(bundles.v1, tmp_path / "signed")
    man = Manifest.from_yaml((signed / "manifest.yaml").read_bytes())
    (signed / "manifest.yaml").write_text(
        man.model_copy(update={"version": "1.0.1"}).to_yaml(), encoding="utf-8"
    )
    sign_bundle(signed, key)
    cloud.svc.registry.register_dir(signed, actor="test")

    settings = settings_for(tmp_path, bundle_public_key=pub.read_text().strip())
    cache = ModelCache(settings.model_cache_dir)
    service = build_service(settings, cache)
    plane = ControlPlane(
        service, cache, RegistryDownloader.connect(cloud.url, cloud.node_token("edge-key"), cache)
    )

    async def run() -> None:
        await service.start()
        plane.bind(asyncio.get_running_loop())
        try:
            with pytest.raises(BundleError, match="not signed"):
                await plane.apply_version(command(cloud, "1.0.0"))
            assert service.active is None
            out = await plane.apply_version(command(cloud, "1.0.1"))
            assert out["version"] == "1.0.1"
            assert (service.active.source / "manifest.sig").is_file()
        finally:
            await service.stop()
            plane.downloader.close()

    asyncio.run(run())
