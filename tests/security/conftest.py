"""Fixtures shared with the edge serving tests (exported tiny bundles, real uvicorn servers) and the
sync tests (real Mosquitto, EdgeSync nodes, a CloudSync hub, a hub with two nodes)."""

from tests.edge.conftest import bundles, start_server  # noqa: F401  (re-exported fixtures)
from tests.support.mosquitto import mosquitto_broker  # noqa: F401  (real Mosquitto on a free port)
from tests.sync.conftest import make_cloud, make_edge, two_nodes  # noqa: F401  (nodes, hub, hub + 2 nodes)
