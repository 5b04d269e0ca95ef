"""End-to-end fixtures: the exported tiny bundles of the edge tests (``bundles``) and the
deliberately bad 3.0.0 (``broken_bundle``: cannot load) and
4.0.0 (``overlong_bundle``: loads, fails on long texts)."""

from tests.edge.conftest import bundles  # noqa: F401  (fixture)
from tests.edge.control.conftest import broken_bundle, overlong_bundle  # noqa: F401  (fixtures)
