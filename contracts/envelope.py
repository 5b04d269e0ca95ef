"""The sync envelope: one MQTT message carrying a batch of records (wire format v1).

Frame layout (all MQTT payloads on the sync topics)::

    b"AGLM" | u8 schema_version | u32 header_len (big endian) | header (UTF-8 JSON) | body

Header keys: ``id`` message id (uuid4 hex), ``node`` sending node id (``cloud`` for the cloud),
``seq`` per-sender sequence number (1, 2, ...), ``hlc`` packed hybrid logical clock, ``ct``
content type, ``enc`` body encoding (``lz4`` or ``none``), ``n`` record count, ``meta`` small
extras (e.g. ``low``: the lowest sequence number the sender still waits an ack for).

Body: a JSON array of ``n`` record objects, LZ4 block-compressed (size-prefixed) when
``enc == "lz4"``.

Limits, all checked before the part they protect is parsed: the frame (``max_bytes``), the
header (:data:`MAX_HEADER_BYTES`), the declared record count (``max_records``, before
decompressing), the decompressed body (``max_decompressed_bytes``, from the LZ4 size prefix,
before decompressing), the number of JSON values in the body (``max_json_values``, counted on the
bytes before parsing) and the nesting depth of header and records (``max_depth``).

Decoding never raises anything but :class:`EnvelopeRejected`, whose ``reason`` is a
:class:`RejectReason` and whose message is at most :data:`MAX_REASON_CHARS` long — consumers count
rejects by reason and keep going. When only the body is refused, ``EnvelopeRejected.header`` is
the envelope without its body, so that a consumer can still ack the message id as rejected.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import lz4.block

from contracts.errors import BadRequest, PayloadTooLarge
from contracts.hlc import HybridClock

MAGIC = b"AGLM"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
_PREFIX = struct.Struct(">4sBI")
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RECORDS = 2000  # the cloud acks up to 2000 message ids per frame
DEFAULT_MAX_JSON_DEPTH = 32  # nesting levels of containers, header and records alike
DEFAULT_MAX_JSON_VALUES = 128 * 1024  # JSON values (and keys) in one body
MAX_HEADER_BYTES = 16 * 1024
MAX_REASON_CHARS = 240  # a reject message: short enough for a log line, an ack and a database row


class ContentType(StrEnum):
    MEMORY = "memory"  # knowledge records, edge->cloud and cloud->edge
    SESSION = "session"  # shared short-term session state
    HARD_EXAMPLE = "hard_example"  # inputs the edge was unsure of (for retraining)
    EVENT = "event"  # telemetry events (droppable)
    HEARTBEAT = "heartbeat"
    STATUS = "status"
    COMMAND = "command"
    ACK = "ack"  # acknowledges message ids / command ids
    RESYNC_REQUEST = "resync_request"
    RESYNC_RESPONSE = "resync_response"
    PATH_PRIOR = "path_prior"  # a node's feedback counts of graph paths (contracts.memory.PathPriorRecord)
    FLEET_PRIOR = "fleet_prior"  # the fleet's sums of them (contracts.memory.FleetPathPrior)


class Encoding(StrEnum):
    LZ4 = "lz4"
    NONE = "none"


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    UNKNOWN_CONTENT_TYPE = "unknown_content_type"
    BAD_ENCODING = "bad_encoding"
    WRONG_SENDER = "wrong_sender"
    INVALID_RECORD = "invalid_record"


def shorten(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class EnvelopeRejected(BadRequest):
    """A received message failed validation; ``reason`` says which check. The message is cut to
    :data:`MAX_REASON_CHARS`. ``header`` is the envelope without its body when the header was
    valid and only the body was refused (its ``rejected`` field holds this message)."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(shorten(f"{reason.value}: {message}"))
        self.reason = reason
        self.header: Envelope | None = None


class EnvelopeTooLarge(PayloadTooLarge):
    """The sender tried to build a frame beyond the maximum message size."""


def new_message_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    node_id: str
    seq: int
    hlc: str
    content_type: ContentType
    records: list[dict[str, Any]]
    encoding: Encoding = Encoding.LZ4
    meta: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    wire_bytes: int = 0  # size of the frame it was decoded from (0 when built locally)
    body: bytes = b""  # the decompressed JSON body, when decoded with parse_records=False
    n_records: int = 0  # the header's record count (set by decode)
    rejected: str = ""  # why the body was refused (only on ``EnvelopeRejected.header``)


def records_body(records: list[dict[str, Any]]) -> bytes:
    return json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def join_record_bodies(parts: list[bytes]) -> bytes:
    """Body from records already serialised one by one (the outbox stores them that way)."""
    return b"[" + b",".join(parts) + b"]"


def pack(
    *,
    message_id: str,
    node_id: str,
    seq: int,
    hlc: str,
    content_type: ContentType,
    body: bytes,
    n_records: int,
    encoding: Encoding = Encoding.LZ4,
    meta: dict[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> bytes:
    """Build a frame from a ready JSON-array body; raises :class:`EnvelopeTooLarge`."""
    header: dict[str, Any] = {
        "id": message_id,
        "node": node_id,
        "seq": seq,
        "hlc": hlc,
        "ct": content_type.value,
        "enc": encoding.value,
        "n": n_records,
    }
    if meta:
        header["meta"] = meta
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload = lz4.block.compress(body, store_size=True) if encoding is Encoding.LZ4 else body
    frame = _PREFIX.pack(MAGIC, SCHEMA_VERSION, len(head)) + head + payload
    if len(frame) > max_bytes:
        raise EnvelopeTooLarge(f"sync message of {len(frame)} bytes exceeds the maximum of {max_bytes} bytes")
    return frame


def encode(env: Envelope, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    return pack(
        message_id=env.message_id,
        node_id=env.node_id,
        seq=env.seq,
        hlc=env.hlc,
        content_type=env.content_type,
        body=records_body(env.records),
        n_records=len(env.records),
        encoding=env.encoding,
        meta=env.meta,
        max_bytes=max_bytes,
    )


def json_too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels deep (``[]`` is one level).
    Iterative, and stops at the first container too deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json(data: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, what: str = "body") -> Any:
    """``json.loads`` whose every failure (invalid UTF-8 or JSON, huge integers, recursion) and
    any nesting deeper than ``max_depth`` is an :class:`EnvelopeRejected` (``malformed``)."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"{what} is not JSON: {err}") from None
    if json_too_deep(value, max_depth):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"{what} nests deeper than {max_depth} levels")
    return value


_ESCAPE = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*+"')  # after escapes are gone: possessive, so no backtracking


def _structural(data: bytes) -> int:
    return data.count(b",") + data.count(b"[") + data.count(b"{") + 1


def check_json_values(data: bytes, limit: int = DEFAULT_MAX_JSON_VALUES) -> None:
    """Refuse (``oversized``) a JSON text that holds more than ``limit`` values, before parsing it.

    A parser allocates per value (an empty object costs ~180 bytes in pydantic-core, ~70 in
    CPython), so 1 MiB of ``[{},{},...]`` would cost ~60 MB. Every value but the first follows a
    comma or opens a container, so ``commas + '[' + '{' + 1`` bounds the count; texts shorter than
    ``2 * limit`` cannot exceed it and are not scanned, and when the quick count (which includes
    characters inside strings) is over, strings are cut out (escapes first) and the count is exact."""
    if (len(data) + 1) // 2 <= limit or _structural(data) <= limit:
        return
    bare = _ESCAPE.sub(b"", data) if b"\\" in data else data
    count = _structural(_STRING.sub(b"", bare))
    if count > limit:
        raise EnvelopeRejected(
            RejectReason.OVERSIZED, f"body holds about {count} JSON values > maximum {limit}"
        )


def parse_body(body: bytes, n: int, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> list[dict[str, Any]]:
    """A body that must be a JSON array of exactly ``n`` objects (see :func:`parse_json`)."""
    records = parse_json(body, max_depth=max_depth)
    if not isinstance(records, list) or len(records) != n or not all(isinstance(r, dict) for r in records):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"body is not a list of {n} objects")
    return records


def _field(header: dict[str, Any], key: str, kind: type) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"header field {key!r} missing or not {kind.__name__}")
    return value


def decode(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
    max_json_values: int = DEFAULT_MAX_JSON_VALUES,
    parse_records: bool = True,
) -> Envelope:
    """Parse and validate a frame. Raises only :class:`EnvelopeRejected`.

    With ``parse_records=False`` the body is only decompressed and size-checked
    (``Envelope.body``), for a consumer that validates it later, straight from JSON into typed
    records (faster), or in sequence order."""
    if len(data) > max_bytes:
        raise EnvelopeRejected(RejectReason.OVERSIZED, f"{len(data)} bytes > maximum {max_bytes}")
    if len(data) < _PREFIX.size:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"frame of {len(data)} bytes is too short")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeRejected(RejectReason.MALFORMED, "not an AutoGLM sync frame (bad magic)")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise EnvelopeRejected(
            RejectReason.UNKNOWN_SCHEMA_VERSION, f"schema version {version} is not supported"
        )
    if head_len > MAX_HEADER_BYTES or _PREFIX.size + head_len > len(data):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"header length {head_len} is out of range")
    header = parse_json(data[_PREFIX.size : _PREFIX.size + head_len], max_depth=max_depth, what="header")
    if not isinstance(header, dict):
        raise EnvelopeRejected(RejectReason.MALFORMED, "header is not an object")
    message_id = _field(header, "id", str)
    node_id = _field(header, "node", str)
    seq = _field(header, "seq", int)
    hlc = _field(header, "hlc", str)
    n = _field(header, "n", int)
    if not message_id or not node_id or seq < 0 or n < 0:
        raise EnvelopeRejected(RejectReason.MALFORMED, "empty id/node or negative seq/n")
    try:
        content_type = ContentType(_field(header, "ct", str))
    except ValueError:
        raise EnvelopeRejected(
            RejectReason.UNKNOWN_CONTENT_TYPE, f"content type {header.get('ct')!r}"
        ) from None
    try:
        encoding = Encoding(_field(header, "enc", str))
    except ValueError:
        raise EnvelopeRejected(RejectReason.BAD_ENCODING, f"encoding {header.get('enc')!r}") from None
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise EnvelopeRejected(RejectReason.MALFORMED, "header field 'meta' is not an object")
    head = Envelope(
        message_id=message_id,
        node_id=node_id,
        seq=seq,
        hlc=hlc,
        content_type=content_type,
        records=[],
        encoding=encoding,
        meta=meta,
        schema_version=version,
        wire_bytes=len(data),
        n_records=n,
    )
    try:
        body = _body(
            data[_PREFIX.size + head_len :], head, max_decompressed_bytes, max_records, max_json_values
        )
        if not parse_records:
            return replace(head, body=body)
        records = parse_body(body, n, max_depth=max_depth)
    except EnvelopeRejected as err:
        err.header = replace(head, rejected=err.message)
        raise
    return replace(head, records=records)


def _body(
    payload: bytes, head: Envelope, max_decompressed_bytes: int, max_records: int, max_json_values: int
) -> bytes:
    """The decompressed body, after the record-count and size checks (none needs decompressing)."""
    if head.n_records > max_records:
        raise EnvelopeRejected(RejectReason.OVERSIZED, f"{head.n_records} records > maximum {max_records}")
    if head.encoding is Encoding.LZ4:
        if len(payload) < 4:
            raise EnvelopeRejected(RejectReason.BAD_ENCODING, "LZ4 body without its size prefix")
        size = int.from_bytes(payload[:4], "little")
        if size > max_decompressed_bytes:
            raise EnvelopeRejected(
                RejectReason.OVERSIZED, f"body would decompress to {size} bytes > {max_decompressed_bytes}"
            )
        try:
            payload = lz4.block.decompress(payload)
        except (lz4.block.LZ4BlockError, ValueError) as err:
            raise EnvelopeRejected(
                RejectReason.BAD_ENCODING, f"LZ4 body does not decompress: {err}"
            ) from None
    elif len(payload) > max_decompressed_bytes:
        raise EnvelopeRejected(
            RejectReason.OVERSIZED, f"body of {len(payload)} bytes > {max_decompressed_bytes}"
        )
    check_json_values(payload, max_json_values)
    return bytes(payload)


class Framer:
    """Builds the frames one sender publishes (the edge's sync agent, the cloud's hub): its
    node id, an HLC stamp per frame from its clock, its encoding and its size limit. Raises
    :class:`EnvelopeTooLarge` for a frame over ``max_bytes``."""

    def __init__(
        self,
        node_id: str,
        clock: HybridClock,
        *,
        compress: bool = True,
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.node_id = node_id
        self.clock = clock
        self.encoding = Encoding.LZ4 if compress else Encoding.NONE
        self.max_bytes = max_bytes

    def records(
        self,
        ct: ContentType,
        records: list[dict[str, Any]],
        *,
        meta: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bytes:
        """An unordered frame (seq 0) of JSON records."""
        return self.bodies(ct, [], records_body(records), len(records), meta=meta, message_id=message_id)

    def bodies(
        self,
        ct: ContentType,
        parts: list[bytes],
        body: bytes | None = None,
        n_records: int = 0,
        *,
        seq: int = 0,
        meta: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bytes:
        """A frame from ready JSON record bodies (``parts``, joined) or a ready array ``body``."""
        return pack(
            message_id=message_id or new_message_id(),
            node_id=self.node_id,
            seq=seq,
            hlc=self.clock.now().pack(),
            content_type=ct,
            body=body if body is not None else join_record_bodies(parts),
            n_records=n_records,
            encoding=self.encoding,
            meta=meta,
            max_bytes=self.max_bytes,
        )
