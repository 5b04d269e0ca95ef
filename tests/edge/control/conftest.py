"""Fixtures of the edge control-plane tests: a real cloud controller (uvicorn on a free port,
SQLite) with really exported tiny bundles registered, and a node token for it.

The bundles come from ``tests/edge/conftest.py`` (``bundles``: v1 1.0.0, update 1.1.0 =
adapter-only update of v1, v2 2.0.0); ``broken_bundle`` is a v2 copy re-versioned 3.0.0 whose
encoder graph is garbage with *correct* hashes — the registry accepts it (it checks the
contract, not the graph), an edge cannot load it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # tests/edge is not a package: make ``tests.*`` importable
    sys.path.insert(0, str(ROOT))

from cloud.api.container import CloudServices  # noqa: E402
from cloud.fleet.channel import RecordingChannel  # noqa: E402
from tests.cloud.controller.conftest import LiveServer, make_settings  # noqa: E402
from tests.edge.conftest import Bundles  # noqa: E402
from tests.edge.control.helpers import Cloud, make_broken_bundle, make_overlong_bundle  # noqa: E402


@pytest.fixture(scope="session")
def broken_bundle(bundles: Bundles) -> Path:
    return make_broken_bundle(bundles.v2, bundles.root / "broken-3.0.0", "3.0.0")


@pytest.fixture(scope="session")
def overlong_bundle(bundles: Bundles) -> Path:
    """4.0.0: loads and serves short texts, fails on texts longer than the encoder's positions."""
    return make_overlong_bundle(bundles.v2, bundles.root / "overlong-4.0.0", "4.0.0")


@pytest.fixture
def cloud(tmp_path: Path, bundles: Bundles, broken_bundle: Path) -> Iterator[Cloud]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    for b in (bundles.v1, bundles.update, bundles.v2, broken_bundle):
        svc.registry.register_dir(b, actor="test")
    with LiveServer(svc) as server:
        yield Cloud(server, svc)
    svc.close()
