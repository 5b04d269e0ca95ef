"""Logging: human-readable lines on a terminal, one JSON object per record in containers.

The format is ``AUTOGLM_LOG_FORMAT`` (``json`` or ``console``) when set, else ``console`` when
stderr is a terminal and ``json`` when it is not (a container, a pipe, a log shipper). JSON records
carry an ISO-8601 UTC timestamp, the level, the logger, the message and the context fields
(node id, model version, request id).

Named loggers per package (``autoglm.edge.batcher``, ``autoglm.cloud.rollout`` …). Context
fields are attached with ``log_context(...)`` (a contextvar, so concurrent requests do not mix)
or per call through ``extra={...}``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "autoglm_log_ctx", default=None
)
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
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
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


class ConsoleFormatter(logging.Formatter):
    """``12:00:01.234 INFO  autoglm.edge.batcher: message  key=value`` (local time, context fields last)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        fields = {**(_CONTEXT.get() or {})}
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                fields[key] = value
        extra = "  " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else ""
        line = f"{stamp} {record.levelname:<5} {record.name}: {record.getMessage()}{extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


LOG_FORMAT_ENV = "AUTOGLM_LOG_FORMAT"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_name(level: str, where: str = "log level") -> str:
    """A valid level name (case-insensitive) or a one-line error naming ``where`` (a flag or variable)."""
    name = str(level).strip().upper()
    if name not in LEVELS:
        from contracts.settings import ConfigError

        raise ConfigError(f"{where}={level!r}: not a log level; choose one of {', '.join(LEVELS)}")
    return name


def json_wanted(stream: object = None) -> bool:
    """JSON unless ``AUTOGLM_LOG_FORMAT=console`` or (unset) stderr is a terminal."""
    fmt = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    if fmt in ("json", "console"):
        return fmt == "json"
    if fmt:
        from contracts.settings import ConfigError

        raise ConfigError(f"{LOG_FORMAT_ENV}={fmt!r}: choose json or console")
    isatty = getattr(stream or sys.stderr, "isatty", None)
    return not (isatty is not None and isatty())


def configure_logging(level: str = "INFO", json_format: bool | None = None) -> None:
    """Install one handler on the ``autoglm`` root logger (idempotent); ``json_format=None``:
    decided by :func:`json_wanted`."""
    root = logging.getLogger("autoglm")
    root.setLevel(level_name(level))
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    use_json = json_wanted(sys.stderr) if json_format is None else json_format
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root.addHandler(handler)
    root.propagate = False


def monotonic_ms() -> float:
    return time.perf_counter() * 1000.0
