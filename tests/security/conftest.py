"""Fixtures shared with the edge serving tests (exported tiny bundles, real uvicorn servers)."""

from tests.edge.conftest import bundles, start_server  # noqa: F401  (re-exported fixtures)
