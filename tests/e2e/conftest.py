"""End-to-end fixtures: the exported tiny bundles of the edge tests (``bundles``) and the
deliberately broken 3.0.0 (``broken_bundle``)."""

from tests.edge.conftest import bundles  # noqa: F401  (fixture)
from tests.edge.control.conftest import broken_bundle  # noqa: F401  (fixture)
