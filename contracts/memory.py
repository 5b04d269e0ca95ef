"""Memory pool records that travel between edge and cloud, and their merge rule.

Two kinds (the documents' memory pool manager), plus the graph reasoner's feedback:

* :class:`SessionState` — short-term dialogue state for one session, with a TTL. It stays on the
  node; it is only sent when ``shared`` is set (e.g. a hand-over to the cloud).
* :class:`KnowledgeRecord` — a long-term knowledge-cache entry: key, text, optional embedding,
  source, confidence, created/updated HLC, and a tombstone flag for deletes.

* :class:`PathPriorRecord` — one node's feedback counts for one reasoning path, keyed by (start
  entity type, relation sequence): how often the path was confirmed and rejected. A node sends its
  own absolute counts (the newest ``updated`` wins per node and key); the cloud sums them over the
  nodes into a :class:`FleetPathPrior` and sends those to the fleet. Bounded: at most
  :data:`MAX_PATH_HOPS` relations, counts capped (:data:`MAX_NODE_PRIOR_COUNT`,
  :data:`MAX_FLEET_PRIOR_COUNT`); which relations exist is checked against the graph schema by the
  receivers (``skillpack.kg.schema.path_refusal``).

Conflicts resolve last-writer-wins on the ``updated`` HLC (:func:`lww_wins`). HLCs are totally
ordered (ties break on node id), and two writes with the very same HLC break on a digest of the
content (a tombstone beats a live value), so every replica converges to the same record whatever
order deltas arrive in, and applying a record twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.hlc import HLC, HLC_PATTERN

MAX_KEY_CHARS = 256
MAX_TEXT_CHARS = 64 * 1024
MAX_EMBEDDING_DIM = 4096
# ``source`` of knowledge written over the edge's HTTP API without the admin token (only possible
# with http_insecure_dev): such a record never goes to the fleet (issue 14, docs/SECURITY.md).
ANONYMOUS_SOURCE_PREFIX = "http:anonymous@"
MAX_PATH_HOPS = 3  # the longest reasoning path (skillpack.kg.reasoner searches at most this many hops)
MAX_NODE_PRIOR_COUNT = 10_000  # one node's confirmations (or rejections) of one path, saturating
MAX_FLEET_PRIOR_COUNT = 2**31 - 1  # the fleet's sum, saturating
_NAME = r"^[a-z][a-z0-9_]{0,63}$"  # an entity type or relation name


class KnowledgeRecord(BaseModel):
    """One long-term knowledge entry (or its tombstone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=MAX_KEY_CHARS, description="Stable identity of the entry")
    text: str = Field(default="", max_length=MAX_TEXT_CHARS, description="The knowledge itself")
    embedding: list[float] | None = Field(
        default=None, max_length=MAX_EMBEDDING_DIM, description="Optional sentence embedding"
    )
    source: str = Field(default="", max_length=512, description="Where it came from (node, tool, user)")
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, description="Confidence in [0, 1]")
    created: str = Field(pattern=HLC_PATTERN, description="HLC of the first write")
    updated: str = Field(pattern=HLC_PATTERN, description="HLC of this write; the LWW merge key")
    deleted: bool = Field(default=False, description="Tombstone: the entry was deleted at `updated`")
    shared: bool = Field(default=True, description="Rebroadcast to the fleet/group by the cloud")

    @property
    def origin(self) -> str:
        """The node that made this write (from the HLC)."""
        return HLC.parse(self.updated).node_id

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SessionState(BaseModel):
    """Short-term dialogue state for one session; expires ``ttl_s`` after ``updated_ms``."""

    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(min_length=1, max_length=MAX_KEY_CHARS, description="Session identity")
    data: dict[str, Any] = Field(default_factory=dict, description="Dialogue state (turns, slots ...)")
    ttl_s: float = Field(default=1800.0, gt=0, description="Time to live after the last update")
    updated_ms: int = Field(ge=0, description="Wall-clock ms of the last update")
    updated: str = Field(pattern=HLC_PATTERN, description="HLC of the last update")
    shared: bool = Field(default=False, description="Only shared session state leaves the node")

    def expires_at_ms(self) -> int:
        return self.updated_ms + int(self.ttl_s * 1000)

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms()


def lww_wins(incoming: KnowledgeRecord, current: KnowledgeRecord | None) -> bool:
    """True when ``incoming`` must replace ``current`` (deterministic, idempotent)."""
    if current is None:
        return True
    if incoming.updated != current.updated:
        return incoming.updated > current.updated  # packed HLC: string order == time order
    if incoming.deleted != current.deleted:
        return incoming.deleted
    return incoming.digest() > current.digest()  # equal content -> False (no-op)


def merge(records: list[KnowledgeRecord]) -> dict[str, KnowledgeRecord]:
    """Fold a list of records into the LWW winner per key (order-independent)."""
    out: dict[str, KnowledgeRecord] = {}
    for rec in records:
        if lww_wins(rec, out.get(rec.key)):
            out[rec.key] = rec
    return out


class PathPriorRecord(BaseModel):
    """One node's feedback counts for one reasoning path (node → cloud, ``path_prior``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(min_length=1, max_length=128, description="The node whose feedback this is")
    start_type: str = Field(pattern=_NAME, description="Entity type the path starts from")
    relations: tuple[Annotated[str, Field(pattern=_NAME)], ...] = Field(
        min_length=1, max_length=MAX_PATH_HOPS, description="The relation sequence"
    )
    confirmed: int = Field(ge=0, le=MAX_NODE_PRIOR_COUNT, description="Answers on this path confirmed right")
    rejected: int = Field(ge=0, le=MAX_NODE_PRIOR_COUNT, description="Answers on this path said to be wrong")
    updated: str = Field(
        pattern=HLC_PATTERN, description="HLC of this count; the newest wins per node and key"
    )

    @property
    def origin(self) -> str:
        return HLC.parse(self.updated).node_id


class FleetPathPrior(BaseModel):
    """The fleet's feedback counts for one path: the sum over nodes (cloud → nodes, ``fleet_prior``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_type: str = Field(pattern=_NAME)
    relations: tuple[Annotated[str, Field(pattern=_NAME)], ...] = Field(
        min_length=1, max_length=MAX_PATH_HOPS
    )
    confirmed: int = Field(ge=0, le=MAX_FLEET_PRIOR_COUNT)
    rejected: int = Field(ge=0, le=MAX_FLEET_PRIOR_COUNT)
    nodes: int = Field(ge=0, le=MAX_FLEET_PRIOR_COUNT, description="Nodes that sent counts for this path")
    merged: str = Field(pattern=HLC_PATTERN, description="The cloud's HLC of this sum (newest wins)")
