"""Limits on request bodies from the network, checked before anything parses them.

* :func:`json_too_deep` — whether a JSON text nests arrays/objects deeper than a limit, found by
  a scan of the raw bytes (strings and escapes respected), never by parsing: parsers recurse
  (Python's ``json`` raises ``RecursionError``, validators and our own walkers recurse too).
  Documents with few brackets take a fast path (two ``bytes.count`` calls).
* :class:`BodyLimitMiddleware` — a plain ASGI middleware for the FastAPI apps of both sides:
  a declared ``Content-Length`` above the limit answers 413 before reading, the body is counted
  while it streams in (413 as soon as it passes the limit), and a JSON body nested deeper than
  the limit answers 400; the app then reads the buffered body as usual. Paths that stream their
  own large bodies (bundle uploads) are excluded by path or prefix.

Errors use the one error body shape ``{"error": "...", "code": "..."}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

DEFAULT_MAX_JSON_DEPTH = 32
_TOKENS = re.compile(rb'["\\\[\]{}]')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_too_deep(data: bytes | bytearray | memoryview, max_depth: int) -> bool:
    """Whether ``data`` (a JSON text) opens more than ``max_depth`` nested arrays/objects.

    Linear in the input and stops at the first level too deep; brackets inside strings do not
    count. Invalid JSON is not detected here (the parser rejects it afterwards)."""
    raw = bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    depth = 0
    in_string = False
    skip = -1
    for m in _TOKENS.finditer(raw):
        pos = m.start()
        if pos == skip:
            continue
        c = raw[pos]
        if in_string:
            if c == 0x5C:  # backslash: the next character is escaped
                skip = pos + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in _OPEN:
            depth += 1
            if depth > max_depth:
                return True
        elif c in _CLOSE:
            depth -= 1
    return False


def error_body(message: str, code: str) -> bytes:
    return json.dumps({"error": message, "code": code}).encode("utf-8")


async def send_error(send: Send, status: int, message: str, code: str) -> None:
    body = error_body(message, code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, counted while it streams in (``BodyTooLarge`` past ``limit``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _content_type(scope: Scope) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower()
    return b""


class BodyLimitMiddleware:
    """Size and JSON-depth limits for every request body an app reads (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        exclude_prefixes: Iterable[str] = (),
        exclude_paths: Iterable[str] = (),
        on_reject: Callable[[Scope, int], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.exclude = tuple(exclude_prefixes)
        self.exclude_paths = frozenset(exclude_paths)
        self.on_reject = on_reject

    async def _reject(self, scope: Scope, send: Send, status: int, message: str, code: str) -> None:
        if self.on_reject is not None:
            self.on_reject(scope, status)
        await send_error(send, status, message, code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or scope["path"] in self.exclude_paths
            or (self.exclude and scope["path"].startswith(self.exclude))
        ):
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_body_bytes:
            await self._reject(
                scope,
                send,
                413,
                f"request body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes",
                "payload_too_large",
            )
            return
        try:
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await self._reject(
                scope,
                send,
                413,
                f"request body exceeds the limit of {self.max_body_bytes} bytes",
                "payload_too_large",
            )
            return
        except ClientDisconnected:
            return
        ctype = _content_type(scope)
        if (not ctype or ctype.endswith(b"json")) and json_too_deep(body, self.max_json_depth):
            await self._reject(
                scope, send, 400, f"JSON body nested deeper than {self.max_json_depth} levels", "bad_request"
            )
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
