"""Domain errors that carry their HTTP status.

Services raise these; each protocol adapter maps them in exactly one place
(``edge.http.errors`` / ``cloud.api.errors`` install one exception handler; the CLI prints
``str(err)`` and exits non-zero). Handlers never build error responses by hand.

Status rule, the same in both apps:

* **400** ``bad_request`` -- the request itself is malformed: it does not match the route's
  schema (FastAPI/pydantic request validation, :func:`request_validation_error`), its body is
  not JSON / not gzip / not a readable archive, a parameter is out of range.
* **422** -- the request is well formed but a domain check refuses its content: a bundle that
  fails verification (``BundleError``, ``bad_bundle``), tool parameters that fail the tool's own
  schema or a question no tool can answer (``Unprocessable``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel


class AutoGLMError(Exception):
    """Base of all domain errors. ``status`` is the HTTP status an adapter should answer."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


class BadRequest(AutoGLMError):
    status = 400
    code = "bad_request"


class Unauthorized(AutoGLMError):
    status = 401
    code = "unauthorized"


class Forbidden(AutoGLMError):
    status = 403
    code = "forbidden"


class NotFound(AutoGLMError):
    status = 404
    code = "not_found"


class Conflict(AutoGLMError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AutoGLMError):
    status = 413
    code = "payload_too_large"


class Unprocessable(AutoGLMError):
    status = 422
    code = "unprocessable"


class Overloaded(AutoGLMError):
    """Queue full: answer at once with Retry-After."""

    status = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})
        self.retry_after_s = retry_after_s


class Unavailable(AutoGLMError):
    """No model ready, dependency down, circuit open."""

    status = 503
    code = "unavailable"


class GatewayTimeout(AutoGLMError):
    status = 504
    code = "timeout"


class ConfigError(AutoGLMError):
    """A setting is unusable: the process refuses to start and names the setting."""

    status = 500
    code = "config_error"


class BundleError(AutoGLMError):
    """A bundle failed schema, hash, signature or load checks. Names the problem."""

    status = 422
    code = "bad_bundle"


class DataError(AutoGLMError):
    """User training data is malformed (names file, line and reason)."""

    status = 400
    code = "bad_data"


class ErrorBody(BaseModel):
    """The one error body every HTTP adapter answers with."""

    error: str
    code: str


def request_validation_error(errors: Iterable[Mapping[str, Any]], limit: int = 5) -> BadRequest:
    """The one mapping of a framework's request-validation errors (FastAPI ``exc.errors()``):
    400 ``bad_request`` naming the first ``limit`` problems (``loc: msg``), at most 2,000 characters."""
    problems = []
    for i, e in enumerate(errors):
        if i >= limit:
            break
        loc = ".".join(str(p) for p in e.get("loc", ()))
        problems.append(f"{loc}: {e.get('msg', '')}")
    return BadRequest(f"invalid request: {'; '.join(problems)}"[:2000])


_DESCRIPTIONS = {
    400: "Bad request (fails the route's schema; malformed body, parameter, encoding or archive)",
    401: "Missing or invalid bearer token",
    403: "Valid token of the wrong kind, or a disabled route",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Well-formed request refused by a domain check (bundle verification, tool parameters)",
    429: "Overloaded: retry after Retry-After seconds",
    500: "Internal error",
    503: "Not ready or a dependency is unavailable",
    504: "Deadline exceeded",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries in the one error shape (FastAPI ``responses=``)."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


ERROR_RESPONSES = error_responses(400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 504)
