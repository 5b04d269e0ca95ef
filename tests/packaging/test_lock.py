"""The dependency lock is current: every requirement of pyproject.toml's `all` extra is pinned (with
hashes) in requirements/lock.txt and satisfied by its pin, and docker/constraints.txt holds exactly
the lock's pins. A dependency added to pyproject.toml without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", re.M)


def _lock() -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall((ROOT / "requirements/lock.txt").read_text())}


def _requirements(extra: str, project: dict, seen: set[str]) -> list[Requirement]:
    if extra in seen:
        return []
    seen.add(extra)
    out: list[Requirement] = []
    for spec in project["optional-dependencies"][extra]:
        req = Requirement(spec)
        if canonicalize_name(req.name) == canonicalize_name(project["name"]):
            for sub in req.extras:
                out += _requirements(sub, project, seen)
        else:
            out.append(req)
    return out


def test_every_requirement_of_all_is_pinned_and_satisfied() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = _lock()
    reqs = [Requirement(s) for s in project["dependencies"]] + _requirements("all", project, set())
    problems = []
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = lock.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: not in requirements/lock.txt")
        elif not req.specifier.contains(Version(pinned), prereleases=True):
            problems.append(f"{req.name}: lock pins {pinned}, pyproject wants {req.specifier}")
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_every_pin_has_a_hash_and_torch_is_the_cpu_build() -> None:
    text = (ROOT / "requirements/lock.txt").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text)
    for block in blocks:
        m = PIN.match(block)
        if m:
            assert "--hash=sha256:" in block, f"{m.group(1)} has no hash"
    assert _lock()["torch"].endswith("+cpu")


def test_docker_constraints_are_the_lock_pins() -> None:
    constraints = {
        canonicalize_name(n): v for n, v in PIN.findall((ROOT / "docker/constraints.txt").read_text())
    }
    assert constraints == _lock(), "docker/constraints.txt drifted from the lock: run `make lock`"
