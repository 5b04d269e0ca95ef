"""The OIP v2 infer route as a raw ASGI handler (the hot path).

``POST /v2/models/{name}[/versions/{version}]/infer`` is answered here without FastAPI's
routing, dependency and middleware layers (they cost more CPU per request than the whole
batching machinery). Errors still go through the one mapping in :mod:`edge.http.errors`.

While a request waits for its batch, the handler also waits for ``http.disconnect``: a client
that goes away cancels its request, and a cancelled request still in the queue is dropped
before its batch is formed, so it costs no forward pass.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import MutableMapping
from typing import Any

from contracts.errors import BadRequest, Overloaded, PayloadTooLarge
from edge.http.errors import exception_response
from edge.http.oip_codec import encode_infer_response, parse_infer_request
from edge.serving.loaded_model import LoadedModel
from edge.serving.service import InferenceResult, InferenceService

PREFIX = "/v2/models/"
SUFFIX = "/infer"
Scope = MutableMapping[str, Any]


def match_infer_path(path: str) -> tuple[str, str | None] | None:
    """``(name, version)`` for an infer path, else ``None``."""
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    parts = path[len(PREFIX) : -len(SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


class ClientGone(Exception):
    """The client disconnected before its result was ready."""


class InferEndpoint:
    """``max_inflight_bytes``: budget of request bytes held at once. Each request reserves its
    declared Content-Length (``max_body_bytes`` when it declares none or is compressed) *before*
    its body is read and keeps it until its answer is sent; a request that does not fit while
    others hold the budget gets 429 at once, so memory stays bounded however many clients send
    large bodies at the same time. The queue is checked before reading too."""

    def __init__(
        self, service: InferenceService, max_body_bytes: int, max_inflight_bytes: int | None = None
    ) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.max_inflight_bytes = max_inflight_bytes if max_inflight_bytes is not None else 4 * max_body_bytes
        self.inflight_bytes = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any, name: str, version: str | None) -> None:
        reserved = 0
        try:
            model = self.service.resolve(name, version)  # 404 / 503 before reading the body; once
            reserved = self._admit(scope, model)
            content, headers = await self._handle(scope, receive, model, version)
        except ClientGone:
            return
        except Exception as exc:
            response = exception_response(exc, "POST", scope.get("path", ""))
            await response(scope, receive, send)
            return
        finally:
            self.inflight_bytes -= reserved
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw_headers.append((b"content-length", str(len(content)).encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})

    def _admit(self, scope: Scope, model: LoadedModel) -> int:
        """Before reading the body: 413 for a declared size over the limit, 429 when the queue is
        full or the in-flight byte budget is spent. Returns the bytes reserved."""
        declared: int | None = None
        encoded = False
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit():
                declared = int(value)
            elif key == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                encoded = True
        if declared is not None and declared > self.max_body_bytes:
            raise PayloadTooLarge(
                f"request body of {declared} bytes exceeds the limit of {self.max_body_bytes}"
            )
        batcher = self.service.batcher
        reserve = self.max_body_bytes if encoded or declared is None else max(declared, 1)
        problem = ""
        if batcher.depth >= batcher.capacity:
            problem = f"queue full ({batcher.depth}/{batcher.capacity} texts waiting); retry later"
        elif self.inflight_bytes and self.inflight_bytes + reserve > self.max_inflight_bytes:
            problem = (
                f"too many request bytes in flight ({self.inflight_bytes} of {self.max_inflight_bytes}); "
                "retry later"
            )
        if problem:
            self.service.metrics.requests.labels(model.name, model.version, "overloaded").inc()
            raise Overloaded(problem)
        self.inflight_bytes += reserve
        return reserve

    async def _handle(
        self, scope: Scope, receive: Any, model: LoadedModel, version: str | None
    ) -> tuple[bytes, dict[str, str]]:
        service = self.service
        header_length: str | None = None
        encoding = b""
        for key, value in scope["headers"]:
            if key == b"inference-header-content-length":
                header_length = value.decode("latin-1")
            elif key == b"content-encoding":
                encoding = value.strip().lower()
        body = await self._read_body(receive)
        if encoding and encoding != b"identity":
            body = self._decompress(body, encoding)
        req = parse_infer_request(body, header_length)
        work = asyncio.ensure_future(
            service.infer(req.texts, model=model, priority=req.priority, deadline_s=req.deadline_s)
        )
        results = await self._until_disconnect(receive, work)
        first = results[0]
        return encode_infer_response(req, results, first.model_name, first.model_version)

    async def _read_body(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"request body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _decompress(self, body: bytes, encoding: bytes) -> bytes:
        """gzip / deflate request bodies (tritonclient's request_compression_algorithm), size-capped."""
        if encoding == b"gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == b"deflate":
            d = zlib.decompressobj()
        else:
            raise BadRequest(f"unsupported Content-Encoding {encoding.decode('latin-1')!r} (gzip, deflate)")
        name = encoding.decode("latin-1")
        try:
            out = d.decompress(body, self.max_body_bytes + 1)
        except zlib.error as exc:
            raise BadRequest(f"invalid {name} body: {exc}") from None
        if len(out) > self.max_body_bytes or d.unconsumed_tail:
            raise PayloadTooLarge(
                f"decompressed request body exceeds the limit of {self.max_body_bytes} bytes"
            )
        if not d.eof:
            raise BadRequest(f"invalid {name} body: the compressed stream is incomplete")
        return out

    @staticmethod
    async def _until_disconnect(
        receive: Any, work: asyncio.Future[list[InferenceResult]]
    ) -> list[InferenceResult]:
        """Await ``work`` unless the client disconnects first (then cancel it)."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_: object) -> None:
            if not woken.done():
                woken.set_result(None)

        watcher = asyncio.ensure_future(receive())  # after the body, receive() returns only on disconnect
        work.add_done_callback(wake)
        watcher.add_done_callback(wake)
        try:
            await woken
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            if not watcher.done():
                watcher.cancel()
        if work.done():
            return work.result()
        work.cancel()
        raise ClientGone()
