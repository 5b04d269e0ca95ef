"""The one place where errors become HTTP responses: ``{"error": "...", "code": "..."}``.

Domain errors (``contracts.errors``) carry their status and headers (429 → ``Retry-After``);
FastAPI/Starlette's own errors (unknown route, validation) are mapped to the same shape;
anything else is a 500 with a generic message (details go to the log, not to the client).
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from contracts.errors import ERROR_RESPONSES, AutoGLMError, request_validation_error
from contracts.logging import get_logger

log = get_logger("autoglm.edge.http")
__all__ = ["ERROR_RESPONSES", "error_response", "exception_response", "install_error_handlers"]


def error_response(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message, "code": code}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def exception_response(exc: BaseException, method: str = "", path: str = "") -> Response:
    """The mapping itself (used by the FastAPI handlers and by the raw ASGI infer path)."""
    if isinstance(exc, RequestValidationError):  # 400, the same mapping as the cloud's
        exc = request_validation_error(exc.errors())
    if isinstance(exc, AutoGLMError):
        if exc.status >= 500:  # 503 (no model yet) is routine during start-up and swaps
            log.log(
                logging.DEBUG if exc.status == 503 else logging.WARNING,
                "%s %s -> %d: %s",
                method,
                path,
                exc.status,
                exc.message,
            )
        return error_response(exc.status, exc.message, exc.code, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        code = "not_found" if exc.status_code == 404 else "http_error"
        return error_response(exc.status_code, str(exc.detail), code, dict(exc.headers or {}))
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__})", "internal_error")


async def handle_exception(request: Request, exc: Exception) -> Response:
    return exception_response(exc, request.method, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    for exc_type in (AutoGLMError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle_exception)
