"""The manifests agree with the real applications: ports and probe paths (``contracts.defaults``),
every environment variable a manifest sets is a declared setting and parses, the broker runs the
project's own Mosquitto configuration, alert rules use metrics the code defines, runbook links
resolve, the commands the containers run exist."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts import defaults
from tests.manifests.kube import (
    KUBEEDGE,
    ROOT,
    containers,
    declared_env_names,
    env_settings,
    env_values,
    find,
    find_prefixed,
    overlay,
    render,
    settings_classes,
    undeclared,
)

RENDERED = ("dev", "prod", "gpu", "canary")


def _port(c: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in c["ports"] if p["name"] == name))


def _probe_path(c: dict[str, Any], probe: str) -> str:
    return str(c[probe]["httpGet"]["path"])


# --------------------------------------------------------------------------- ports and probes


@pytest.mark.parametrize("name", RENDERED)
def test_cloud_ports_and_probes_match_contracts(name: str) -> None:
    objs = overlay(name)
    deps = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("autoglm-cloud")
    ]
    assert deps
    for dep in deps:
        c = next(c for c in containers(dep) if c["name"] == "controller")
        assert _port(c, "http") == defaults.CLOUD_HTTP_PORT
        assert _probe_path(c, "livenessProbe") == defaults.CLOUD_LIVE_PATH
        assert _probe_path(c, "startupProbe") == defaults.CLOUD_LIVE_PATH
        assert _probe_path(c, "readinessProbe") == defaults.CLOUD_READY_PATH
        env = env_values(objs, dep, "controller")
        assert int(env["AUTOGLM_CLOUD_HTTP_PORT"]) == defaults.CLOUD_HTTP_PORT
        # The controller reaches the broker's TLS listener through its Service, as user autoglm-cloud.
        assert int(env["AUTOGLM_CLOUD_MQTT_PORT"]) == _broker_listener_port()
        assert env["AUTOGLM_CLOUD_MQTT_HOST"] == "autoglm-mqtt.autoglm.svc.cluster.local"
        assert env["AUTOGLM_CLOUD_SYNC_MQTT_TLS"] == "true"
        assert env["AUTOGLM_CLOUD_SYNC_MQTT_USERNAME"] in _acl_full_tree_users()
        ca = env["AUTOGLM_CLOUD_SYNC_MQTT_TLS_CA_FILE"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert any(ca.startswith(m.rstrip("/") + "/") for m in mounts), f"{ca} is not mounted"
    svc = find(objs, "Service", "autoglm-cloud")
    assert [p["port"] for p in svc["spec"]["ports"]] == [defaults.CLOUD_HTTP_PORT]


@pytest.mark.parametrize("name", RENDERED)
def test_edge_ports_probes_and_broker_address_match_contracts(name: str) -> None:
    objs = overlay(name)
    agents = [o for o in objs if o["kind"] == "DaemonSet"]
    assert agents
    for ds in agents:
        c = next(c for c in containers(ds) if c["name"] == "agent")
        assert _port(c, "http") == defaults.EDGE_HTTP_PORT
        assert _probe_path(c, "livenessProbe") == defaults.EDGE_LIVE_PATH
        assert _probe_path(c, "startupProbe") == defaults.EDGE_LIVE_PATH
        assert _probe_path(c, "readinessProbe") == defaults.EDGE_READY_PATH
        env = env_values(objs, ds, "agent")
        assert int(env["AUTOGLM_EDGE_HTTP_PORT"]) == defaults.EDGE_HTTP_PORT
        # The node's EventBus broker: tcp://127.0.0.1:1883 on the host network.
        assert env["AUTOGLM_EDGE_MQTT_HOST"] == "127.0.0.1"
        assert int(env["AUTOGLM_EDGE_MQTT_PORT"]) == defaults.MQTT_PORT
        assert ds["spec"]["template"]["spec"]["hostNetwork"] is True


def _mosquitto_conf() -> str:
    return (ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")


def _broker_listener_port() -> int:
    """The port of the production configuration's listener that is not bound to loopback."""
    ports = [
        int(m.group(1))
        for m in re.finditer(r"^listener\s+(\d+)(?:\s+(\S+))?\s*$", _mosquitto_conf(), re.M)
        if m.group(2) in (None, "0.0.0.0", "::")
    ]
    assert len(ports) == 1, f"expected one external listener in config/mosquitto/mosquitto.conf, got {ports}"
    return ports[0]


def _acl_full_tree_users() -> set[str]:
    acl = (ROOT / "config" / "mosquitto" / "acl").read_text(encoding="utf-8")
    users: set[str] = set()
    for block in re.split(r"^user\s+", acl, flags=re.M)[1:]:
        name, *lines = block.splitlines()
        if any(re.match(r"topic\s+readwrite\s+autoglm/#", ln.strip()) for ln in lines):
            users.add(name.strip())
    return users


@pytest.mark.parametrize("name", RENDERED)
def test_broker_ports_match_its_configuration(name: str) -> None:
    objs = overlay(name)
    sts = find(objs, "StatefulSet", "autoglm-mqtt")
    port = _broker_listener_port()
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in c["ports"]] == [port]
    assert c["livenessProbe"]["tcpSocket"]["port"] in {port, *[p["name"] for p in c["ports"]]}
    for svc in ("autoglm-mqtt", "autoglm-mqtt-headless"):
        assert [p["port"] for p in find(objs, "Service", svc)["spec"]["ports"]] == [port]


def test_metrics_are_scraped_on_the_contract_path() -> None:
    objs = overlay("prod")
    sm = find(objs, "ServiceMonitor", "autoglm-cloud")
    pm = find(objs, "PodMonitor", "autoglm-edge")
    assert {e["path"] for e in sm["spec"]["endpoints"]} == {defaults.METRICS_PATH}
    assert {e["path"] for e in pm["spec"]["podMetricsEndpoints"]} == {defaults.METRICS_PATH}
    # The named ports they scrape exist on the Service / the agent container.
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {
        p["name"] for p in find(objs, "Service", "autoglm-cloud")["spec"]["ports"]
    }
    agent = next(c for c in containers(find(objs, "DaemonSet", "autoglm-edge")) if c["name"] == "agent")
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= {p["name"] for p in agent["ports"]}


# --------------------------------------------------------------------------- settings drift


def test_settings_registry_is_found() -> None:
    classes = settings_classes()
    prefixes = {str(c.model_config.get("env_prefix")) for c in classes}
    assert {"AUTOGLM_CLOUD_", "AUTOGLM_EDGE_"} <= prefixes, prefixes


@pytest.mark.parametrize("name", RENDERED)
def test_every_variable_the_manifests_set_is_a_declared_setting(name: str) -> None:
    objs = overlay(name)
    found = env_settings(objs)
    assert found, "no AUTOGLM_* variable found: the walker is broken"
    drift = undeclared(found, set(declared_env_names()))
    assert not drift, "manifests set variables no settings class declares:\n" + "\n".join(
        f"  {k} (set in {sorted(v)})" for k, v in sorted(drift.items())
    )


def test_env_files_are_the_single_source_and_declared() -> None:
    """The generator inputs themselves (base/config/*.env, overlay env files) only hold settings."""
    declared = set(declared_env_names())
    files = [
        *sorted((KUBEEDGE / "base" / "config").glob("*.env")),
        *sorted((KUBEEDGE / "overlays").rglob("*.env")),
    ]
    assert len(files) >= 2
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                key = line.split("=", 1)[0]
                assert key in declared, f"{f.relative_to(ROOT)}: {key} is not a declared setting"


def test_drift_check_fails_on_an_undeclared_variable() -> None:
    objs = overlay("dev")
    ds = find(objs, "DaemonSet", "autoglm-edge")
    agent = next(c for c in containers(ds) if c["name"] == "agent")
    agent["env"].append({"name": "AUTOGLM_EDGE_NO_SUCH_SETTING", "value": "1"})
    cm = find_prefixed(objs, "ConfigMap", "autoglm-cloud-config")
    cm["data"]["AUTOGLM_CLOUD_TYPO_PORT"] = "1"
    drift = undeclared(env_settings(objs), set(declared_env_names()))
    assert set(drift) == {"AUTOGLM_EDGE_NO_SUCH_SETTING", "AUTOGLM_CLOUD_TYPO_PORT"}


@pytest.mark.parametrize(
    ("name", "kind", "workload", "container", "prefix"),
    [
        ("dev", "Deployment", "autoglm-cloud", "controller", "AUTOGLM_CLOUD_"),
        ("dev", "DaemonSet", "autoglm-edge", "agent", "AUTOGLM_EDGE_"),
        ("gpu", "DaemonSet", "autoglm-edge-gpu", "agent", "AUTOGLM_EDGE_"),
    ],
)
def test_the_values_parse_in_the_settings_classes(
    name: str, kind: str, workload: str, container: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each settings class of the side builds from exactly the environment the container gets."""
    objs = overlay(name)
    env = env_values(objs, find(objs, kind, workload), container)
    monkeypatch.delenv("AUTOGLM_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    classes = [c for c in settings_classes() if c.model_config.get("env_prefix") == prefix]
    assert classes
    declared_here = {k for c in classes for k in c.env_names()}
    for cls in classes:
        settings = cls()
        for env_name, field in cls.env_names().items():
            if env_name in env and env_name in declared_here:
                assert getattr(settings, field) is not None, f"{env_name} did not parse"


# --------------------------------------------------------------------------- broker configuration


def test_broker_runs_the_projects_mosquitto_configuration() -> None:
    """The ConfigMap the broker mounts holds exactly config/mosquitto/* of this repository."""
    source = ROOT / "config" / "mosquitto"
    if not source.is_dir():
        pytest.fail("config/mosquitto/ (the project's production Mosquitto configuration) is missing")
    objs = overlay("prod")
    cm = find_prefixed(objs, "ConfigMap", "autoglm-mqtt-config")
    data = {
        **cm.get("data", {}),
        **{k: base64.b64decode(v).decode() for k, v in cm.get("binaryData", {}).items()},
    }
    for key, content in data.items():
        assert (source / key).is_file(), f"ConfigMap key {key} has no file in config/mosquitto/"
        assert content == (source / key).read_text(encoding="utf-8"), (
            f"{key} differs from config/mosquitto/{key}"
        )
    # Every file the configuration names is projected into the pod at exactly that path, and the
    # persistence directory is the volume claim.
    conf = data["mosquitto.conf"]
    sts = find(objs, "StatefulSet", "autoglm-mqtt")
    spec = sts["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert (
        c["command"][-1] == "/etc/mosquitto/mosquitto.conf" or "/etc/mosquitto/mosquitto.conf" in c["command"]
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    provided: set[str] = set()
    for m in c["volumeMounts"]:
        for src in volumes.get(m["name"], {}).get("projected", {}).get("sources", []):
            for kind in ("configMap", "secret"):
                provided |= {
                    f"{m['mountPath']}/{item['path']}" for item in src.get(kind, {}).get("items", [])
                }
    files = re.findall(r"^\s*(?:acl_file|password_file|certfile|keyfile|cafile)\s+(\S+)", conf, re.M)
    assert files
    for path in [*files, "/etc/mosquitto/mosquitto.conf"]:
        assert path in provided, f"{path} (named by mosquitto.conf) is not provided in the pod"
    [persistence] = re.findall(r"^\s*persistence_location\s+(\S+)", conf, re.M)
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert {m["name"]: m["mountPath"].rstrip("/") for m in c["volumeMounts"]}[claim] == persistence.rstrip(
        "/"
    )


# --------------------------------------------------------------------------- alerts and runbooks


def _defined_metric_names() -> set[str]:
    names: set[str] = set()
    for pkg in ("cloud", "edge"):
        for path in (ROOT / pkg).rglob("*.py"):
            names |= set(
                re.findall(r"[\"'](autoglm_(?:cloud|edge)_[a-z0-9_]+)[\"']", path.read_text(encoding="utf-8"))
            )
    return names


def _base_metric(name: str) -> str:
    return re.sub(r"_(bucket|sum|count|total|created)$", "", name)


def test_alert_rules_use_metrics_the_applications_define() -> None:
    rule = find(overlay("prod"), "PrometheusRule", "autoglm")
    used = {
        m
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        for m in re.findall(r"\b(autoglm_(?:cloud|edge)_[a-z0-9_]+)", str(r["expr"]))
    }
    assert used
    defined = {_base_metric(n) for n in _defined_metric_names()}
    unknown = sorted(m for m in used if _base_metric(m) not in defined)
    assert not unknown, f"alert rules use metrics no module defines: {unknown} (defined: {sorted(defined)})"


def _metric_labels() -> dict[str, set[str]]:
    """Metric name -> label names, from the prometheus_client constructors in cloud/ and edge/."""
    found: dict[str, set[str]] = {}
    ctor = re.compile(
        r"(?:Counter|Gauge|Histogram|Summary)\(\s*[\"'](autoglm_\w+)[\"']\s*,\s*(?:[\"'][^\"']*[\"']\s*)+,"
        r"\s*\[([^\]]*)\]",
        re.S,
    )
    for pkg in ("cloud", "edge"):
        for path in (ROOT / pkg).rglob("*.py"):
            for name, labels in ctor.findall(path.read_text(encoding="utf-8")):
                found[_base_metric(name)] = set(re.findall(r"[\"'](\w+)[\"']", labels))
    return found


def test_alert_selectors_use_labels_the_metrics_have() -> None:
    rule = find(overlay("prod"), "PrometheusRule", "autoglm")
    labels = _metric_labels()
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            for name, selector in re.findall(
                r"\b(autoglm_(?:cloud|edge)_[a-z0-9_]+)\{([^}]*)\}", str(r["expr"])
            ):
                used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
                known = labels.get(_base_metric(name))
                assert known is not None, f"{name}: constructor not found"
                assert used <= known, (
                    f"{r.get('alert') or r.get('record')}: {name} has no label {used - known}"
                )


def test_required_alerts_exist_with_runbooks_that_resolve() -> None:
    rule = find(overlay("prod"), "PrometheusRule", "autoglm")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    restart = alerts["AutoGLMEdgeAgentRestarting"]
    assert "[5m]" in restart["expr"] and restart["expr"].rstrip().endswith("> 2")
    text = " ".join(alerts)
    for needed in ("LatencyP99", "ErrorRate", "FallbackRate"):
        assert needed in text, f"no {needed} alert"
    deploy = (ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+\s+(.+)$", deploy, re.M)
    }
    for name, r in alerts.items():
        url = r["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("docs/DEPLOY.md"), url
        assert url.split("#")[1] in anchors, (
            f"{name}: runbook anchor {url.split('#')[1]} not in docs/DEPLOY.md"
        )


# --------------------------------------------------------------------------- commands and GitOps


@pytest.mark.parametrize(
    ("kind", "name", "container"),
    [
        ("Deployment", "autoglm-cloud", "controller"),
        ("DaemonSet", "autoglm-edge", "agent"),
        ("Job", "autoglm-loop-worker", "worker"),
    ],
)
def test_container_commands_exist_in_the_cli(kind: str, name: str, container: str) -> None:
    from autoglm.cli import app

    c = next(c for c in containers(find(overlay("prod"), kind, name)) if c["name"] == container)
    result = CliRunner().invoke(app, [*c["args"], "--help"])
    assert result.exit_code == 0, f"autoglm {' '.join(c['args'])} --help failed:\n{result.output}"


def test_argocd_application_points_at_a_rendering_overlay() -> None:
    app = find(render(KUBEEDGE / "argocd"), "Application", "open-autoglm-edge")
    path = ROOT / app["spec"]["source"]["path"]
    assert (path / "kustomization.yaml").is_file()
    assert render(path), f"{path} renders nothing"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
