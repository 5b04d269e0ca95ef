"""Shared contracts: the bottom floor of Open-AutoGLM Edge.

Everything here is imported by ``cloud``, ``edge`` and ``export`` and imports none of them
(enforced by ``tests/test_layering.py``). It holds the wire formats and the few values all
sides must agree on: route labels, the bundle manifest schema, the MQTT envelope, the settings
base, domain errors and structured logging.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
