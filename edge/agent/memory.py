"""The memory pool: short-term sessions, long-term knowledge, semantic cache.

- :class:`SessionStore` — per-session turns and slots (last entity, device, site, route,
  question) with a TTL; it never leaves the node.
- :class:`KnowledgeMemory` — long-term entries in the node's SQLite
  :class:`~edge.memory.store.MemoryStore` (synced over MQTT by ``EdgeSync``) with embeddings
  from the same encoder, searched by cosine similarity.
- :class:`SemanticCache` — answers keyed by question embedding, kept in the same store under
  ``cache:`` keys, so an answer one node fetched from the cloud becomes a hit on every node after
  sync. A hit needs the same route, the same *signature* (entities, device codes and numbers the
  question names: "who maintains PR-111" never answers "who maintains PR-112"), cosine ≥ the
  calibrated threshold, and an entry younger than its route's freshness; ``device_control`` and
  ``memory_recall`` are never cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts.errors import AutoGLMError
from edge.memory.store import MemoryStore
from skillpack import calculator, climate, units
from skillpack.kg.linking import EntityLinker
from skillpack.kg.reasoner import cue_slots
from skillpack.text import normalize_numbers, to_ascii

CACHE_PREFIX = "cache:"
KNOWLEDGE_PREFIX = "kb:"
NEVER_CACHE = frozenset({"device_control", "memory_recall"})


# ----------------------------------------------------------------------------- sessions
@dataclass
class Turn:
    question: str
    answer: str
    route: str
    source: str
    ts: float


@dataclass
class Session:
    id: str
    turns: deque[Turn]
    slots: dict[str, Any] = field(default_factory=dict)
    last_seen: float = 0.0


class SessionStore:
    def __init__(
        self, ttl_s: float = 1800.0, max_turns: int = 20, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_turns = max_turns
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def get(self, session_id: str) -> Session:
        now = self._clock()
        with self._lock:
            self._expire(now)
            s = self._sessions.get(session_id)
            if s is None:
                s = Session(session_id, deque(maxlen=self.max_turns))
                self._sessions[session_id] = s
            s.last_seen = now
            return s

    def record(self, session_id: str, turn: Turn, **slots: Any) -> None:
        s = self.get(session_id)
        with self._lock:
            s.turns.append(turn)
            s.slots.update({k: v for k, v in slots.items() if v is not None})

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if now - s.last_seen > self.ttl_s]:
            del self._sessions[sid]

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._sessions)


# ----------------------------------------------------------------------------- vector helpers
def _unit(v: Iterable[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(list(v) if not isinstance(v, np.ndarray) else v, dtype=np.float32)
    n = float(np.linalg.norm(a))
    return a / n if n else a


class _VectorIndex:
    """Records of one key prefix as a matrix, rebuilt when the store changed (by newest HLC)."""

    def __init__(self, store: MemoryStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._stamp: tuple[str | None, int] | None = None
        self.unembedded: list[tuple[str, str, str]] = []  # (key, updated, text) stored without embedding
        self.keys: list[str] = []
        self.docs: list[dict[str, Any]] = []
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self._lock = threading.Lock()

    def refresh(self) -> None:
        stamp = (self.store.newest_hlc(), self.store.count(include_deleted=True))
        with self._lock:
            if stamp == self._stamp:
                return
            keys, docs, vecs = [], [], []
            unembedded: list[tuple[str, str, str]] = []
            for rec in self.store.snapshot():
                if rec.deleted or not rec.key.startswith(self.prefix):
                    continue
                if not rec.embedding:
                    if rec.text.strip():
                        unembedded.append((rec.key, rec.updated, rec.text))
                    continue
                try:
                    doc = json.loads(rec.text) if self.prefix == CACHE_PREFIX else {"text": rec.text}
                except ValueError:
                    continue
                doc["_source"] = rec.source
                doc["_origin"] = rec.origin
                keys.append(rec.key)
                docs.append(doc)
                vecs.append(_unit(rec.embedding))
            dims = {v.shape[0] for v in vecs}
            dim = max(dims, key=lambda d: sum(v.shape[0] == d for v in vecs)) if dims else 0
            keep = [i for i, v in enumerate(vecs) if v.shape[0] == dim]
            self.keys = [keys[i] for i in keep]
            self.docs = [docs[i] for i in keep]
            self.matrix = np.stack([vecs[i] for i in keep]) if keep else np.zeros((0, dim), dtype=np.float32)
            self.unembedded = unembedded
            self._stamp = stamp

    def invalidate(self) -> None:
        with self._lock:
            self._stamp = None

    def similarities(self, query: np.ndarray) -> np.ndarray:
        self.refresh()
        if self.matrix.shape[0] == 0 or self.matrix.shape[1] != query.shape[0]:
            return np.zeros(0, dtype=np.float32)
        sims: np.ndarray = self.matrix @ _unit(query)
        return sims


# ----------------------------------------------------------------------------- long-term
@dataclass(frozen=True)
class MemoryHit:
    key: str
    text: str
    similarity: float
    source: str


class KnowledgeMemory:
    def __init__(self, store: MemoryStore, publish: Callable[[list[Any]], Any] | None = None) -> None:
        self.store = store
        self.publish = publish
        self._index = _VectorIndex(store, KNOWLEDGE_PREFIX)

    def remember(
        self,
        key: str,
        text: str,
        embedding: np.ndarray,
        *,
        source: str = "",
        confidence: float = 1.0,
        shared: bool = True,
    ) -> None:
        """Store a knowledge entry; only a ``shared`` one is published (synced to the fleet)."""
        rec = self.store.put(
            f"{KNOWLEDGE_PREFIX}{key}",
            text,
            embedding=[float(x) for x in _unit(embedding)],
            source=source,
            confidence=confidence,
            shared=shared,
        )
        if self.publish is not None and rec.shared:
            self.publish([rec])

    def unembedded(self, limit: int = 64) -> list[tuple[str, str, str]]:
        """Knowledge entries stored without an embedding — the cloud broadcasts text only — as
        (key, stored version, text), at most ``limit``: :meth:`fill` them before searching."""
        self._index.refresh()
        return self._index.unembedded[:limit]

    def fill(self, entries: list[tuple[str, str, str]], embeddings: list[np.ndarray]) -> int:
        """Attach this node's embeddings to ``entries`` (from :meth:`unembedded`); returns how many
        were attached (an entry replaced meanwhile is skipped: its new version is embedded next)."""
        done = sum(
            self.store.set_local_embedding(key, updated, [float(x) for x in _unit(emb)])
            for (key, updated, _), emb in zip(entries, embeddings, strict=True)
        )
        if done:
            self._index.invalidate()
        return done

    def search(self, embedding: np.ndarray, k: int = 3, threshold: float = 0.0) -> list[MemoryHit]:
        sims = self._index.similarities(embedding)
        order: list[int] = [int(i) for i in np.argsort(-sims)[:k]] if sims.size else []
        return [
            MemoryHit(
                self._index.keys[i],
                self._index.docs[i]["text"],
                float(sims[i]),
                self._index.docs[i]["_source"],
            )
            for i in order
            if sims[i] >= threshold
        ]


# ----------------------------------------------------------------------------- semantic cache
_NUM = re.compile(r"\d+(?:\.\d+)?")
# device/sensor codes: "PR-111", "pr-111", "PR111", "PR 111"
# (upper case without a hyphen, so "of 240" is no code)
_CODE = re.compile(r"(?<![A-Za-z])(?:([A-Za-z]{2})[_-]|([A-Z]{2})\s?)(\d{3,4})(?!\d)")


def question_signature(text: str, linker: EntityLinker | None) -> list[str]:
    """What a cached answer must agree on, beyond embedding similarity: the entities, device codes
    and numbers the question names, the graph relations its words cue, the arithmetic operators,
    the unit pair and the climate city/month/quantity. Sentence embeddings place "who maintains
    PR-111" and "who operates PR-111" almost on top of each other (cosine ≈ 0.99 with MiniLM);
    the signature is what keeps them apart."""
    ascii_text = to_ascii(text)
    sig: set[str] = set()
    span = (0, 0)
    blanked = ascii_text
    if linker is not None:
        mentions = [m for m in linker.link(text) if m.score >= 0.99]
        sig |= {f"e:{m.entity_id}" for m in mentions}
        if mentions:
            span = (mentions[0].start, mentions[0].end)
        for m in mentions:  # a linked name is its entity, not numbers and codes
            blanked = blanked[: m.start] + " " * (m.end - m.start) + blanked[m.end :]
    norm = normalize_numbers(blanked)
    clean = _CODE.sub(" ", norm)
    numbers = [f"{float(n):g}" for n in _NUM.findall(clean)]
    if numbers:  # in order: "199% of 179" is not "179% of 199"
        sig.add("n:" + ",".join(numbers))
    sig |= {f"c:{(a or b).upper()}-{n}" for a, b, n in _CODE.findall(norm)}
    cues = Counter(rel for slot in cue_slots(ascii_text, span) for rel in slot.relations)
    sig |= {f"r:{rel}" if n == 1 else f"r:{rel}#{n}" for rel, n in cues.items()}  # "the boss of the boss of"
    with contextlib.suppress(AutoGLMError):
        expression = calculator.solve(clean).expression
        sig |= {f"o:{op}" for op in re.findall(r"[-+*/^%]|sqrt|cbrt|avg|sum|product|min|max", expression)}
    with contextlib.suppress(AutoGLMError):
        conv = units.solve(text)
        sig.add(f"u:{conv.from_unit}>{conv.to_unit}")
    city = climate.find_city_in_text(text)
    if city is not None and not linked_site(sig):
        sig.add(f"w:{city.id}:{climate.find_month(text)}:{climate.find_quantity(text)}")
    return sorted(sig)


def linked_site(sig: set[str]) -> bool:
    """A plant site/line named like a city ("Suzhou Line 2") is not a climate question."""
    return any(x.startswith(("e:site:", "e:line:")) for x in sig)


@dataclass(frozen=True)
class CacheHit:
    key: str
    question: str
    answer: str
    route: str
    similarity: float
    age_s: float
    origin: str  # node whose write it is
    data: dict[str, Any]


class SemanticCache:
    def __init__(
        self,
        store: MemoryStore,
        threshold: float,
        freshness_s: dict[str, float],
        publish: Callable[[list[Any]], Any] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.freshness_s = freshness_s
        self.publish = publish
        self._wall = wall
        self._index = _VectorIndex(store, CACHE_PREFIX)

    def cacheable(self, route: str) -> bool:
        return route not in NEVER_CACHE and self.freshness_s.get(route, 0.0) > 0

    def lookup(
        self, embedding: np.ndarray, route: str | None, signature: list[str]
    ) -> tuple[CacheHit | None, float]:
        """(hit or None, best similarity among entries of the same route and signature).
        ``route=None`` (an unsure router) accepts an entry of any cacheable route."""
        if route is not None and not self.cacheable(route):
            return None, 0.0
        sims = self._index.similarities(embedding)
        best: CacheHit | None = None
        best_sim = 0.0
        now = self._wall()
        for i in np.argsort(-sims) if sims.size else []:
            doc = self._index.docs[i]
            entry_route = str(doc.get("route", ""))
            if (route is not None and entry_route != route) or doc.get("signature") != signature:
                continue
            if not self.cacheable(entry_route):
                continue
            age = now - float(doc.get("ts", 0.0))
            if age > self.freshness_s.get(entry_route, 0.0):
                continue
            sim = float(sims[i])
            best_sim = max(best_sim, sim)
            if sim >= self.threshold:
                best = CacheHit(
                    self._index.keys[i],
                    doc.get("q", ""),
                    doc.get("answer", ""),
                    entry_route,
                    sim,
                    age,
                    str(doc.get("_origin", "")),
                    doc.get("data", {}),
                )
            break
        return best, best_sim

    def store_answer(
        self,
        question: str,
        embedding: np.ndarray,
        route: str,
        signature: list[str],
        answer: str,
        data: dict[str, Any] | None = None,
        source: str = "",
    ) -> str | None:
        if not self.cacheable(route):
            return None
        digest = hashlib.sha1(
            f"{route}|{'|'.join(signature)}|{question.strip().lower()}".encode()
        ).hexdigest()[:20]
        key = f"{CACHE_PREFIX}{route}:{digest}"
        doc = {
            "q": question,
            "answer": answer,
            "route": route,
            "signature": signature,
            "ts": self._wall(),
            "data": _small(data or {}),
        }
        rec = self.store.put(
            key,
            json.dumps(doc, ensure_ascii=False),
            embedding=[float(x) for x in _unit(embedding)],
            source=source,
        )
        if self.publish is not None:
            self.publish([rec])
        return key


def _small(data: dict[str, Any], limit: int = 4000) -> dict[str, Any]:
    text = json.dumps(data, ensure_ascii=False, default=str)
    return data if len(text) <= limit else {"truncated": text[:limit]}


def calibrate_threshold(pos: np.ndarray, neg: np.ndarray, max_false_rate: float = 0.01) -> float:
    """Smallest threshold whose false-hit rate on non-paraphrase similarities ``neg`` is at most
    ``max_false_rate`` (strictly above that quantile of ``neg``); ``pos`` are reported by the
    caller as the resulting hit rate."""
    if neg.size == 0:
        return 0.0
    srt = np.sort(neg)[::-1]
    allowed = int(np.floor(max_false_rate * neg.size))
    cut = float(srt[allowed]) if allowed < srt.size else float(srt[-1])
    return float(np.nextafter(np.float32(cut), np.float32(2.0)))
