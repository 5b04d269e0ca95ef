"""The one place errors become HTTP responses: ``{"error": "...", "code": "..."}``.

Domain errors (``contracts.errors``) carry their status and headers; FastAPI's validation
errors answer 400 in the same shape (``code: bad_request``, the first problems named; the same
mapping as the edge's, ``contracts.errors.request_validation_error``);
anything unexpected is a 500 in the same shape with a generic message (details go to the log).
Unexpected errors are turned into responses inside the metrics middleware
(:func:`unexpected_error_response`), so every 500 is counted in the HTTP metrics.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import AutoGLMError, request_validation_error
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.api")


def error_body(message: str, code: str) -> dict[str, str]:
    return {"error": message, "code": code}


def unexpected_error_response(request: Request, exc: BaseException) -> JSONResponse:
    log.error("unhandled error", extra={"path": request.url.path, "method": request.method}, exc_info=exc)
    return JSONResponse(
        error_body(f"internal error ({type(exc).__name__})", "internal_error"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AutoGLMError)
    async def _domain_error(request: Request, exc: AutoGLMError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed", extra={"path": request.url.path, "error": exc.message[:500]})
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = request_validation_error(exc.errors())
        return JSONResponse(err.to_dict(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(str(exc.detail), code), status_code=exc.status_code, headers=dict(exc.headers or {})
        )
