"""Semantic version parsing and ordering (MAJOR.MINOR.PATCH[-pre][+build])."""

from __future__ import annotations

import re
from typing import NamedTuple

from contracts.errors import BadRequest

_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


class SemVer(NamedTuple):
    major: int
    minor: int
    patch: int
    prerelease: str

    def sort_key(self) -> tuple[int, int, int, int, str]:
        # A release sorts after its pre-releases.
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, self.prerelease)


def parse_semver(text: str) -> SemVer:
    m = _RE.match(text.strip())
    if not m:
        raise BadRequest(f"version {text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    return SemVer(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4) or "")


def is_semver(text: str) -> bool:
    return bool(_RE.match(text.strip()))
