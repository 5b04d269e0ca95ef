"""The sync envelope: one MQTT message carrying a batch of records (wire format v1).

Frame layout (all MQTT payloads on the sync topics)::

    b"AGLM" | u8 schema_version | u32 header_len (big endian) | header (UTF-8 JSON) | body

Header keys: ``id`` message id (uuid4 hex), ``node`` sending node id (``cloud`` for the cloud),
``seq`` per-sender sequence number (1, 2, ...), ``hlc`` packed hybrid logical clock, ``ct``
content type, ``enc`` body encoding (``lz4`` or ``none``), ``n`` record count, ``meta`` small
extras (e.g. ``low``: the lowest sequence number the sender still waits an ack for).

Body: a JSON array of ``n`` record objects, LZ4 block-compressed (size-prefixed) when
``enc == "lz4"``. A frame larger than ``max_bytes`` is refused on both sides, and so is a body
that would decompress beyond ``max_decompressed_bytes`` (checked *before* decompressing).

Decoding never raises anything but :class:`EnvelopeRejected`, whose ``reason`` is a
:class:`RejectReason` — consumers count rejects by reason and keep going.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import lz4.block

from contracts.errors import BadRequest, PayloadTooLarge

MAGIC = b"AGLM"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
_PREFIX = struct.Struct(">4sBI")
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024


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


class EnvelopeRejected(BadRequest):
    """A received message failed validation; ``reason`` says which check."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


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
    parse_records: bool = True,
) -> Envelope:
    """Parse and validate a frame. Raises only :class:`EnvelopeRejected`.

    With ``parse_records=False`` the body is only decompressed (``Envelope.body``), for a
    consumer that validates it straight from JSON into typed records (faster)."""
    if len(data) > max_bytes:
        raise EnvelopeRejected(RejectReason.OVERSIZED, f"{len(data)} bytes > maximum {max_bytes}")
    if len(data) < _PREFIX.size:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"frame of {len(data)} bytes is too short")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeRejected(RejectReason.MALFORMED, "not an AutoGLM sync frame (bad magic)")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise EnvelopeRejected(RejectReason.UNKNOWN_SCHEMA_VERSION, f"schema version {version} is not supported")
    if head_len > MAX_HEADER_BYTES or _PREFIX.size + head_len > len(data):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"header length {head_len} is out of range")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + head_len])
    except (UnicodeDecodeError, ValueError) as err:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"header is not JSON: {err}") from None
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
        raise EnvelopeRejected(RejectReason.UNKNOWN_CONTENT_TYPE, f"content type {header.get('ct')!r}") from None
    try:
        encoding = Encoding(_field(header, "enc", str))
    except ValueError:
        raise EnvelopeRejected(RejectReason.BAD_ENCODING, f"encoding {header.get('enc')!r}") from None
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise EnvelopeRejected(RejectReason.MALFORMED, "header field 'meta' is not an object")
    payload = data[_PREFIX.size + head_len :]
    if encoding is Encoding.LZ4:
        if len(payload) < 4:
            raise EnvelopeRejected(RejectReason.BAD_ENCODING, "LZ4 body without its size prefix")
        size = int.from_bytes(payload[:4], "little")
        if size > max_decompressed_bytes:
            raise EnvelopeRejected(
                RejectReason.OVERSIZED, f"body would decompress to {size} bytes > {max_decompressed_bytes}"
            )
        try:
            payload = lz4.block.decompress(payload)
        except lz4.block.LZ4BlockError as err:
            raise EnvelopeRejected(RejectReason.BAD_ENCODING, f"LZ4 body does not decompress: {err}") from None
    if not parse_records:
        return Envelope(
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
            body=bytes(payload),
            n_records=n,
        )
    try:
        records = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as err:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"body is not JSON: {err}") from None
    if not isinstance(records, list) or len(records) != n or not all(isinstance(r, dict) for r in records):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"body is not a list of {n} objects")
    return Envelope(
        message_id=message_id,
        node_id=node_id,
        seq=seq,
        hlc=hlc,
        content_type=content_type,
        records=records,
        encoding=encoding,
        meta=meta,
        schema_version=version,
        wire_bytes=len(data),
        n_records=n,
    )
