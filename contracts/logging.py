"""Structured logging: one JSON object per record with node id, model version, request id.

Named loggers per package (``autoglm.edge.batcher``, ``autoglm.cloud.rollout`` …). Context
fields are attached with ``log_context(...)`` (a contextvar, so concurrent requests do not mix)
or per call through ``extra={...}``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("autoglm_log_ctx", default=None)
_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def get_logger(name: str) -> logging.Logger:
    """A named logger under the ``autoglm`` root."""
    return logging.getLogger(name if name.startswith("autoglm") else f"autoglm.{name}")


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields (node_id, model_version, request_id …) to every record in this context."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_CONTEXT.get() or {})
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_format: bool = True) -> None:
    """Install one handler on the ``autoglm`` root logger (idempotent)."""
    root = logging.getLogger("autoglm")
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False


def monotonic_ms() -> float:
    return time.perf_counter() * 1000.0
