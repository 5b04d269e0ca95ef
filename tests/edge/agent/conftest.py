"""tests/edge is not a package (its tests import as top-level modules), so the repository root
— needed for ``tests.cloud.controller.conftest`` / ``tests.support`` — is put on sys.path here
when pytest is started as a script rather than with ``python -m pytest``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# fixtures shared with the sync tests (real Mosquitto, edge/cloud sync factories, hub + two nodes)
from tests.support.mosquitto import mosquitto_broker  # noqa: E402
from tests.sync.conftest import make_cloud, make_edge, two_nodes  # noqa: E402

__all__ = ["make_cloud", "make_edge", "mosquitto_broker", "two_nodes"]
