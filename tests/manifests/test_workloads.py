"""The deployment properties the issue asks for hold in the rendered overlays: edge agents pinned to
KubeEdge edge nodes on the host network with a hostPath cache, the cloud controller kept off edge
nodes and scaled by an HPA (CPU 70 %, 2-20) with a PDB, the GPU overlay, the Istio split, the twin
DeviceModel matching what the agent reports."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.kube import Obj, containers, env_values, find, overlay, pod_spec

RENDERED = ("dev", "prod", "gpu", "canary")


def _agents(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] == "DaemonSet"]


@pytest.mark.parametrize("name", RENDERED)
def test_edge_agent_is_pinned_to_edge_nodes_and_tolerates_edge_taints(name: str) -> None:
    for ds in _agents(overlay(name)):
        spec = pod_spec(ds)
        assert spec["nodeSelector"]["node-role.kubernetes.io/edge"] == ""
        tolerated = {
            (t["key"], t.get("effect")) for t in spec["tolerations"] if t.get("operator") == "Exists"
        }
        assert ("node-role.kubernetes.io/edge", "NoSchedule") in tolerated
        # Losing the cloud marks the node unreachable: the agent must not be evicted for that.
        assert ("node.kubernetes.io/unreachable", "NoExecute") in tolerated
        assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"


@pytest.mark.parametrize("name", RENDERED)
def test_edge_state_lives_on_the_host_so_restarts_keep_the_last_good_bundle(name: str) -> None:
    objs = overlay(name)
    for ds in _agents(objs):
        spec = pod_spec(ds)
        host_vols = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
        assert host_vols, "no hostPath volume"
        agent = next(c for c in containers(ds) if c["name"] == "agent")
        mounts = {m["mountPath"]: m["name"] for m in agent["volumeMounts"]}
        env = env_values(objs, ds, "agent")
        required = (
            "AUTOGLM_EDGE_MODEL_CACHE_DIR",
            "AUTOGLM_EDGE_MQTT_OUTBOX_PATH",
            "AUTOGLM_EDGE_AGENT_MEMORY_DB",
        )
        assert set(required) <= set(env)
        for key in (*required, "AUTOGLM_EDGE_BUNDLE_DIR"):
            if key not in env:
                continue
            path = env[key]
            owner = [m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")]
            assert owner and mounts[owner[0]] in host_vols, f"{key}={path} is not on a hostPath volume"


@pytest.mark.parametrize("name", RENDERED)
def test_containers_run_non_root_with_limits(name: str) -> None:
    objs = overlay(name)
    for w in (o for o in objs if o["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}):
        spec = pod_spec(w)
        for c in spec["containers"]:
            ident = f"{w['metadata']['name']}/{c['name']}"
            assert spec["securityContext"]["runAsNonRoot"] is True, ident
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, ident
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], ident
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), ident
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), ident
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (
                f"{ident}: unpinned {image}"
            )


@pytest.mark.parametrize("name", RENDERED)
def test_cloud_controller_stays_off_edge_nodes_and_scales(name: str) -> None:
    objs = overlay(name)
    dep = find(objs, "Deployment", "autoglm-cloud")
    assert dep["spec"]["replicas"] >= 2
    terms = pod_spec(dep)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    # Every term (they are ORed) must exclude edge nodes.
    for term in terms:
        assert {"key": "node-role.kubernetes.io/edge", "operator": "DoesNotExist"} in term["matchExpressions"]
    env = {e["name"]: e for e in next(c for c in containers(dep) if c["name"] == "controller")["env"]}
    for secret_var in ("AUTOGLM_CLOUD_DATABASE_URL", "AUTOGLM_CLOUD_ADMIN_TOKEN"):
        assert "secretKeyRef" in env[secret_var]["valueFrom"], f"{secret_var} must come from a Secret"
    hpa = find(objs, "HorizontalPodAutoscaler", "autoglm-cloud")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "autoglm-cloud",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70
    pdb = find(objs, "PodDisruptionBudget", "autoglm-cloud")
    labels = pod_spec_labels(dep)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"], "the PDB would block every drain"


def pod_spec_labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("name", RENDERED)
def test_selectors_match_their_pods(name: str) -> None:
    objs = overlay(name)
    pods = [pod_spec_labels(o) for o in objs if o["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}]
    for o in objs:
        if o["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}:
            assert o["spec"]["selector"]["matchLabels"].items() <= pod_spec_labels(o).items()
        if o["kind"] == "Service":
            sel = o["spec"]["selector"]
            assert any(sel.items() <= p.items() for p in pods), (
                f"Service {o['metadata']['name']} selects no pod"
            )


def test_broker_keeps_its_data_on_a_volume_claim() -> None:
    sts = find(overlay("prod"), "StatefulSet", "autoglm-mqtt")
    [claim] = sts["spec"]["volumeClaimTemplates"]
    mounts = {
        m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert claim["metadata"]["name"] in mounts


def test_gpu_overlay_runs_the_gpu_image_with_a_gpu_on_gpu_nodes_only() -> None:
    objs = overlay("gpu")
    gpu = find(objs, "DaemonSet", "autoglm-edge-gpu")
    cpu = find(objs, "DaemonSet", "autoglm-edge")
    agent = next(c for c in containers(gpu) if c["name"] == "agent")
    assert agent["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "autoglm-edge-gpu:" in agent["image"]
    assert pod_spec(gpu)["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    cpu_terms = pod_spec(cpu)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"} in cpu_terms["nodeSelectorTerms"][0][
        "matchExpressions"
    ]
    assert (
        "nvidia.com/gpu"
        not in next(c for c in containers(cpu) if c["name"] == "agent")["resources"]["limits"]
    )
    env = env_values(objs, gpu, "agent")
    assert env["AUTOGLM_EDGE_PROVIDERS"].startswith('["tensorrt"'), env["AUTOGLM_EDGE_PROVIDERS"]
    assert env_values(objs, cpu, "agent")["AUTOGLM_EDGE_PROVIDERS"] == '["cpu"]'
    for name in ("dev", "prod", "canary"):
        for ds in _agents(overlay(name)):
            assert all("nvidia.com/gpu" not in c["resources"].get("limits", {}) for c in containers(ds))


def test_istio_overlay_splits_cloud_traffic_80_20_between_real_subsets() -> None:
    objs = overlay("canary")
    vs = find(objs, "VirtualService", "autoglm-cloud")
    dr = find(objs, "DestinationRule", "autoglm-cloud")
    svc = find(objs, "Service", "autoglm-cloud")
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert vs["spec"]["hosts"] == [host] and dr["spec"]["host"] == host
    [route] = vs["spec"]["http"]
    weights = {r["destination"]["subset"]: r["weight"] for r in route["route"]}
    assert weights == {"stable": 80, "canary": 20}
    subsets = {s["name"]: s["labels"] for s in dr["spec"]["subsets"]}
    deployments = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("autoglm-cloud")
    ]
    for subset, labels in subsets.items():
        matching = [d for d in deployments if labels.items() <= pod_spec_labels(d).items()]
        assert len(matching) == 1, f"subset {subset} matches {len(matching)} deployments"
    # Stable and canary Deployments must not select each other's pods.
    stable, canary = (find(objs, "Deployment", n) for n in ("autoglm-cloud", "autoglm-cloud-canary"))
    assert not stable["spec"]["selector"]["matchLabels"].items() <= pod_spec_labels(canary).items()
    assert (
        stable["spec"]["template"]["spec"]["containers"][0]["image"]
        != canary["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert find(objs, "Namespace", "autoglm")["metadata"]["labels"]["istio-injection"] == "enabled"


def _twin_type(annotation: Any) -> str:
    return {int: "INT", float: "FLOAT", bool: "BOOLEAN"}.get(annotation, "STRING")


def test_device_model_matches_what_the_agent_reports_as_twin() -> None:
    """The agent reports every Heartbeat field but node_id as a twin property (edge/sync/twin.py)."""
    from contracts.heartbeat import Heartbeat

    objs = overlay("dev")
    model = find(objs, "DeviceModel", "autoglm-edge-agent")
    props = {p["name"]: p["type"] for p in model["spec"]["properties"]}
    reported = {p["name"]: p["type"] for p in model["spec"]["properties"] if p["accessMode"] == "ReadOnly"}
    expected = {n: _twin_type(f.annotation) for n, f in Heartbeat.model_fields.items() if n != "node_id"}
    assert reported == expected
    # Writable properties are desired values the agent follows, never heartbeat fields.
    assert all(name.startswith("desired_") for name in set(props) - set(reported))
    # The example Device is named after its node, in the namespace the agent reports to.
    ds = find(objs, "DaemonSet", "autoglm-edge")
    env = env_values(objs, ds, "agent")
    devices = [o for o in objs if o["kind"] == "Device"]
    assert devices
    for dev in devices:
        assert dev["metadata"]["name"] == dev["spec"]["nodeName"]
        assert (
            dev["metadata"]["namespace"]
            == env["AUTOGLM_EDGE_MQTT_KUBEEDGE_NAMESPACE"]
            == model["metadata"]["namespace"]
        )
        assert dev["spec"]["deviceModelRef"]["name"] == model["metadata"]["name"]
        assert {p["name"] for p in dev["spec"]["properties"]} == set(props)
    assert env["AUTOGLM_EDGE_MQTT_KUBEEDGE_ENABLED"] == "true"
    assert env["AUTOGLM_EDGE_MQTT_KUBEEDGE_HOST"] == "127.0.0.1"


def test_canary_deployment_is_the_stable_one_but_for_track_replicas_and_image() -> None:
    objs = overlay("canary")
    stable, canary = (find(objs, "Deployment", n) for n in ("autoglm-cloud", "autoglm-cloud-canary"))

    def normalised(dep: Obj) -> str:
        text = repr(
            {k: v for k, v in dep.items() if k != "metadata"} | {"labels": dep["metadata"].get("labels")}
        )
        for a, b in (("canary", "TRACK"), ("stable", "TRACK")):
            text = text.replace(a, b)
        return text.replace(dep["spec"]["template"]["spec"]["containers"][0]["image"], "IMAGE").replace(
            f"'replicas': {dep['spec']['replicas']}", "'replicas': N"
        )

    assert normalised(stable) == normalised(canary)


def test_dev_database_url_points_at_the_dev_postgres_service() -> None:
    from urllib.parse import urlsplit

    objs = overlay("dev")
    env = env_values(objs, find(objs, "Deployment", "autoglm-cloud"), "controller")
    url = urlsplit(env["AUTOGLM_CLOUD_DATABASE_URL"])
    assert url.scheme == "postgresql+psycopg"
    name, namespace = str(url.hostname).split(".")[:2]
    svc = find(objs, "Service", name)
    assert svc["metadata"]["namespace"] == namespace
    assert url.port in {p["port"] for p in svc["spec"]["ports"]}


def test_dev_nodes_register_with_the_controllers_bootstrap_token() -> None:
    objs = overlay("dev")
    cloud = env_values(objs, find(objs, "Deployment", "autoglm-cloud"), "controller")
    edge = env_values(objs, find(objs, "DaemonSet", "autoglm-edge"), "agent")
    assert edge["AUTOGLM_EDGE_CONTROL_BOOTSTRAP_TOKEN"] == cloud["AUTOGLM_CLOUD_BOOTSTRAP_TOKEN"]
    assert edge["AUTOGLM_EDGE_CONTROL_CLOUD_URL"] == edge["AUTOGLM_EDGE_AGENT_CLOUD_URL"]
