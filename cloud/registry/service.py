"""Registry service: the one place that reads and writes models, versions, files and aliases.

Registration is all-or-nothing: the bundle is verified before anything is written, blobs that
this call added are removed again if the database transaction fails, and the rows go in one
transaction. An ``adapter_update`` bundle must name a registered parent (matching manifest
hash); its version lists the parent's encoder graph and tokenizer as inherited files that point
at the very same blobs.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.db.engine import Database
from cloud.db.models import Alias, AliasEvent, Blob, Model, ModelVersion, VersionFile, utcnow
from cloud.registry.bundle_check import CheckedBundle, check_bundle, extract_archive
from cloud.registry.schemas import (
    DEFAULT_RUNS_ON,
    AliasEventOut,
    FileOut,
    ModelCreate,
    ModelOut,
    VariantOut,
    VersionOut,
    VersionStatus,
    VersionUpdate,
)
from cloud.registry.semver import is_semver, parse_semver
from cloud.store.cas import BlobStore
from contracts.errors import BadRequest, BundleError, Conflict, NotFound
from contracts.logging import get_logger
from contracts.manifest import MANIFEST_FILE

log = get_logger("autoglm.cloud.registry")

ALIAS_NAME_RE = r"^[a-z][a-z0-9_-]{0,63}$"


class RegistryService:
    def __init__(self, db: Database, store: BlobStore, *, public_key: str | None = None) -> None:
        self.db = db
        self.store = store
        self.public_key = public_key or None
        self._register_lock = threading.Lock()

    # -- models -------------------------------------------------------------------------------

    def create_model(self, spec: ModelCreate) -> ModelOut:
        with self.db.session() as s:
            if s.scalar(select(Model).where(Model.name == spec.name)) is not None:
                raise Conflict(f"model {spec.name!r} already exists")
            m = Model(name=spec.name, description=spec.description, tags=dict(spec.tags))
            s.add(m)
            s.flush()
            return self._model_out(s, m)

    def list_models(self) -> list[ModelOut]:
        with self.db.session() as s:
            return [self._model_out(s, m) for m in s.scalars(select(Model).order_by(Model.name))]

    def get_model(self, name: str) -> ModelOut:
        with self.db.session() as s:
            return self._model_out(s, self._model(s, name))

    # -- versions -----------------------------------------------------------------------------

    def list_versions(self, model: str) -> list[VersionOut]:
        with self.db.session() as s:
            m = self._model(s, model)
            rows = list(s.scalars(select(ModelVersion).where(ModelVersion.model_id == m.id)))
            rows.sort(key=lambda v: parse_semver(v.version).sort_key(), reverse=True)
            return [self._version_out(s, v, with_files=False) for v in rows]

    def get_version(self, model: str, ref: str) -> VersionOut:
        """``ref`` is a version (``1.2.0``) or an alias (``stable``)."""
        with self.db.session() as s:
            return self._version_out(s, self._resolve(s, model, ref), with_files=True)

    def update_version(
        self, model: str, version: str, patch: VersionUpdate, *, session: Session | None = None
    ) -> VersionOut:
        """``session``: run inside the caller's transaction (a rollout commits its verdict and
        the version's status together) instead of one of the registry's own."""
        with self._tx(session) as s:
            v = self._resolve(s, model, version)
            if patch.status is not None:
                v.status = patch.status.value
            if patch.metrics is not None:
                v.metrics = {**v.metrics, **patch.metrics}
            if patch.tags is not None:
                v.tags = {**v.tags, **patch.tags}
            s.flush()
            return self._version_out(s, v, with_files=True)

    def file_blob(self, model: str, ref: str, path: str) -> tuple[Path, str]:
        """The stored blob for one file of a version: (path on disk, sha256)."""
        with self.db.session() as s:
            v = self._resolve(s, model, ref)
            f = s.scalar(select(VersionFile).where(VersionFile.version_id == v.id, VersionFile.path == path))
            if f is None:
                raise NotFound(f"{model}@{v.version} has no file {path!r}")
            return self.store.open_path(f.sha256), f.sha256

    # -- registration -------------------------------------------------------------------------

    def register_archive(self, archive: Path, *, actor: str, **extra: Any) -> VersionOut:
        with tempfile.TemporaryDirectory(prefix="autoglm-upload-") as tmp:
            root = extract_archive(archive, Path(tmp))
            return self.register_dir(root, actor=actor, **extra)

    def register_path(self, path: Path, *, actor: str, **extra: Any) -> VersionOut:
        if path.is_dir():
            return self.register_dir(path, actor=actor, **extra)
        if path.is_file():
            return self.register_archive(path, actor=actor, **extra)
        raise BadRequest(f"{path}: no such bundle directory or archive")

    def register_dir(
        self,
        root: Path,
        *,
        actor: str,
        metrics: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
    ) -> VersionOut:
        checked = check_bundle(root, self.public_key)
        man = checked.manifest
        sv = parse_semver(man.version)
        with self._register_lock:  # one registration at a time: blob bookkeeping stays exact
            with self.db.session() as s:  # fail fast, before copying any file
                m = s.scalar(select(Model).where(Model.name == man.name))
                if m is not None and self._find_version(s, m.id, man.version) is not None:
                    raise Conflict(f"{man.name}@{man.version} is already registered")
                parent_files = self._parent_files(s, checked)
                self._check_variant(s, m, checked)
            added: list[str] = []
            try:
                stored: dict[str, tuple[str, int]] = {}
                for name, path in checked.files.items():
                    expected = man.files[name].sha256 if name in man.files else None
                    digest, size, new = self.store.put_file(path, expected)
                    stored[name] = (digest, size)
                    if new:
                        added.append(digest)
                with self.db.session() as s:
                    m = s.scalar(select(Model).where(Model.name == man.name))
                    if m is None:
                        m = Model(name=man.name, description=description, tags={})
                        s.add(m)
                        s.flush()
                    parent_id = None
                    if man.parent is not None:
                        pm = self._model(s, man.parent.name)
                        pv = self._find_version(s, pm.id, man.parent.version)
                        parent_id = pv.id if pv else None
                    v = ModelVersion(
                        model_id=m.id,
                        version=man.version,
                        major=sv.major,
                        minor=sv.minor,
                        patch=sv.patch,
                        prerelease=sv.prerelease,
                        status=VersionStatus.REGISTERED.value,
                        kind=man.kind,
                        manifest_sha256=stored[MANIFEST_FILE][0],
                        manifest=man.model_dump(mode="json"),
                        metrics={**man.metrics.model_dump(mode="json"), **(metrics or {})},
                        lineage=self._lineage(checked, lineage or {}),
                        tags=dict(tags or {}),
                        parent_id=parent_id,
                        created_by=actor,
                    )
                    s.add(v)
                    s.flush()
                    all_files = {name: (d, sz, False) for name, (d, sz) in stored.items()}
                    for name, (d, sz) in parent_files.items():
                        all_files.setdefault(name, (d, sz, True))
                    for d, sz, _ in all_files.values():
                        if s.get(Blob, d) is None:
                            s.add(Blob(sha256=d, size=sz))
                    s.flush()
                    for name, (d, sz, inh) in sorted(all_files.items()):
                        s.add(VersionFile(version_id=v.id, path=name, sha256=d, size=sz, inherited=inh))
                    s.flush()
                    out = self._version_out(s, v, with_files=True)
            except IntegrityError as exc:
                self._discard(added)
                raise Conflict(f"{man.name}@{man.version}: conflicts with a concurrent registration") from exc
            except BaseException:
                self._discard(added)
                raise
        log.info("registered version", extra={"model": man.name, "version": man.version, "actor": actor})
        return out

    def _discard(self, digests: list[str]) -> None:
        """Remove blobs this registration added, unless some committed version uses them."""
        if not digests:
            return
        with self.db.session() as s:
            used = set(s.scalars(select(VersionFile.sha256).where(VersionFile.sha256.in_(digests))))
        for d in digests:
            if d not in used:
                self.store.delete(d)

    def _parent_files(self, s: Session, checked: CheckedBundle) -> dict[str, tuple[str, int]]:
        man = checked.manifest
        if man.parent is None:
            return {}
        pm = s.scalar(select(Model).where(Model.name == man.parent.name))
        pv = self._find_version(s, pm.id, man.parent.version) if pm is not None else None
        if pv is None:
            raise BundleError(f"parent {man.parent.name}@{man.parent.version} is not registered")
        if pv.manifest_sha256 != man.parent.manifest_sha256:
            raise BundleError(
                f"parent {man.parent.name}@{man.parent.version}: manifest sha256 {pv.manifest_sha256} "
                f"does not match the bundle's {man.parent.manifest_sha256}"
            )
        pfiles = {f.path: f for f in s.scalars(select(VersionFile).where(VersionFile.version_id == pv.id))}
        wanted = [g.file for g in man.graphs.values() if g.from_parent]
        if man.tokenizer.from_parent:
            wanted.append(man.tokenizer.file)
        out: dict[str, tuple[str, int]] = {}
        for name in wanted:
            f = pfiles.get(name)
            if f is None:
                raise BundleError(f"parent {man.parent.name}@{man.parent.version} has no file {name!r}")
            out[name] = (f.sha256, f.size)
        return out

    def _check_variant(self, s: Session, m: Model | None, checked: CheckedBundle) -> None:
        """A precision variant names a registered version of the same model, built from the same
        checkpoint (its own guard numbers come with its own manifest)."""
        man = checked.manifest
        if man.variant is None:
            return
        of = man.variant.of
        fam = self._find_version(s, m.id, of) if m is not None else None
        if fam is None:
            raise BundleError(
                f"{man.name}@{man.version} is a {man.precision} variant of {of}, which is not registered"
            )
        fam_man = fam.manifest or {}
        if fam_man.get("variant"):
            raise BundleError(
                f"{man.name}@{of} is itself a variant; register variants of the version they derive from"
            )
        if fam_man.get("precision") == man.precision:
            raise BundleError(
                f"{man.name}@{of} already is {man.precision}; a variant must differ in precision"
            )
        fam_ckpt = (fam_man.get("provenance") or {}).get("checkpoint_sha256")
        if fam_ckpt != man.provenance.checkpoint_sha256:
            raise BundleError(
                f"{man.name}@{man.version}: checkpoint {man.provenance.checkpoint_sha256[:12]} differs from "
                f"{of}'s {str(fam_ckpt)[:12]}; variants are exports of one checkpoint"
            )

    def variants(self, model: str, ref: str) -> list[VariantOut]:
        """The version (or alias) ``ref`` and its precision variants, itself first."""
        with self.db.session() as s:
            v = self._resolve(s, model, ref)
            return self.variant_family(s, v)

    @staticmethod
    def variant_family(s: Session, v: ModelVersion) -> list[VariantOut]:
        """``v`` and its precision variants, ``v`` first; empty when ``v`` is itself a variant."""
        man = v.manifest or {}
        if man.get("variant"):
            return []
        precision = str(man.get("precision", ""))
        out = [
            VariantOut(
                precision=precision,
                version=v.version,
                manifest_sha256=v.manifest_sha256,
                runs_on=list(DEFAULT_RUNS_ON.get(precision, ["cpu"])),
            )
        ]
        prefix = f"{v.version}+"
        rows = s.execute(
            select(ModelVersion.version, ModelVersion.manifest_sha256, ModelVersion.manifest).where(
                ModelVersion.model_id == v.model_id, ModelVersion.version.startswith(prefix, autoescape=True)
            )
        )
        others = []
        for version, sha, vm in rows:
            var = (vm or {}).get("variant") or {}
            if var.get("of") == v.version:
                others.append(
                    VariantOut(
                        precision=str(vm.get("precision", "")),
                        version=version,
                        manifest_sha256=sha,
                        runs_on=list(var.get("runs_on") or []),
                    )
                )
        return out + sorted(others, key=lambda x: x.precision)

    @staticmethod
    def _lineage(checked: CheckedBundle, extra: dict[str, Any]) -> dict[str, Any]:
        man = checked.manifest
        lineage: dict[str, Any] = {
            "base_encoder": {"id": man.base_encoder.id, "sha256": man.base_encoder.sha256},
            "checkpoint_sha256": man.provenance.checkpoint_sha256,
            "training": man.provenance.training,
            "dataset_sha256": man.provenance.training.get("dataset_sha256"),  # the trainer records it
            "git_commit": man.provenance.git_commit,
            "parent": f"{man.parent.name}@{man.parent.version}" if man.parent else None,
        }
        lineage.update(extra)
        return lineage

    @contextlib.contextmanager
    def _tx(self, session: Session | None) -> Iterator[Session]:
        """The caller's transaction when it passes one (it commits), else one of our own."""
        if session is not None:
            yield session
            return
        with self.db.session() as s:
            yield s

    # -- aliases ------------------------------------------------------------------------------

    def set_alias(
        self,
        model: str,
        alias: str,
        version: str,
        *,
        actor: str,
        reason: str,
        session: Session | None = None,
    ) -> AliasEventOut:
        """``session``: as for :meth:`update_version`."""
        import re

        if not re.match(ALIAS_NAME_RE, alias) or is_semver(alias):
            raise BadRequest(
                f"alias {alias!r} must be lower-case letters, digits, '-' or '_' (not a version)"
            )
        if not reason.strip():
            raise BadRequest("an alias move needs a reason")
        with self._tx(session) as s:
            m = self._model(s, model)
            v = self._find_version(s, m.id, version)
            if v is None:
                raise NotFound(f"{model}@{version} is not registered")
            a = s.scalar(select(Alias).where(Alias.model_id == m.id, Alias.name == alias))
            prev = None
            if a is None:
                s.add(Alias(model_id=m.id, name=alias, version_id=v.id))
            else:
                prev_v = s.get(ModelVersion, a.version_id)
                prev = prev_v.version if prev_v else None
                a.version_id = v.id
                a.updated_at = utcnow()
            ev = AliasEvent(
                model_id=m.id,
                alias=alias,
                from_version=prev,
                to_version=v.version,
                actor=actor,
                reason=reason,
            )
            s.add(ev)
            s.flush()
            return self._event_out(m.name, ev)

    def delete_alias(
        self, model: str, alias: str, *, actor: str, reason: str, session: Session | None = None
    ) -> AliasEventOut:
        """``session``: as for :meth:`update_version`."""
        with self._tx(session) as s:
            m = self._model(s, model)
            a = s.scalar(select(Alias).where(Alias.model_id == m.id, Alias.name == alias))
            if a is None:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            prev_v = s.get(ModelVersion, a.version_id)
            s.delete(a)
            ev = AliasEvent(
                model_id=m.id,
                alias=alias,
                from_version=prev_v.version if prev_v else None,
                to_version=None,
                actor=actor,
                reason=reason,
            )
            s.add(ev)
            s.flush()
            return self._event_out(m.name, ev)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasEventOut]:
        with self.db.session() as s:
            m = self._model(s, model)
            q = select(AliasEvent).where(AliasEvent.model_id == m.id)
            if alias:
                q = q.where(AliasEvent.alias == alias)
            return [self._event_out(m.name, e) for e in s.scalars(q.order_by(AliasEvent.id))]

    def alias_target(self, model: str, alias: str) -> str | None:
        with self.db.session() as s:
            m = self._model(s, model)
            a = s.scalar(select(Alias).where(Alias.model_id == m.id, Alias.name == alias))
            if a is None:
                return None
            v = s.get(ModelVersion, a.version_id)
            return v.version if v else None

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _model(s: Session, name: str) -> Model:
        m = s.scalar(select(Model).where(Model.name == name))
        if m is None:
            raise NotFound(f"model {name!r} is not registered")
        return m

    @staticmethod
    def _find_version(s: Session, model_id: int, version: str) -> ModelVersion | None:
        return s.scalar(
            select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.version == version)
        )

    def _resolve(self, s: Session, model: str, ref: str) -> ModelVersion:
        m = self._model(s, model)
        v = self._find_version(s, m.id, ref)
        if v is None:
            a = s.scalar(select(Alias).where(Alias.model_id == m.id, Alias.name == ref))
            v = s.get(ModelVersion, a.version_id) if a is not None else None
        if v is None:
            raise NotFound(f"{model} has no version or alias {ref!r}")
        return v

    def _model_out(self, s: Session, m: Model) -> ModelOut:
        versions = list(s.scalars(select(ModelVersion).where(ModelVersion.model_id == m.id)))
        # a precision variant (1.2.0+int8) ties with its version (1.2.0) in semver order: the version wins
        latest = (
            max(versions, key=lambda v: (parse_semver(v.version).sort_key(), "+" not in v.version)).version
            if versions
            else None
        )
        aliases = {}
        for a in s.scalars(select(Alias).where(Alias.model_id == m.id)):
            v = s.get(ModelVersion, a.version_id)
            if v is not None:
                aliases[a.name] = v.version
        count = (
            s.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.model_id == m.id)) or 0
        )
        return ModelOut(
            name=m.name,
            description=m.description,
            tags=m.tags,
            created_at=m.created_at,
            latest_version=latest,
            version_count=count,
            aliases=aliases,
        )

    def _version_out(self, s: Session, v: ModelVersion, *, with_files: bool) -> VersionOut:
        m = s.get(Model, v.model_id)
        assert m is not None
        parent = s.get(ModelVersion, v.parent_id) if v.parent_id else None
        parent_ref = None
        if parent is not None:
            pm = s.get(Model, parent.model_id)
            parent_ref = f"{pm.name if pm else m.name}@{parent.version}"
        aliases = [
            a.name for a in s.scalars(select(Alias).where(Alias.version_id == v.id).order_by(Alias.name))
        ]
        files = []
        if with_files:
            files = [
                FileOut(path=f.path, sha256=f.sha256, size=f.size, inherited=f.inherited)
                for f in s.scalars(
                    select(VersionFile).where(VersionFile.version_id == v.id).order_by(VersionFile.path)
                )
            ]
        man = v.manifest or {}
        return VersionOut(
            model=m.name,
            version=v.version,
            status=VersionStatus(v.status),
            kind=v.kind,
            manifest_sha256=v.manifest_sha256,
            metrics=v.metrics,
            lineage=v.lineage,
            tags=v.tags,
            parent=parent_ref,
            aliases=aliases,
            created_by=v.created_by,
            created_at=v.created_at,
            files=files,
            precision=str(man.get("precision", "")),
            variant_of=(man.get("variant") or {}).get("of"),
            variants=self.variant_family(s, v) if with_files else [],
        )

    @staticmethod
    def _event_out(model: str, e: AliasEvent) -> AliasEventOut:
        return AliasEventOut(
            model=model,
            alias=e.alias,
            from_version=e.from_version,
            to_version=e.to_version,
            actor=e.actor,
            reason=e.reason,
            at=e.at,
        )
