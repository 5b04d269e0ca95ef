"""Issue 14 "insecure defaults": the shipped KubeEdge manifests (hostNetwork, 0.0.0.0) set neither
the edge admin token nor a bundle public key. Every rendered overlay must give each edge agent its
admin token from a Secret and the fleet's bundle public key from a ConfigMap, both required (a pod
without them does not start), never turn on ``http_insecure_dev``, and give the controller the same
public key. The edge's own default (admin routes 403 without a token) is
test_edge_defects.py::test_admin_routes_need_a_token_by_default."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.kube import Obj, containers, env_values, overlay

RENDERED = ("dev", "prod", "gpu", "canary")


def _env(c: Obj) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def _required_ref(entry: dict[str, Any] | None, kind: str) -> bool:
    ref = (entry or {}).get("valueFrom", {}).get(kind)
    return bool(ref) and ref.get("optional") is not True


@pytest.mark.parametrize("name", RENDERED)
def test_edge_agents_get_a_required_admin_token_and_the_fleet_public_key(name: str) -> None:
    objs = overlay(name)
    agents = [o for o in objs if o["kind"] == "DaemonSet"]
    assert agents
    for ds in agents:
        agent = next(c for c in containers(ds) if c["name"] == "agent")
        env = _env(agent)
        ident = f"{name}/{ds['metadata']['name']}"
        assert _required_ref(env.get("AUTOGLM_EDGE_HTTP_ADMIN_TOKEN"), "secretKeyRef"), ident
        assert _required_ref(env.get("AUTOGLM_EDGE_BUNDLE_PUBLIC_KEY"), "configMapKeyRef"), ident
        insecure = env_values(objs, ds, "agent").get("AUTOGLM_EDGE_HTTP_INSECURE_DEV", "false")
        assert insecure.lower() in ("false", "0", ""), f"{ident}: http_insecure_dev is on"


@pytest.mark.parametrize("name", RENDERED)
def test_controllers_verify_bundle_signatures(name: str) -> None:
    controllers = [
        o
        for o in overlay(name)
        if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("autoglm-cloud")
    ]
    assert controllers
    for dep in controllers:
        c = next(c for c in containers(dep) if c["name"] == "controller")
        entry = _env(c).get("AUTOGLM_CLOUD_BUNDLE_PUBLIC_KEY")
        assert _required_ref(entry, "configMapKeyRef") or _required_ref(entry, "secretKeyRef"), dep[
            "metadata"
        ]["name"]
