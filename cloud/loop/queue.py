"""The hard-example queue: the one owner of ``hard_example_items`` / ``hard_example_sightings``.

Feeding: the MQTT hub stores what each node sends in its own SQLite (its state, for exactly-once
apply); its ``on_hard_examples`` hook hands every newly applied record to :meth:`ingest`, which
writes a *sighting* (keyed by the edge's id, so a record arrives once however often it is sent)
into the cloud database. The worker, which holds the full-precision model, then *triages*
sightings (:meth:`triage`): embeds them, merges each into the nearest queue item at cosine >=
``loop_merge_similarity`` or opens a new item, counts it per node and per edge route, and
suggests a label (a route users named when they rejected the edge's answer first; else the
model's route, the cloud tool's route, or both agreeing). Operators
label / relabel / reject items; :meth:`snapshot` turns the labelled ones into a content-addressed
dataset (``loop_datasets`` + ``{data_dir}/loop/datasets/{sha256}.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from cloud.db.engine import Database
from cloud.db.models import HardExampleItem, HardExampleSighting, LoopDataset, utcnow
from cloud.loop.settings import LoopSettings
from contracts.errors import BadRequest, Conflict, NotFound
from contracts.logging import get_logger
from contracts.loop import (
    ROUTE_PATTERN,
    DatasetOut,
    HardExampleList,
    HardExampleOut,
    HardExampleReason,
    HardExampleStatus,
    SuggestionSource,
)

log = get_logger("autoglm.cloud.loop")

MAX_TEXT = 2000
MAX_VARIANTS = 5
CLOUD_SOURCES = frozenset({"cloud_tool", "cloud_fallback"})
AUTO_ACTOR = "auto-policy"
REASONS = frozenset(r.value for r in HardExampleReason)
_ROUTE = re.compile(ROUTE_PATTERN)


@dataclass(frozen=True)
class Triaged:
    """What the full-precision model says about one text."""

    embedding: np.ndarray  # L2-normalised
    route: str
    confidence: float


TriageFn = Callable[[list[str]], list[Triaged]]
RouteCheck = Callable[[str], str | None]  # None: the route may be used; else why not


def suggest(
    model_route: str | None,
    model_conf: float | None,
    cloud_route: str | None,
    user_routes: Mapping[str, int] | None = None,
) -> tuple[str | None, float | None, SuggestionSource]:
    """A route users named when they rejected the edge's answer comes first (the most named; its
    confidence is its share of those corrections): a person who saw the answer knows better than
    either model. Else agreement of model and cloud tool -> that route; else the model when it is
    sure (>= 0.8), else the cloud tool (confidence 0.5: one source), else the model's guess."""
    if user_routes:
        total = sum(user_routes.values())
        top = max(user_routes, key=lambda r: user_routes[r])
        if total > 0:
            return top, round(user_routes[top] / total, 6), SuggestionSource.USER
    if model_route and cloud_route and model_route == cloud_route:
        return model_route, max(model_conf or 0.0, 0.5), SuggestionSource.AGREEMENT
    if model_route and (model_conf or 0.0) >= 0.8:
        return model_route, model_conf, SuggestionSource.MODEL
    if cloud_route:
        return cloud_route, 0.5, SuggestionSource.CLOUD_TOOL
    if model_route:
        return model_route, model_conf, SuggestionSource.MODEL
    return None, None, SuggestionSource.NONE


class HardExampleQueue:
    def __init__(self, db: Database, settings: LoopSettings, data_dir: Path) -> None:
        self.db = db
        self.settings = settings
        self.datasets_dir = data_dir / "loop" / "datasets"
        self._lock = threading.Lock()
        self.route_check: RouteCheck = lambda route: None

    # -- feeding (the hub's hook) --------------------------------------------------------------

    def ingest(self, node_id: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Store each new record as a sighting; returns how many were new."""
        rows: list[dict[str, Any]] = []
        for r in records:
            rid = str(r.get("id", ""))[:64]
            text = str(r.get("resolved_text") or r.get("text") or "").strip()[:MAX_TEXT]
            if not rid or not text:
                continue
            conf = r.get("edge_confidence")
            reason = str(r.get("reason") or "")
            user_route = str(r.get("user_route") or "")
            rows.append(
                {
                    "id": rid,
                    "node_id": node_id[:128],
                    "text": text,
                    "edge_route": str(r.get("edge_route") or "")[:64],
                    "edge_confidence": float(conf) if isinstance(conf, int | float) else 0.0,
                    "final_route": str(r.get("final_route") or "")[:64],
                    "answer_source": str(r.get("answer_source") or "")[:32],
                    "model_version": str(r.get("model_version") or "")[:200],
                    "reason": reason if reason in REASONS else "",
                    # a malformed route is dropped here; an unknown one is refused when approved
                    "user_route": user_route if _ROUTE.match(user_route) else "",
                }
            )
        if not rows:
            return 0
        added = 0
        with self.db.session() as s:
            known = set(
                s.scalars(
                    select(HardExampleSighting.id).where(HardExampleSighting.id.in_([r["id"] for r in rows]))
                )
            )
            for r in rows:
                if r["id"] in known:
                    continue
                known.add(r["id"])
                s.add(HardExampleSighting(**r))
                added += 1
        return added

    def untriaged(self) -> int:
        with self.db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(HardExampleSighting)
                    .where(HardExampleSighting.item_id.is_(None))
                )
                or 0
            )

    # -- triage (the worker) ------------------------------------------------------------------

    def triage(self, fn: TriageFn, *, batch: int = 256) -> int:
        """Merge untriaged sightings into queue items; returns how many were merged."""
        with self._lock:
            with self.db.session() as s:
                pending = list(
                    s.scalars(
                        select(HardExampleSighting)
                        .where(HardExampleSighting.item_id.is_(None))
                        .order_by(HardExampleSighting.received_at)
                        .limit(batch)
                    )
                )
            if not pending:
                return 0
            results = fn([p.text for p in pending])
            with self.db.session() as s:
                items = list(
                    s.scalars(
                        select(HardExampleItem)
                        .order_by(HardExampleItem.id.desc())
                        .limit(self.settings.loop_max_items)
                    )
                )
                mat = np.array([i.embedding for i in items], dtype=np.float32) if items else None
                new_items: list[HardExampleItem] = []
                new_vecs: list[np.ndarray] = []
                merged = 0
                for sighting, tri in zip(pending, results, strict=True):
                    item = self._nearest(items, mat, new_items, new_vecs, tri.embedding)
                    fresh = item is None
                    if item is None:
                        item = HardExampleItem(
                            text=sighting.text,
                            embedding=[round(float(x), 6) for x in tri.embedding],
                            nodes={},
                            edge_routes={},
                            variants=[],
                            count=0,
                            first_seen=utcnow(),
                        )
                        s.add(item)
                        s.flush()
                    # Claim the sighting (another worker may have merged it meanwhile): counted once.
                    claimed = s.execute(
                        update(HardExampleSighting)
                        .where(HardExampleSighting.id == sighting.id, HardExampleSighting.item_id.is_(None))
                        .values(item_id=item.id)
                        .execution_options(synchronize_session=False)
                    )
                    if claimed.rowcount != 1:  # type: ignore[attr-defined]
                        if fresh:
                            s.delete(item)
                            s.flush()
                        continue
                    if fresh:
                        new_items.append(item)
                        new_vecs.append(tri.embedding.astype(np.float32))
                    self._count(item, sighting, tri)
                    merged += 1
                s.flush()
                self._auto_approve(items + new_items)
            return merged

    def _nearest(
        self,
        items: list[HardExampleItem],
        mat: np.ndarray | None,
        new_items: list[HardExampleItem],
        new_vecs: list[np.ndarray],
        vec: np.ndarray,
    ) -> HardExampleItem | None:
        best, best_sim = None, self.settings.loop_merge_similarity
        if mat is not None and len(mat):
            sims = mat @ vec.astype(np.float32)
            k = int(np.argmax(sims))
            if sims[k] >= best_sim:
                best, best_sim = items[k], float(sims[k])
        for item, v in zip(new_items, new_vecs, strict=True):
            sim = float(v @ vec.astype(np.float32))
            if sim >= best_sim:
                best, best_sim = item, sim
        return best

    @staticmethod
    def _count(item: HardExampleItem, sighting: HardExampleSighting, tri: Triaged) -> None:
        item.count = (item.count or 0) + 1
        item.nodes = {
            **(item.nodes or {}),
            sighting.node_id: int((item.nodes or {}).get(sighting.node_id, 0)) + 1,
        }
        er = sighting.edge_route or "?"
        item.edge_routes = {**(item.edge_routes or {}), er: int((item.edge_routes or {}).get(er, 0)) + 1}
        variants = list(item.variants or [])
        if sighting.text != item.text and sighting.text not in variants and len(variants) < MAX_VARIANTS:
            item.variants = [*variants, sighting.text]
        item.last_seen = utcnow()
        # a rejected answer's route is what the user said is wrong: not a suggestion
        rejected = sighting.reason == HardExampleReason.USER_REJECTED.value
        cloud_route = (
            sighting.final_route if sighting.answer_source in CLOUD_SOURCES and not rejected else None
        )
        item.model_route, item.model_confidence = tri.route, round(float(tri.confidence), 6)
        if cloud_route:
            item.cloud_route = cloud_route
        if sighting.reason:
            reasons = dict(item.reasons or {})
            item.reasons = {**reasons, sighting.reason: int(reasons.get(sighting.reason, 0)) + 1}
        if sighting.user_route:
            users = dict(item.user_routes or {})
            item.user_routes = {**users, sighting.user_route: int(users.get(sighting.user_route, 0)) + 1}
        route, conf, source = suggest(
            item.model_route, item.model_confidence, item.cloud_route, item.user_routes
        )
        item.suggested_route, item.suggested_confidence, item.suggestion_source = route, conf, source.value
        if item.status is None:
            item.status = HardExampleStatus.NEW.value

    def _auto_approve(self, items: Sequence[HardExampleItem]) -> None:
        st = self.settings
        if not st.loop_auto_approve:
            return
        for item in items:
            if item.status != HardExampleStatus.NEW.value or not item.suggested_route:
                continue
            by_user = item.suggestion_source == SuggestionSource.USER.value
            if by_user and not st.loop_auto_approve_user:
                continue
            agreed = item.suggestion_source == SuggestionSource.AGREEMENT.value
            if not (by_user or agreed or st.loop_auto_approve_any_source):
                continue
            from_model = item.suggestion_source in (
                SuggestionSource.MODEL.value,
                SuggestionSource.AGREEMENT.value,
            )
            if from_model and (item.model_confidence or 0.0) < st.loop_auto_approve_min_confidence:
                continue
            if self.route_check(item.suggested_route) is not None:
                continue
            item.status, item.label = HardExampleStatus.LABELLED.value, item.suggested_route
            item.labelled_by, item.reason = AUTO_ACTOR, f"auto-approved ({item.suggestion_source})"

    # -- operators ------------------------------------------------------------------------------

    def items(
        self, status: HardExampleStatus | None = None, *, limit: int = 100, offset: int = 0
    ) -> HardExampleList:
        with self.db.session() as s:
            q = select(HardExampleItem)
            cq = select(func.count()).select_from(HardExampleItem)
            if status is not None:
                q, cq = (
                    q.where(HardExampleItem.status == status.value),
                    cq.where(HardExampleItem.status == status.value),
                )
            rows = s.scalars(
                q.order_by(HardExampleItem.count.desc(), HardExampleItem.id).limit(limit).offset(offset)
            )
            items = [self._out(r) for r in rows]
            total = int(s.scalar(cq) or 0)
        return HardExampleList(items=items, total=total, untriaged=self.untriaged())

    def get(self, item_id: int) -> HardExampleOut:
        with self.db.session() as s:
            return self._out(self._row(s, item_id))

    def label(self, item_id: int, route: str | None, *, actor: str, reason: str = "") -> HardExampleOut:
        """Approve the suggestion (``route`` None) or relabel; refuses a route no model knows and no
        tool serves."""
        with self.db.session() as s:
            item = self._row(s, item_id)
            chosen = route or item.suggested_route
            if not chosen:
                raise BadRequest(f"hard example {item_id} has no suggested label yet; name the route")
            why_not = self.route_check(chosen)
            if why_not is not None:
                raise BadRequest(why_not)
            item.status, item.label, item.labelled_by = HardExampleStatus.LABELLED.value, chosen, actor
            item.reason = reason or ("approved suggestion" if route is None else "relabelled")
            return self._out(item)

    def reject(self, item_id: int, *, actor: str, reason: str = "") -> HardExampleOut:
        with self.db.session() as s:
            item = self._row(s, item_id)
            item.status, item.label, item.labelled_by = HardExampleStatus.REJECTED.value, None, actor
            item.reason = reason or "rejected"
            return self._out(item)

    # -- datasets -------------------------------------------------------------------------------

    def labelled(self) -> list[tuple[str, str]]:
        """Every labelled (text, route): each item's text and its merged variants."""
        with self.db.session() as s:
            rows = s.scalars(
                select(HardExampleItem).where(HardExampleItem.status == HardExampleStatus.LABELLED.value)
            )
            pairs = {(t, r.label) for r in rows if r.label for t in [r.text, *(r.variants or [])]}
        return sorted(pairs)

    @staticmethod
    def dataset_body(pairs: list[tuple[str, str]]) -> bytes:
        """The canonical JSONL of a dataset (sorted pairs); its sha256 is the dataset's address."""
        return "".join(
            json.dumps({"text": t, "route": r}, ensure_ascii=False, sort_keys=True) + "\n" for t, r in pairs
        ).encode("utf-8")

    def snapshot(self) -> DatasetOut:
        """The labelled set as a content-addressed dataset (the same content -> the same version)."""
        pairs = self.labelled()
        if not pairs:
            raise Conflict("no labelled hard examples: label some before training")
        body = self.dataset_body(pairs)
        digest = hashlib.sha256(body).hexdigest()
        path = self.datasets_dir / f"{digest}.jsonl"
        if not path.is_file():
            self.datasets_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial")
            tmp.write_bytes(body)
            tmp.replace(path)
        routes: dict[str, int] = {}
        for _, r in pairs:
            routes[r] = routes.get(r, 0) + 1
        for _ in range(3):  # two workers snapshotting at once: the loser re-reads
            with self.db.session() as s:
                row = s.get(LoopDataset, digest)
                if row is not None:
                    return self._dataset_out(row)
            try:
                with self.db.session() as s:
                    version = int(s.scalar(select(func.max(LoopDataset.version))) or 0) + 1
                    row = LoopDataset(sha256=digest, version=version, size=len(pairs), routes=routes)
                    s.add(row)
                    s.flush()
                    return self._dataset_out(row)
            except IntegrityError:
                continue
        raise Conflict("could not record the dataset (concurrent snapshots); try again")

    def dataset_pairs(self, sha256: str) -> list[tuple[str, str]]:
        path = self.datasets_dir / f"{sha256}.jsonl"
        if not path.is_file():
            raise NotFound(f"dataset {sha256} is not stored")
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            out.append((str(d["text"]), str(d["route"])))
        return out

    def datasets(self) -> list[DatasetOut]:
        with self.db.session() as s:
            return [
                self._dataset_out(r)
                for r in s.scalars(select(LoopDataset).order_by(LoopDataset.version.desc()))
            ]

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _row(s: Any, item_id: int) -> HardExampleItem:
        item = s.get(HardExampleItem, item_id)
        if item is None:
            raise NotFound(f"no hard example {item_id}")
        return item  # type: ignore[no-any-return]

    @staticmethod
    def _dataset_out(r: LoopDataset) -> DatasetOut:
        return DatasetOut(
            sha256=r.sha256, version=r.version, size=r.size, routes=dict(r.routes), created_at=r.created_at
        )

    @staticmethod
    def _out(r: HardExampleItem) -> HardExampleOut:
        return HardExampleOut(
            id=r.id,
            text=r.text,
            status=HardExampleStatus(r.status),
            count=r.count,
            nodes=dict(r.nodes or {}),
            edge_routes=dict(r.edge_routes or {}),
            variants=list(r.variants or []),
            suggested_route=r.suggested_route,
            suggested_confidence=r.suggested_confidence,
            suggestion_source=SuggestionSource(r.suggestion_source or "none"),
            model_route=r.model_route,
            model_confidence=r.model_confidence,
            cloud_route=r.cloud_route,
            user_routes=dict(r.user_routes or {}),
            reasons=dict(r.reasons or {}),
            label=r.label,
            labelled_by=r.labelled_by or "",
            reason=r.reason or "",
            first_seen=r.first_seen,
            last_seen=r.last_seen,
        )
