"""The one place domain errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from contracts.errors import AutoGLMError
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.api")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AutoGLMError)
    async def _domain_error(request: Request, exc: AutoGLMError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed", extra={"path": request.url.path, "error": exc.message})
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)
