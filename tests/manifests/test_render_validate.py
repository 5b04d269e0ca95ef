"""Every overlay renders with ``kubectl kustomize``; every rendered core object validates against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors); every custom
resource validates against its required-fields schema in ``schemas/``."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.manifests.kube import (
    KUBEEDGE,
    Obj,
    crd_errors,
    find_prefixed,
    is_core,
    overlay,
    overlay_dirs,
    render,
    workloads,
)

# KubeEdge 1.20/1.21 support Kubernetes 1.30; the newest schemas catch removed/renamed fields early.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
OVERLAYS = overlay_dirs()


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(KUBEEDGE)) for p in paths]


def test_the_required_overlays_exist() -> None:
    names = {p.name for p in OVERLAYS}
    assert {"dev", "prod", "gpu", "canary", "argocd"} <= names


@pytest.mark.parametrize("path", OVERLAYS, ids=_ids(OVERLAYS))
def test_overlay_renders_valid_objects(path: Path) -> None:
    objs = render(path)
    assert objs, f"{path} rendered nothing"
    problems: list[str] = []
    for obj in objs:
        ident = f"{obj['kind']}/{obj['metadata']['name']}"
        if is_core(obj):
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{ident} (k8s {version}): {'/'.join(map(str, e.path))}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    problems.append(f"{ident}: {e.message}")
        else:
            problems += [f"{ident}: {err}" for err in crd_errors(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", OVERLAYS, ids=_ids(OVERLAYS))
def test_names_are_unique_and_namespaced(path: Path) -> None:
    objs = render(path)
    seen: set[tuple[str, str, str]] = set()
    for obj in objs:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace"), f"{key} has no namespace"


@pytest.mark.parametrize("name", ["dev", "prod", "gpu", "canary"])
def test_every_config_reference_resolves_in_the_render(name: str) -> None:
    """ConfigMaps (generated, hash-suffixed) must be found by every workload that uses them; only
    the documented out-of-band Secret may be missing, and only outside dev."""
    objs = overlay(name)
    have = {
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objs
        if o["kind"] in {"ConfigMap", "Secret", "PersistentVolumeClaim", "ServiceAccount"}
    }
    # Provided out of band (docs/DEPLOY.md): the broker's TLS key pair everywhere (no private key in
    # git), the credentials outside dev.
    out_of_band = {("Secret", "autoglm", "autoglm-mqtt-tls")}
    if name != "dev":
        out_of_band |= {
            ("Secret", "autoglm", "autoglm-cloud-secrets"),
            ("Secret", "autoglm", "autoglm-mqtt-passwd"),
        }
        # Issue 14: the edge admin token and the fleet's bundle public key are made per cluster.
        out_of_band |= {
            ("Secret", "autoglm-edge", "autoglm-edge-secrets"),
            ("ConfigMap", "autoglm", "autoglm-fleet-keys"),
            ("ConfigMap", "autoglm-edge", "autoglm-fleet-keys"),
        }
    missing: set[tuple[str, str, str]] = set()
    for w in workloads(objs):
        ns = w["metadata"]["namespace"]
        spec = w["spec"]["template"]["spec"]
        refs: list[tuple[str, str]] = []
        if "serviceAccountName" in spec:
            refs.append(("ServiceAccount", spec["serviceAccountName"]))
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                refs.append(("ConfigMap", vol["configMap"]["name"]))
            if "secret" in vol and not vol["secret"].get("optional"):
                refs.append(("Secret", vol["secret"]["secretName"]))
            if "persistentVolumeClaim" in vol:
                refs.append(("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]))
            for src in vol.get("projected", {}).get("sources", []):
                if "configMap" in src:
                    refs.append(("ConfigMap", src["configMap"]["name"]))
                if "secret" in src:
                    refs.append(("Secret", src["secret"]["name"]))
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    refs.append(("ConfigMap", src["configMapRef"]["name"]))
                if "secretRef" in src:
                    refs.append(("Secret", src["secretRef"]["name"]))
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                    refs.append(("Secret", ref["secretKeyRef"]["name"]))
                if "configMapKeyRef" in ref:
                    refs.append(("ConfigMap", ref["configMapKeyRef"]["name"]))
        missing |= {(k, ns, n) for k, n in refs if (k, ns, n) not in have} - out_of_band
    assert not missing, f"unresolved references: {sorted(missing)}"


def test_dev_secret_has_every_key_the_workloads_read() -> None:
    objs = overlay("dev")
    secret = find_prefixed(objs, "Secret", "autoglm-cloud-secrets")
    for w in workloads(objs):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == secret["metadata"]["name"]:
                    assert ref["key"] in secret["data"], f"{w['metadata']['name']}: no key {ref['key']}"


def test_prod_carries_no_secret_material() -> None:
    for name in ("prod", "gpu", "canary"):
        assert not [o for o in overlay(name) if o["kind"] == "Secret"], f"{name} renders a Secret"


def _bad_objects() -> list[tuple[str, Obj]]:
    model: Obj = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "m", "namespace": "n"},
        "spec": {"properties": [{"name": "status", "type": "STRING", "accessMode": "ReadOnly"}]},
    }
    rule: Obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r", "namespace": "n"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "for": "5 minutes"}]}]},
    }
    unknown: Obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {}}
    return [("protocol", model), ("expr", rule), ("no schema", unknown)]


@pytest.mark.parametrize(("expected", "obj"), _bad_objects(), ids=["devicemodel", "rule", "unknown-kind"])
def test_crd_checker_rejects_broken_objects(expected: str, obj: Obj) -> None:
    errors = crd_errors(obj)
    assert errors and any(expected in e for e in errors), errors


def test_kubernetes_validate_rejects_a_typo_offline() -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "replica": 2,
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSIONS[0], strict=True)
