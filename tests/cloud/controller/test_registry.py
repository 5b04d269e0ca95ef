"""Registry round trips, content addressing, alias history and all-or-nothing registration,
on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud.api.container import CloudServices
from cloud.db.models import Alias, AliasEvent, Blob, Model, ModelVersion, VersionFile
from cloud.registry.schemas import ModelCreate, VersionStatus, VersionUpdate
from contracts.bundle import generate_keypair, sha256_file
from contracts.errors import BadRequest, BundleError, Conflict, NotFound
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import make_settings


def _counts(svc: CloudServices) -> dict[str, int]:
    with svc.db.session() as s:
        return {
            t.__tablename__: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Model, ModelVersion, VersionFile, Blob, Alias, AliasEvent)
        }


def test_register_round_trip(services: CloudServices, tmp_path: Path) -> None:
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    out = services.registry.register_dir(b1, actor="admin:alice", tags={"team": "edge"})
    assert (out.model, out.version, out.kind, out.status) == (
        "tiny",
        "1.0.0",
        "full",
        VersionStatus.REGISTERED,
    )
    assert out.manifest_sha256 == sha256_file(b1 / "manifest.yaml")
    by_path = {f.path: f for f in out.files}
    assert set(by_path) == {"manifest.yaml", "encoder.onnx", "tokenizer.json", "adapters/default.safetensors"}
    for name, f in by_path.items():
        assert f.sha256 == sha256_file(b1 / name)
        assert services.store.open_path(f.sha256).read_bytes() == (b1 / name).read_bytes()
    assert out.lineage["base_encoder"]["id"] == "tiny-random"
    assert out.lineage["training"] == {"epochs": 1}
    assert out.tags == {"team": "edge"}
    assert out.created_by == "admin:alice"

    services.registry.register_dir(make_bundle(tmp_path / "b2", version="1.10.0", encoder_seed=1), actor="x")
    services.registry.register_dir(
        make_bundle(tmp_path / "b3", version="1.2.0-rc.1", encoder_seed=2), actor="x"
    )
    services.registry.register_dir(make_bundle(tmp_path / "b4", version="1.2.0", encoder_seed=3), actor="x")
    versions = [v.version for v in services.registry.list_versions("tiny")]
    assert versions == ["1.10.0", "1.2.0", "1.2.0-rc.1", "1.0.0"]  # semver order, not string order
    model = services.registry.get_model("tiny")
    assert model.latest_version == "1.10.0" and model.version_count == 4

    with pytest.raises(Conflict):
        services.registry.register_dir(
            make_bundle(tmp_path / "dup", version="1.0.0", adapter_seed=9), actor="x"
        )

    upd = services.registry.update_version(
        "tiny", "1.0.0", VersionUpdate(status=VersionStatus.STAGING, metrics={"acc": 0.9})
    )
    assert upd.status == VersionStatus.STAGING and upd.metrics["acc"] == 0.9
    assert services.registry.get_version("tiny", "1.0.0").metrics["acc"] == 0.9
    with pytest.raises(NotFound):
        services.registry.get_version("tiny", "9.9.9")
    with pytest.raises(Conflict):
        services.registry.create_model(ModelCreate(name="tiny"))


def test_adapter_update_shares_encoder_blob(services: CloudServices, tmp_path: Path) -> None:
    parent = make_bundle(tmp_path / "p", version="1.0.0")
    services.registry.register_dir(parent, actor="x")
    blobs_before = services.store.list_digests()
    child = make_bundle(tmp_path / "c", version="1.0.1", parent=parent, adapter_seed=7)
    out = services.registry.register_dir(child, actor="x")
    assert out.kind == "adapter_update" and out.parent == "tiny@1.0.0"
    files = {f.path: f for f in out.files}
    assert files["encoder.onnx"].inherited and files["tokenizer.json"].inherited
    assert files["encoder.onnx"].sha256 == sha256_file(parent / "encoder.onnx")
    new_blobs = set(services.store.list_digests()) - set(blobs_before)
    # Only the new adapter file and the new manifest were stored; the encoder is shared.
    assert new_blobs == {files["adapters/default.safetensors"].sha256, files["manifest.yaml"].sha256}
    path, sha = services.registry.file_blob("tiny", "1.0.1", "encoder.onnx")
    assert (
        sha == sha256_file(parent / "encoder.onnx")
        and path.read_bytes() == (parent / "encoder.onnx").read_bytes()
    )


def test_alias_moves_are_audited(services: CloudServices, tmp_path: Path) -> None:
    for i, v in enumerate(["1.0.0", "1.1.0"]):
        services.registry.register_dir(make_bundle(tmp_path / v, version=v, encoder_seed=i), actor="x")
    services.registry.set_alias("tiny", "stable", "1.0.0", actor="admin:alice", reason="first release")
    assert services.registry.get_version("tiny", "stable").version == "1.0.0"
    services.registry.set_alias("tiny", "stable", "1.1.0", actor="admin:bob", reason="better accuracy")
    services.registry.set_alias("tiny", "canary", "1.1.0", actor="admin:bob", reason="try it")
    services.registry.delete_alias("tiny", "canary", actor="admin:carol", reason="done")
    assert services.registry.get_version("tiny", "stable").version == "1.1.0"
    assert services.registry.get_version("tiny", "1.1.0").aliases == ["stable"]
    hist = [
        (e.alias, e.from_version, e.to_version, e.actor, e.reason)
        for e in services.registry.alias_history("tiny")
    ]
    assert hist == [
        ("stable", None, "1.0.0", "admin:alice", "first release"),
        ("stable", "1.0.0", "1.1.0", "admin:bob", "better accuracy"),
        ("canary", None, "1.1.0", "admin:bob", "try it"),
        ("canary", "1.1.0", None, "admin:carol", "done"),
    ]
    assert len(services.registry.alias_history("tiny", "stable")) == 2
    with pytest.raises(NotFound):
        services.registry.get_version("tiny", "canary")
    with pytest.raises(BadRequest):
        services.registry.set_alias("tiny", "stable", "1.0.0", actor="x", reason="  ")
    with pytest.raises(BadRequest):
        services.registry.set_alias(
            "tiny", "1.0.0", "1.0.0", actor="x", reason="alias that looks like a version"
        )
    with pytest.raises(NotFound):
        services.registry.set_alias("tiny", "stable", "7.0.0", actor="x", reason="no such version")


def _assert_empty(svc: CloudServices) -> None:
    assert _counts(svc) == {t: 0 for t in _counts(svc)}
    assert svc.store.list_digests() == []
    assert not [p for p in svc.store.root.rglob("*") if p.is_file()]  # no temp files either


def test_tampered_bundle_leaves_no_trace(services: CloudServices, tmp_path: Path) -> None:
    b = make_bundle(tmp_path / "b", version="1.0.0")
    (b / "adapters/default.safetensors").write_bytes(
        b"x" * (b / "adapters/default.safetensors").stat().st_size
    )
    with pytest.raises(BundleError, match="sha256 mismatch"):
        services.registry.register_dir(b, actor="x")
    _assert_empty(services)

    b2 = make_bundle(tmp_path / "b2", version="1.0.0")
    (b2 / "encoder.onnx").write_bytes(b"short")
    with pytest.raises(BundleError, match="truncated"):
        services.registry.register_dir(b2, actor="x")
    _assert_empty(services)


def test_failure_after_storing_files_removes_them(
    services: CloudServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object, **k: object) -> dict[str, object]:
        raise RuntimeError("database went away")

    monkeypatch.setattr(type(services.registry), "_lineage", staticmethod(boom))
    with pytest.raises(RuntimeError):
        services.registry.register_dir(make_bundle(tmp_path / "b", version="1.0.0"), actor="x")
    _assert_empty(services)


def test_adapter_update_needs_registered_parent(services: CloudServices, tmp_path: Path) -> None:
    parent = make_bundle(tmp_path / "p", version="1.0.0")
    child = make_bundle(tmp_path / "c", version="1.0.1", parent=parent)
    with pytest.raises(BundleError, match=r"parent tiny@1\.0\.0 is not registered"):
        services.registry.register_dir(child, actor="x")
    _assert_empty(services)
    # A parent with the same version but other content does not match the update's parent hash.
    services.registry.register_dir(
        make_bundle(tmp_path / "other", version="1.0.0", encoder_seed=5), actor="x"
    )
    with pytest.raises(BundleError, match="does not match"):
        services.registry.register_dir(child, actor="x")
    assert [v.version for v in services.registry.list_versions("tiny")] == ["1.0.0"]


def test_signature_required_when_key_configured(tmp_path: Path) -> None:
    key, pub = generate_keypair(tmp_path / "keys")
    settings = make_settings(tmp_path, bundle_public_key=pub.read_text().strip())
    svc = CloudServices.build(settings)
    try:
        with pytest.raises(BundleError, match="not signed"):
            svc.registry.register_dir(make_bundle(tmp_path / "unsigned"), actor="x")
        other_key, _ = generate_keypair(tmp_path / "other")
        with pytest.raises(BundleError, match="bad signature"):
            svc.registry.register_dir(make_bundle(tmp_path / "wrong", sign_key=other_key), actor="x")
        _assert_empty(svc)
        out = svc.registry.register_dir(make_bundle(tmp_path / "good", sign_key=key), actor="x")
        assert "manifest.sig" in {f.path for f in out.files}
    finally:
        svc.close()


def test_concurrent_registrations_of_one_version(services: CloudServices, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bundles = [make_bundle(tmp_path / f"c{i}", version="3.0.0", adapter_seed=i) for i in range(4)]

    def register(b: Path) -> str:
        try:
            services.registry.register_dir(b, actor="x")
            return "ok"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(register, bundles))
    assert outcomes == ["conflict", "conflict", "conflict", "ok"]
    v = services.registry.get_version("tiny", "3.0.0")
    for f in v.files:  # every file of the winner is in the store, byte-exact
        assert sha256_file(services.store.open_path(f.sha256)) == f.sha256
    assert len(services.store.list_digests()) == len(v.files)  # the losers left nothing behind
