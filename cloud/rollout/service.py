"""Rollout controller: drives each rollout through its steps, one ``tick`` at a time.

Every state change goes through :meth:`RolloutService._transition`, which checks it against
:data:`cloud.rollout.states.TRANSITIONS` and stores a ``RolloutEvent`` with its reason. ``tick``
is called periodically by the app (and directly by tests with a fake clock):

- APPLYING: send the step's new target nodes the desired version, then wait until each runs it
  (ack or heartbeat), failed to apply (ack with an error) or timed out. The fleet error budget
  (``max_failed_nodes`` / ``max_failed_ratio``) aborts the rollout when exceeded.
- BAKING: after ``pause_s``, analyse the canary nodes' metrics against the stable nodes' over the
  bake window: pass -> next step (or success after the last), fail -> abort and roll back,
  inconclusive (too little traffic) -> pause for a person.

A version with precision variants (``1.2.0``, ``1.2.0+int8``, ``1.2.0+fp16``: one checkpoint,
issue 17) is rolled out as one: each node is sent the variant its hardware runs best
(``cloud/rollout/variants.py``; the choice and why are kept in ``baselines.node_variants``), a
node "runs the version" when it runs its variant, a rollback sends each node the stable
version's variant for it, and the analysis compares latency variant by variant.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.engine import Database
from cloud.db.models import Model, ModelVersion, Rollout, RolloutEvent
from cloud.fleet.ledger import LedgerEntry
from cloud.fleet.service import FleetService
from cloud.registry.schemas import DEFAULT_RUNS_ON, VariantOut, VersionStatus, VersionUpdate
from cloud.registry.service import RegistryService
from cloud.rollout.analysis import analyze
from cloud.rollout.schemas import (
    AnalysisConfig,
    RolloutCreate,
    RolloutEventOut,
    RolloutOut,
    Verdict,
)
from cloud.rollout.states import TERMINAL, RolloutState, StepPhase, check_transition
from cloud.rollout.variants import choose_variant
from contracts.commands import Command, CommandAck
from contracts.errors import BadRequest, Conflict, NotFound
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.rollout")

TRANSITIONS_TOTAL = Counter(
    "autoglm_cloud_rollout_transitions_total", "Rollout state transitions", ["from_state", "to_state"]
)

ACTIVE = (RolloutState.PENDING.value, RolloutState.PROGRESSING.value, RolloutState.PAUSED.value)


def _ts(dt: datetime | None) -> float:
    if dt is None:
        return 0.0
    if dt.tzinfo is None:  # SQLite hands back naive datetimes
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def version_command(model: str, version: str, manifest_sha256: str) -> Command:
    return Command.set_desired_version(model, version, manifest_sha256)


class RolloutService:
    def __init__(
        self,
        db: Database,
        registry: RegistryService,
        fleet: FleetService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.registry = registry
        self.fleet = fleet
        self.clock = clock
        self._lock = threading.RLock()
        # Commands decided inside a database transaction are sent after it commits (the fleet
        # writes the node's desired version in its own transaction; SQLite allows one writer).
        self._commands: list[tuple[str, Command, int]] = []  # commands to send after it commits
        self._ack_failures: dict[int, dict[str, str]] = {}
        # Whether this replica drives rollouts (the leader); set by the container.
        self.leading: Callable[[], bool] = lambda: True
        fleet.add_ack_listener(self._on_ack)

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- create and read ----------------------------------------------------------------------

    def create(self, spec: RolloutCreate, *, actor: str) -> RolloutOut:
        target = self.registry.get_version(spec.model, spec.version)
        if target.status == VersionStatus.ARCHIVED:
            raise BadRequest(
                f"{spec.model}@{target.version} is archived; un-archive it before rolling it out"
            )
        stable = self.registry.alias_target(spec.model, "stable")
        if stable == target.version:
            raise BadRequest(f"{spec.model}@{target.version} already is the stable version")
        if not self.fleet.node_ids(spec.selector):
            raise BadRequest(f"no nodes match selector {spec.selector}")
        with self._lock, self.db.session() as s:
            m = s.scalar(select(Model).where(Model.name == spec.model))
            assert m is not None
            busy = s.scalar(select(Rollout).where(Rollout.model_id == m.id, Rollout.state.in_(ACTIVE)))
            if busy is not None:
                raise Conflict(
                    f"rollout #{busy.id} of {spec.model} is still {busy.state}; finish or abort it first"
                )
            v = s.scalar(
                select(ModelVersion).where(
                    ModelVersion.model_id == m.id, ModelVersion.version == target.version
                )
            )
            sv = (
                s.scalar(
                    select(ModelVersion).where(ModelVersion.model_id == m.id, ModelVersion.version == stable)
                )
                if stable
                else None
            )
            assert v is not None
            now = self._now_dt()
            r = Rollout(
                model_id=m.id,
                version_id=v.id,
                stable_version_id=sv.id if sv else None,
                mode="nodes",
                selector=dict(spec.selector),
                steps=list(spec.steps),
                config=spec.model_dump(
                    mode="json", exclude={"model", "version", "selector", "steps", "start"}
                ),
                state=RolloutState.PENDING.value,
                phase=StepPhase.APPLYING.value,
                step_index=0,
                step_started_at=now,
                phase_started_at=now,
                targets=[],
                failed_nodes={},
                baselines={"sent_step": -1},
                last_analysis={},
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            s.add(r)
            s.flush()
            self._event(s, r, RolloutState.PENDING, RolloutState.PENDING, f"created by {actor}", actor)
            rid = r.id
            self.registry.set_alias(  # with the rollout, in one transaction
                spec.model, "canary", target.version, actor=actor, reason=f"rollout #{rid} created", session=s
            )
        if spec.start:
            self._act(rid, RolloutState.PROGRESSING, actor, "started")
        return self.get(rid)

    def get(self, rollout_id: int) -> RolloutOut:
        with self.db.session() as s:
            return self._out(s, self._row(s, rollout_id), with_events=True)

    def list_rollouts(self, *, active_only: bool = False) -> list[RolloutOut]:
        with self.db.session() as s:
            q = select(Rollout).order_by(Rollout.id.desc())
            if active_only:
                q = q.where(Rollout.state.in_(ACTIVE))
            return [self._out(s, r, with_events=False) for r in s.scalars(q)]

    # -- manual actions -----------------------------------------------------------------------

    def pause(self, rollout_id: int, *, actor: str, reason: str = "") -> RolloutOut:
        self._act(rollout_id, RolloutState.PAUSED, actor, reason or "paused by hand")
        return self.get(rollout_id)

    def resume(self, rollout_id: int, *, actor: str, reason: str = "") -> RolloutOut:
        self._act(rollout_id, RolloutState.PROGRESSING, actor, reason or "resumed by hand")
        return self.get(rollout_id)

    def promote(self, rollout_id: int, *, actor: str, reason: str = "", full: bool = False) -> RolloutOut:
        """Argo's semantics. ``full=False``: end the current step's bake now, run its analysis on
        what was collected and go to the next step unless it fails (too little data does not
        block: the operator asked). ``full=True``: skip the remaining steps and analysis and send
        the version to every matching node."""
        with self._lock, self.db.session() as s:
            r = self._row(s, rollout_id)
            state = RolloutState(r.state)
            if state in TERMINAL:
                raise Conflict(f"rollout #{r.id} is already {r.state}")
            if full:
                r.step_index = len(r.steps) - 1
                r.phase = StepPhase.APPLYING.value
                r.phase_started_at = self._now_dt()
                r.baselines = {**r.baselines, "sent_step": -1, "promoted": True}
                self._transition(
                    s, r, RolloutState.PROGRESSING, reason or f"fully promoted by {actor}", actor
                )
            else:
                r.baselines = {**r.baselines, "skip_bake": r.step_index}
                why = reason or f"promoted by {actor}: step {r.step_index + 1} analysed now"
                self._transition(s, r, RolloutState.PROGRESSING, why, actor)  # a paused rollout resumes
        self.tick()
        return self.get(rollout_id)

    def abort(self, rollout_id: int, *, actor: str, reason: str = "") -> RolloutOut:
        self._act(rollout_id, RolloutState.ABORTED, actor, reason or f"aborted by {actor}")
        return self.get(rollout_id)

    def _act(self, rollout_id: int, dst: RolloutState, actor: str, reason: str) -> None:
        with self._lock:
            cmark = len(self._commands)
            try:
                with self.db.session() as s:
                    r = self._row(s, rollout_id)
                    if dst == RolloutState.ABORTED:
                        self._abort(s, r, reason, actor)
                    else:
                        if dst == RolloutState.PROGRESSING and r.state == RolloutState.PAUSED.value:
                            r.phase_started_at = self._now_dt()  # a fresh bake window / apply timeout
                        self._transition(s, r, dst, reason, actor)
            except BaseException:
                del self._commands[cmark:]  # nothing decided in a failed transaction is sent
                raise
            self._send_commands()
            if dst == RolloutState.PROGRESSING and self.leading():
                self.tick()  # followers leave the driving to the leader's loop

    # -- the controller -----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance every progressing rollout by at most one phase."""
        with self._lock:
            with self.db.session() as s:
                ids = list(
                    s.scalars(select(Rollout.id).where(Rollout.state == RolloutState.PROGRESSING.value))
                )
            for rid in ids:
                cmark = len(self._commands)
                try:
                    with self.db.session() as s:  # one transaction per rollout
                        r = self._row(s, rid)
                        if r.state != RolloutState.PROGRESSING.value:
                            continue
                        if r.phase == StepPhase.APPLYING.value:
                            self._tick_applying(s, r)
                        else:
                            self._tick_baking(s, r)
                except Exception:  # one broken rollout must not stop the others
                    del self._commands[cmark:]
                    log.exception("rollout tick failed", extra={"rollout_id": rid})
            self._send_commands()

    def _queue_command(self, node_id: str, command: Command, rollout_id: int) -> str:
        cid = uuid.uuid4().hex
        self._commands.append((node_id, command.with_id(cid), rollout_id))
        return cid

    def _send_commands(self) -> None:
        commands, self._commands = self._commands, []
        by_rollout: dict[int, list[tuple[str, Command]]] = {}
        for node_id, command, rid in commands:
            by_rollout.setdefault(rid, []).append((node_id, command))
        for rid, items in by_rollout.items():
            try:
                self.fleet.send_commands(items, rollout_id=rid)  # one batch per rollout
            except Exception:
                log.exception("sending rollout commands failed", extra={"rollout_id": rid})

    def _names(self, s: Session, r: Rollout) -> tuple[str, str, str | None, str]:
        m = s.get(Model, r.model_id)
        v = s.get(ModelVersion, r.version_id)
        sv = s.get(ModelVersion, r.stable_version_id) if r.stable_version_id else None
        assert m is not None and v is not None
        return m.name, v.version, sv.version if sv else None, v.manifest_sha256

    @staticmethod
    def _family(s: Session, v: ModelVersion) -> list[VariantOut]:
        """``v`` and its precision variants (just ``v`` when it has none or is itself a variant)."""
        fam = RegistryService.variant_family(s, v)
        if fam:
            return fam
        precision = str((v.manifest or {}).get("precision", ""))
        return [
            VariantOut(
                precision=precision,
                version=v.version,
                manifest_sha256=v.manifest_sha256,
                runs_on=list(DEFAULT_RUNS_ON.get(precision, ["cpu"])),
            )
        ]

    def _variant_for(self, fam: list[VariantOut], nid: str) -> tuple[VariantOut | None, str]:
        try:
            node = self.fleet.get(nid)
        except NotFound:
            return fam[0], "node unknown"
        return choose_variant(fam, fam[0], node.metrics, node.labels)

    @staticmethod
    def _want(r: Rollout, nid: str, version: str) -> str:
        """The version (variant) node ``nid`` is to run in this rollout."""
        chosen = (r.baselines.get("node_variants") or {}).get(nid)
        return str(chosen[0]) if chosen else version

    def _step_targets(self, r: Rollout) -> list[str]:
        pool = self.fleet.node_ids(r.selector)
        prev = [n for n in r.targets if n in pool]
        rest = sorted(
            (n for n in pool if n not in set(prev)),
            key=lambda n: hashlib.sha256(f"{r.id}:{n}".encode()).hexdigest(),
        )
        want = math.ceil(len(pool) * float(r.steps[r.step_index]) / 100.0)
        return (prev + rest)[: max(want, len(prev))]

    def _tick_applying(self, s: Session, r: Rollout) -> None:
        model, version, _stable, _ = self._names(s, r)
        now = self.clock()
        if r.baselines.get("sent_step") != r.step_index:
            targets = self._step_targets(r)
            new = [n for n in targets if n not in r.targets]
            v = s.get(ModelVersion, r.version_id)
            assert v is not None
            fam = self._family(s, v)
            chosen = dict(r.baselines.get("node_variants") or {})
            unfit: dict[str, str] = {}
            for nid in new:
                variant, why = self._variant_for(fam, nid) if len(fam) > 1 else (fam[0], "")
                if variant is None:
                    unfit[nid] = why
                    continue
                if len(fam) > 1:
                    chosen[nid] = [variant.version, variant.precision, why]
                view = self.fleet.live_view(nid)
                if view is not None and view[0] == variant.version:
                    continue  # already runs it
                command = version_command(model, variant.version, variant.manifest_sha256)
                self._queue_command(nid, command, r.id)
            if unfit:
                r.failed_nodes = {**r.failed_nodes, **unfit}
            r.targets = targets
            r.baselines = {**r.baselines, "sent_step": r.step_index, "node_variants": chosen}
            r.phase_started_at = self._now_dt()
            r.updated_at = self._now_dt()
            log.info(
                "rollout step sent",
                extra={"rollout_id": r.id, "step": r.step_index, "targets": len(targets), "new": len(new)},
            )
            return
        failed = dict(r.failed_nodes)
        failed.update(self._ack_failures.pop(r.id, {}))
        applied, waiting = [], []
        for nid in r.targets:
            view = self.fleet.live_view(nid)
            if view is not None and view[0] == self._want(r, nid, version):
                applied.append(nid)
                failed.pop(nid, None)
            elif nid not in failed:
                waiting.append(nid)
        timed_out = now - _ts(r.phase_started_at) > float(r.config.get("apply_timeout_s", 120.0))
        if timed_out:
            for nid in waiting:
                failed[nid] = "did not run the version before apply_timeout_s"
            waiting = []
        r.failed_nodes = failed
        budget_n = int(r.config.get("max_failed_nodes", 2))
        budget_ratio = float(r.config.get("max_failed_ratio", 0.2))
        if failed and (len(failed) > budget_n or len(failed) / max(len(r.targets), 1) > budget_ratio):
            self._abort(
                s,
                r,
                f"fleet error budget exceeded: {len(failed)} of {len(r.targets)} nodes failed to apply "
                f"(budget {budget_n} nodes / {budget_ratio:.0%})",
                "controller",
                details={"failed": failed},
            )
            return
        if waiting:
            return
        r.phase = StepPhase.BAKING.value
        r.phase_started_at = self._now_dt()
        r.updated_at = self._now_dt()

    def _tick_baking(self, s: Session, r: Rollout) -> None:
        model, version, _stable, _ = self._names(s, r)
        started = _ts(r.phase_started_at)
        promoted = bool(r.baselines.get("promoted"))
        skip_bake = r.baselines.get("skip_bake") == r.step_index  # `promote` without --full
        if not promoted and not skip_bake and self.clock() - started < float(r.config.get("pause_s", 60.0)):
            return
        last = r.step_index >= len(r.steps) - 1
        canary_nodes = [n for n in r.targets if n not in r.failed_nodes]
        stable_nodes = [n for n in self.fleet.node_ids(r.selector) if n not in set(r.targets)]
        v = s.get(ModelVersion, r.version_id)
        sv = s.get(ModelVersion, r.stable_version_id) if r.stable_version_id else None
        assert v is not None
        # like with like: each version string -> its precision variant (p99 is compared per variant)
        precision_of = {x.version: x.precision for x in self._family(s, v)}
        stable_of = {x.version: x.precision for x in self._family(s, sv)} if sv is not None else {}
        samples = self.fleet.samples(canary_nodes, started)
        canary = [x for x in samples if x.version in precision_of]
        base = [x for x in self.fleet.samples(stable_nodes, started) if x.version in stable_of]
        cfg = AnalysisConfig.model_validate(r.config.get("analysis", {}))
        if promoted:
            cfg = cfg.model_copy(update={"enabled": False})
        variant_of = {**stable_of, **precision_of}
        with_variants = len(precision_of) > 1 or len(stable_of) > 1
        result = analyze(canary, base, cfg, variant=variant_of.get if with_variants else None)
        r.last_analysis = {"step": r.step_index, **result.model_dump(mode="json")}
        details = {"analysis": r.last_analysis}
        if result.verdict == Verdict.FAIL:
            self._abort(
                s, r, f"analysis failed at step {r.step_index + 1}: {result.reason}", "controller", details
            )
        elif result.verdict == Verdict.INCONCLUSIVE and not skip_bake:
            self._transition(
                s,
                r,
                RolloutState.PAUSED,
                f"inconclusive at step {r.step_index + 1}: {result.reason}",
                "controller",
                details,
            )
        elif last:
            self._transition(
                s, r, RolloutState.SUCCEEDED, f"all steps passed: {result.reason}", "controller", details
            )
            self._finish_success(s, r, model, version)
        else:
            r.step_index += 1
            r.phase = StepPhase.APPLYING.value
            r.step_started_at = self._now_dt()
            self._transition(
                s,
                r,
                RolloutState.PROGRESSING,
                f"step {r.step_index} passed ({result.reason}); next step {r.steps[r.step_index]:g}%",
                "controller",
                details,
            )

    def _finish_success(self, s: Session, r: Rollout, model: str, version: str) -> None:
        """The aliases move in the verdict's own transaction: nobody reads "succeeded" beside
        the old stable alias, or a canary alias that should be gone."""
        reason = f"rollout #{r.id} succeeded"
        actor = f"rollout#{r.id}"
        self.registry.set_alias(model, "stable", version, actor=actor, reason=reason, session=s)
        self.registry.update_version(
            model, version, VersionUpdate(status=VersionStatus.PRODUCTION), session=s
        )
        with contextlib.suppress(NotFound):
            self.registry.delete_alias(model, "canary", actor=actor, reason=reason, session=s)

    def _abort(
        self, s: Session, r: Rollout, reason: str, actor: str, details: dict[str, Any] | None = None
    ) -> None:
        check_transition(RolloutState(r.state), RolloutState.ABORTED)
        model, _version, stable, _ = self._names(s, r)
        rolled_back: list[str] = []
        if stable is not None:
            sv = s.get(ModelVersion, r.stable_version_id)
            assert sv is not None
            fam = self._family(s, sv)
            for nid in r.targets:
                view = self.fleet.live_view(nid)
                if view is None:
                    continue
                back, _why = self._variant_for(fam, nid) if len(fam) > 1 else (fam[0], "")
                back = back or fam[0]  # a pin the stable version lacks: its own version
                current, desired, _online, _err = view
                if current == back.version and desired == back.version:
                    continue
                self._queue_command(nid, version_command(model, back.version, back.manifest_sha256), r.id)
                rolled_back.append(nid)
            note = f"; {len(rolled_back)} canary nodes sent back to {stable}"
        else:
            note = "; no stable version to roll back to (nodes keep their version)"
        self._transition(
            s, r, RolloutState.ABORTED, reason + note, actor, {**(details or {}), "rolled_back": rolled_back}
        )
        with contextlib.suppress(NotFound):  # in the verdict's transaction, as on success
            self.registry.delete_alias(
                model, "canary", actor=actor, reason=f"rollout #{r.id} aborted: {reason}", session=s
            )

    # -- state machine plumbing ---------------------------------------------------------------

    def _transition(
        self,
        s: Session,
        r: Rollout,
        dst: RolloutState,
        reason: str,
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        src = RolloutState(r.state)
        check_transition(src, dst)
        r.state = dst.value
        r.updated_at = self._now_dt()
        self._event(s, r, src, dst, reason, actor, details)
        TRANSITIONS_TOTAL.labels(from_state=src.value, to_state=dst.value).inc()
        log.info(
            "rollout transition",
            extra={"rollout_id": r.id, "from": src.value, "to": dst.value, "reason": reason, "actor": actor},
        )

    def _event(
        self,
        s: Session,
        r: Rollout,
        src: RolloutState,
        dst: RolloutState,
        reason: str,
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        s.add(
            RolloutEvent(
                rollout_id=r.id,
                from_state=src.value,
                to_state=dst.value,
                step_index=r.step_index,
                actor=actor,
                reason=reason,
                details=details or {},
                at=self._now_dt(),
            )
        )

    def _on_ack(self, node_id: str, ack: CommandAck, entry: LedgerEntry | None) -> None:
        rid = entry.rollout_id if entry is not None else None  # the ledger knows the rollout
        if rid is not None and not ack.ok:
            self._ack_failures.setdefault(rid, {})[node_id] = ack.detail or "node could not apply the version"

    @staticmethod
    def _row(s: Session, rollout_id: int) -> Rollout:
        r = s.get(Rollout, rollout_id)
        if r is None:
            raise NotFound(f"rollout #{rollout_id} does not exist")
        return r

    def _out(self, s: Session, r: Rollout, *, with_events: bool) -> RolloutOut:
        model, version, stable, _ = self._names(s, r)
        applied = []
        for nid in r.targets:
            view = self.fleet.live_view(nid)
            if view is not None and view[0] == self._want(r, nid, version):
                applied.append(nid)
        events = []
        if with_events:
            events = [
                RolloutEventOut(
                    from_state=e.from_state,
                    to_state=e.to_state,
                    step_index=e.step_index,
                    actor=e.actor,
                    reason=e.reason,
                    details=e.details,
                    at=e.at,
                )
                for e in s.scalars(
                    select(RolloutEvent).where(RolloutEvent.rollout_id == r.id).order_by(RolloutEvent.id)
                )
            ]
        return RolloutOut(
            id=r.id,
            model=model,
            version=version,
            stable_version=stable,
            state=r.state,
            phase=r.phase,
            step_index=r.step_index,
            steps=list(r.steps),
            selector=dict(r.selector),
            config=dict(r.config),
            targets=list(r.targets),
            applied=applied,
            node_variants={nid: str(c[0]) for nid, c in (r.baselines.get("node_variants") or {}).items()},
            failed_nodes=dict(r.failed_nodes),
            last_analysis=dict(r.last_analysis),
            created_by=r.created_by,
            created_at=r.created_at,
            updated_at=r.updated_at,
            events=events,
        )
