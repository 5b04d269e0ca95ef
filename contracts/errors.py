"""Domain errors that carry their HTTP status.

Services raise these; each protocol adapter maps them in exactly one place
(``edge.http.errors`` / ``cloud.api.errors`` install one exception handler; the CLI prints
``str(err)`` and exits non-zero). Handlers never build error responses by hand.
"""

from __future__ import annotations

from typing import ClassVar


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
