"""HTTP client of the cloud tool service with timeout, retries with full jitter and a circuit
breaker.

``await client.route_and_call(text, route=None)`` posts to ``/api/v1/tools/route``. Every
attempt is recorded (``attempts``) for the answer's steps. The breaker opens after
``failures`` consecutive failures; while open, calls fail at once with ``Unavailable`` (no
network, well under 50 ms) until ``reset_s`` has passed, then one trial call decides (half-open).
4xx answers are the cloud's verdict on the request, not an outage: they do not count as failures
and are not retried. The whole call is bounded by ``total_budget_s`` — it never hangs.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from contracts.errors import AutoGLMError, BadRequest, GatewayTimeout, NotFound, Unavailable, Unprocessable
from contracts.logging import get_logger

log = get_logger("autoglm.edge.agent.cloud")


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures: int = 3, reset_s: float = 10.0, clock: Any = time.monotonic) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if self._clock() - self._opened_at >= self.reset_s:
            return self.HALF_OPEN
        return self.OPEN

    def allow(self) -> bool:
        with self._lock:
            st = self._state()
            if st == self.CLOSED:
                return True
            if st == self.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._trial_in_flight = False

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            self._trial_in_flight = False
            if self._opened_at is not None or self._consecutive >= self.failures:
                self._opened_at = self._clock()


@dataclass
class CloudResult:
    tool: str
    route: str | None
    result: Any
    attempts: list[dict[str, Any]] = field(default_factory=list)


_CLIENT_ERRORS: dict[int, type[AutoGLMError]] = {400: BadRequest, 404: NotFound, 422: Unprocessable}


class CloudClient:
    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        total_budget_s: float = 5.0,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.total_budget_s = total_budget_s
        self.breaker = breaker or CircuitBreaker()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url or "http://cloud.invalid",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)),
            transport=transport,
        )

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    @property
    def has_token(self) -> bool:
        return "Authorization" in self._client.headers

    def set_token(self, token: str) -> None:
        """Use this bearer token from now on (an edge node hands the agent its own once registered)."""
        self._client.headers["Authorization"] = f"Bearer {token}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def route_and_call(
        self, text: str, route: str | None = None, *, context: str | None = None
    ) -> CloudResult:
        body: dict[str, Any] = {"text": text}
        if route:
            body["route"] = route
        if context:
            body["prompt"] = context  # for a language-model tool behind the cloud; tools read `text`
        return await self._post("/api/v1/tools/route", body)

    async def call(self, tool: str, params: dict[str, Any]) -> CloudResult:
        return await self._post(f"/api/v1/tools/{tool}/call", {"params": params})

    async def _post(self, path: str, body: dict[str, Any]) -> CloudResult:
        attempts: list[dict[str, Any]] = []
        if not self.configured:
            raise Unavailable("no cloud configured (AUTOGLM_EDGE_AGENT_CLOUD_URL)")
        deadline = time.monotonic() + self.total_budget_s
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if not self.breaker.allow():
                err = Unavailable(f"cloud circuit breaker is {self.breaker.state}; not calling {path}")
                err.attempts = attempts  # type: ignore[attr-defined]
                raise err
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            t0 = time.perf_counter()
            try:
                resp = await asyncio.wait_for(
                    self._client.post(path, json=body), timeout=min(self.timeout_s, remaining)
                )
            except (TimeoutError, httpx.HTTPError, OSError) as exc:
                self.breaker.failure()
                last = exc
                attempts.append(
                    {
                        "attempt": attempt + 1,
                        "error": type(exc).__name__,
                        "ms": round((time.perf_counter() - t0) * 1000, 2),
                    }
                )
            else:
                ms = round((time.perf_counter() - t0) * 1000, 2)
                attempts.append({"attempt": attempt + 1, "status": resp.status_code, "ms": ms})
                if resp.status_code < 400:
                    self.breaker.success()
                    doc = resp.json()
                    return CloudResult(doc.get("tool", ""), doc.get("route"), doc.get("result"), attempts)
                message = _error_message(resp)
                if resp.status_code in (401, 403) or (
                    400 <= resp.status_code < 500 and resp.status_code != 429
                ):
                    self.breaker.success()  # the cloud is up; it refused this request
                    err_cls = _CLIENT_ERRORS.get(resp.status_code, BadRequest)
                    err2 = err_cls(f"cloud: {message}")
                    err2.attempts = attempts  # type: ignore[attr-defined]
                    raise err2
                self.breaker.failure()
                last = Unavailable(f"cloud answered {resp.status_code}: {message}")
            if attempt < self.retries:
                pause = random.uniform(0, self.backoff_s * (2**attempt))  # full jitter
                pause = min(pause, max(deadline - time.monotonic(), 0))
                if pause > 0:
                    await asyncio.sleep(pause)
        err3: AutoGLMError = (
            GatewayTimeout if isinstance(last, asyncio.TimeoutError | httpx.TimeoutException) else Unavailable
        )(f"cloud unreachable after {len(attempts)} attempt(s): {last!r}")
        err3.attempts = attempts  # type: ignore[attr-defined]
        raise err3


def _error_message(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
        return str(doc.get("error") or doc.get("detail") or doc)[:300]
    except ValueError:
        return resp.text[:300]


def result_text(result: Any) -> str:
    """A human answer from a tool result (the cloud returns the skills' ``to_dict``)."""
    if isinstance(result, dict):
        if isinstance(result.get("text"), str):
            return str(result["text"])
        if isinstance(result.get("hits"), list) and result["hits"]:
            top = result["hits"][0]
            return f"{top.get('title', '')}: {top.get('snippet', '')}".strip(": ")
        if isinstance(result.get("facts"), list) and result["facts"]:
            f = result["facts"][0]
            facts = "; ".join(f"{k}: {', '.join(v)}" for k, v in (f.get("facts") or {}).items())
            return f"{f.get('name', '')} — {facts}"
        if isinstance(result.get("answer"), str):
            return str(result["answer"])
    return str(result)[:500]
