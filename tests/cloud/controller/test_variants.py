"""Hardware-aware precision variants (issue 17 item 7).

A version carries precision variants (``1.1.0``, ``1.1.0+int8``, ``1.1.0+fp16``: one checkpoint);
a rollout sends each node the variant its hardware runs best, or the one its label pins; the
analysis compares latency variant by variant; a rollback sends each node the stable version's
variant for it.

The fleet is real ``EdgeSync`` agents over a real Mosquitto, driven through the real HTTP API of a
running controller. There is no GPU here: a GPU node is **simulated by its heartbeat** — it reports
``providers: [CUDAExecutionProvider, CPUExecutionProvider]`` as a real edge on a CUDA build does
(``edge.control.heartbeat.ServingHeartbeat`` sends the session's real ``get_providers()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.schemas import NodeSample
from cloud.registry.schemas import VariantOut
from cloud.rollout.analysis import analyze
from cloud.rollout.schemas import AnalysisConfig, Verdict
from cloud.rollout.variants import VARIANT_LABEL, choose_variant
from contracts.errors import BundleError
from contracts.manifest import PRECISION_RUNS_ON, Manifest, VariantRef, variant_version
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer, make_settings
from tests.cloud.controller.fleetsim import Behaviour, MqttEdge
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.support.wait import wait_for

CPU = ["CPUExecutionProvider"]
GPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_variant(root: Path, of: str, precision: str, *, encoder_seed: int = 0) -> Path:
    """A contract-valid ``{of}+{precision}`` bundle exported (as far as the registry can tell) from
    the same checkpoint as ``make_bundle(version=of)``."""
    version = variant_version(of, precision)
    make_bundle(root, version=version, encoder_seed=encoder_seed + 100)
    man = Manifest.from_yaml((root / "manifest.yaml").read_bytes())
    man.precision = precision  # type: ignore[assignment]
    man.graphs["encoder"].precision = precision  # type: ignore[assignment]
    man.provenance.checkpoint_sha256 = _sha(b"ckpt" + of.encode())  # make_bundle's checkpoint of `of`
    man.variant = VariantRef(of=of, runs_on=list(PRECISION_RUNS_ON[precision]))  # type: ignore[arg-type]
    (root / "manifest.yaml").write_text(Manifest.model_validate(man.model_dump()).to_yaml(), encoding="utf-8")
    return root


def register_family(svc: CloudServices, root: Path, version: str, seed: int) -> None:
    svc.registry.register_dir(make_bundle(root / version, version=version, encoder_seed=seed), actor="t")
    for p in ("int8", "fp16"):
        svc.registry.register_dir(
            make_variant(root / f"{version}+{p}", version, p, encoder_seed=seed), actor="t"
        )


# -- the choice, the analysis and the registry checks (no network) -------------------------------

FAMILY = [
    VariantOut(
        precision="fp32", version="1.1.0", manifest_sha256="a" * 64, runs_on=["cpu", "cuda", "tensorrt"]
    ),
    VariantOut(
        precision="fp16", version="1.1.0+fp16", manifest_sha256="b" * 64, runs_on=["cuda", "tensorrt"]
    ),
    VariantOut(precision="int8", version="1.1.0+int8", manifest_sha256="c" * 64, runs_on=["cpu"]),
]


@pytest.mark.parametrize(
    ("metrics", "labels", "want"),
    [
        ({"providers": CPU}, {}, "1.1.0+int8"),
        ({"providers": GPU}, {}, "1.1.0+fp16"),
        ({"providers": ["TensorrtExecutionProvider", *GPU]}, {}, "1.1.0+fp16"),
        # CUDA installed but the session fell back to the CPU: what really runs decides
        ({"providers": CPU, "providers_available": GPU}, {}, "1.1.0+int8"),
        ({"providers_available": GPU}, {}, "1.1.0+fp16"),  # nothing served yet
        ({}, {}, "1.1.0"),  # nothing reported: the version itself
        ({"providers": GPU}, {VARIANT_LABEL: "fp32"}, "1.1.0"),  # the label pins
        ({"providers": CPU}, {VARIANT_LABEL: "fp16"}, "1.1.0+fp16"),
    ],
)
def test_choose_variant(metrics: dict[str, Any], labels: dict[str, str], want: str) -> None:
    choice = choose_variant(FAMILY, FAMILY[0], metrics, labels)
    assert choice.variant is not None and choice.variant.version == want, choice.reason


def test_a_pin_the_version_lacks_is_refused_with_the_reason() -> None:
    choice = choose_variant(FAMILY, FAMILY[0], {"providers": CPU}, {VARIANT_LABEL: "int4"})
    assert choice.variant is None and "int4" in choice.reason and "fp16, fp32, int8" in choice.reason


def test_analysis_compares_p99_like_with_like() -> None:
    """Canary mostly on CPU nodes (int8, ~30 ms), stable mostly on GPU nodes (fp16, ~2 ms): the
    pooled p99 would fail the canary for its hardware mix; per variant it is within bounds."""
    precision = {"1.1.0+int8": "int8", "1.1.0+fp16": "fp16", "1.0.0+int8": "int8", "1.0.0+fp16": "fp16"}

    def sample(v: str, req: int, p99: float) -> NodeSample:
        return NodeSample(ts=0.0, version=v, requests=req, error_rate=0.0, p99_ms=p99, fallback_rate=0.0)

    canary = [sample("1.1.0+int8", 300, 31.0), sample("1.1.0+fp16", 100, 2.2)]
    stable = [sample("1.0.0+int8", 100, 29.0), sample("1.0.0+fp16", 300, 2.0)]
    cfg = AnalysisConfig(min_requests=50)
    assert analyze(canary, stable, cfg).verdict == Verdict.FAIL  # pooled: 23.8 ms vs 8.8 ms
    res = analyze(canary, stable, cfg, variant=precision.get)
    assert res.verdict == Verdict.PASS, res.reason
    assert res.canary["int8.p99_ms"] == 31.0 and res.stable["fp16.p99_ms"] == 2.0
    slow = [sample("1.1.0+int8", 300, 31.0), sample("1.1.0+fp16", 100, 12.0)]
    res = analyze(slow, stable, cfg, variant=precision.get)
    assert res.verdict == Verdict.FAIL and "canary fp16 p99 12.0 ms" in res.reason


def test_registry_checks_variants(sqlite_services: CloudServices, tmp_path: Path) -> None:
    reg = sqlite_services.registry
    with pytest.raises(BundleError, match=r"variant of 2\.0\.0, which is not registered"):
        reg.register_dir(make_variant(tmp_path / "early", "2.0.0", "int8"), actor="t")
    register_family(sqlite_services, tmp_path, "2.0.0", 1)
    v = reg.get_version("tiny", "2.0.0")
    assert [(x.precision, x.version, x.runs_on) for x in v.variants] == [
        ("fp32", "2.0.0", ["cpu", "cuda", "tensorrt"]),
        ("fp16", "2.0.0+fp16", ["cuda", "tensorrt"]),
        ("int8", "2.0.0+int8", ["cpu"]),
    ]
    var = reg.get_version("tiny", "2.0.0+int8")
    assert var.variant_of == "2.0.0" and var.precision == "int8" and var.variants == []
    assert reg.get_model("tiny").latest_version == "2.0.0"  # not one of its variants
    # another checkpoint's export cannot pose as a variant
    reg.register_dir(make_bundle(tmp_path / "3.0.0", version="3.0.0"), actor="t")
    other = make_variant(tmp_path / "3.0.0+fp16", "3.0.0", "fp16")
    man = Manifest.from_yaml((other / "manifest.yaml").read_bytes())
    man.provenance.checkpoint_sha256 = _sha(b"another checkpoint")
    (other / "manifest.yaml").write_text(man.to_yaml(), encoding="utf-8")
    with pytest.raises(BundleError, match="variants are exports of one checkpoint"):
        reg.register_dir(other, actor="t")


def test_manifest_variant_version_must_match(tmp_path: Path) -> None:
    good = Manifest.from_yaml((make_variant(tmp_path / "v", "1.0.0", "int8") / "manifest.yaml").read_bytes())
    assert good.version == "1.0.0+int8" and good.variant is not None and good.variant.runs_on == ["cpu"]
    with pytest.raises(ValueError, match=r"must have version '1\.0\.0\+int8'"):
        Manifest.model_validate({**good.model_dump(), "version": "1.0.0+fp16"})
    assert (
        "variant:"
        not in Manifest.from_yaml((make_bundle(tmp_path / "plain") / "manifest.yaml").read_bytes()).to_yaml()
    )


def test_console_and_cli_rows_show_the_variant() -> None:
    from datetime import UTC, datetime

    from cloud.fleet.schemas import NodeOut
    from cloud.ui.routes import _node_row

    node = NodeOut(
        node_id="gpu-0",
        labels={},
        online=True,
        drained=False,
        current_version="1.1.0+fp16",
        desired_version="1.1.0+fp16",
        last_seen=datetime.now(UTC),
        last_error="",
        registered_via="mqtt",
        metrics={"variant": "fp16", "providers": GPU, "device": "NVIDIA H100 (sm 9.0)"},
    )
    row = _node_row(node)
    assert (row["variant"], row["provider"], row["device"]) == ("fp16", "CUDA", "NVIDIA H100 (sm 9.0)")


# -- a rollout over a real broker ---------------------------------------------------------------

pytestmark_mqtt = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")


class HardwareEdge(MqttEdge):
    """The simulated edge plus what a real one's heartbeat says about its hardware."""

    def __init__(self, *args: Any, providers: list[str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.providers = providers

    def _heartbeat(self) -> dict[str, Any]:
        doc = super()._heartbeat()
        precision = doc["model_version"].partition("+")[2] or "fp32"
        device = "cpu" if self.providers == CPU else "NVIDIA H100 (sm 9.0), simulated by the heartbeat"
        return {
            **doc,
            "providers": self.providers,
            "providers_available": self.providers,
            "variant": precision,
            "device": device,
        }


NODES = {  # node -> (providers, labels)
    "cpu-0": (CPU, {"site": "sz"}),
    "cpu-1": (CPU, {"site": "sz"}),
    "gpu-0": (GPU, {"site": "sz"}),
    "gpu-pinned": (GPU, {"site": "sz", VARIANT_LABEL: "fp32"}),
}


@pytest.fixture
def variant_world(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, HardwareEdge]]]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto binary not installed")
    broker = MosquittoBroker(tmp_path / "broker").start()
    settings = make_settings(
        tmp_path,
        mqtt_enabled=True,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        rollout_tick_s=0.1,
        heartbeat_timeout_s=3.0,
        fleet_flush_interval_s=0.5,
    )
    svc = CloudServices.build(settings)
    register_family(svc, tmp_path / "bundles", "1.0.0", 0)
    register_family(svc, tmp_path / "bundles", "1.1.0", 1)
    register_family(svc, tmp_path / "bundles", "1.2.0", 2)
    svc.registry.set_alias("tiny", "stable", "1.0.0", actor="t", reason="initial")
    behaviours = {
        "1.0.0": Behaviour(p99_ms=30.0),
        "1.0.0+int8": Behaviour(p99_ms=12.0),
        "1.0.0+fp16": Behaviour(p99_ms=2.0),
        "1.1.0": Behaviour(p99_ms=30.0),
        "1.1.0+int8": Behaviour(p99_ms=12.0),
        "1.1.0+fp16": Behaviour(p99_ms=2.0),
        "1.2.0": Behaviour(p99_ms=30.0),
        "1.2.0+int8": Behaviour(p99_ms=12.0),
        "1.2.0+fp16": Behaviour(error_rate=0.5),  # the fp16 export of 1.2.0 is broken on GPUs
    }
    edges: dict[str, HardwareEdge] = {}
    with LiveServer(svc, run_loops=True) as server:
        try:
            for nid, (providers, labels) in NODES.items():
                r = httpx.post(
                    f"{server.url}/api/v1/nodes/register",
                    json={"node_id": nid, "labels": labels},
                    headers={"Authorization": f"Bearer {BOOTSTRAP}"},
                )
                assert r.status_code == 201, r.text
                edges[nid] = HardwareEdge(
                    nid,
                    broker.host,
                    broker.port,
                    tmp_path / "edges",
                    behaviours,
                    "1.0.0",
                    providers=providers,
                )
                edges[nid].start()
            wait_for(lambda: len(svc.fleet.list_nodes(online=True)) == len(NODES), what="all edges online")
            # online can come from the MQTT status message before the first heartbeat
            # (its providers) is stored
            wait_for(
                lambda: all(svc.fleet.get(n).metrics.get("providers") for n in NODES),
                what="every edge's heartbeat with its providers stored",
            )
            yield server, edges
        finally:
            for e in edges.values():
                e.stop()
            broker.stop()
    svc.close()


def _rollout(c: httpx.Client, version: str, steps: list[int]) -> dict[str, Any]:
    body = {
        "model": "tiny",
        "version": version,
        "steps": steps,
        "pause_s": 0.6,
        "analysis": {"min_requests": 30},
    }
    r = c.post("/api/v1/rollouts", json=body)
    assert r.status_code == 201, r.text
    rid = int(r.json()["id"])

    def done() -> dict[str, Any] | None:
        out = c.get(f"/api/v1/rollouts/{rid}").json()
        return out if out["state"] in {"succeeded", "aborted", "paused"} else None

    return dict(wait_for(done, 40.0, f"rollout {rid} to finish"))


@pytestmark_mqtt
def test_rollout_sends_each_node_its_variant(
    variant_world: tuple[LiveServer, dict[str, HardwareEdge]],
) -> None:
    server, edges = variant_world
    want = {"cpu-0": "1.1.0+int8", "cpu-1": "1.1.0+int8", "gpu-0": "1.1.0+fp16", "gpu-pinned": "1.1.0"}
    with server.client() as c:
        out = _rollout(c, "1.1.0", [50, 100])
        assert out["state"] == "succeeded", out["events"][-1]
        assert out["node_variants"] == want
        assert {n: e.version for n, e in edges.items()} == want
        assert sorted(out["applied"]) == sorted(want)
        # the analysis compared p99 per variant (CPU int8 12 ms vs GPU fp16 2 ms never pooled)
        analysis = next(e["details"]["analysis"] for e in out["events"] if e["details"].get("analysis"))
        assert any(k.endswith(".requests") for k in analysis["canary"]), analysis
        assert c.get("/api/v1/models/tiny").json()["aliases"]["stable"] == "1.1.0"
        # the fleet view shows which variant each node runs, and on what
        wait_for(
            lambda: (
                {n["node_id"]: n["metrics"].get("variant") for n in c.get("/api/v1/nodes").json()}
                == {"cpu-0": "int8", "cpu-1": "int8", "gpu-0": "fp16", "gpu-pinned": "fp32"}
            ),
            what="variants shown",
        )

        # 1.2.0's fp16 variant fails on the GPU node: the rollout aborts and every node goes back to
        # the stable version's variant for its hardware.
        out = _rollout(c, "1.2.0", [100])
        assert out["state"] == "aborted" and "error rate" in out["events"][-1]["reason"], out["events"][-1]
        assert out["node_variants"]["gpu-0"] == "1.2.0+fp16"
        wait_for(
            lambda: {n: e.version for n, e in edges.items()} == want, what="rollback to 1.1.0's variants"
        )
        assert edges["gpu-0"].applied[-2:] == ["1.2.0+fp16", "1.1.0+fp16"]
