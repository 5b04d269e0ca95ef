"""Bundle verification without torch/onnx: every kind of tampering fails naming the problem."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from contracts.bundle import (
    generate_keypair,
    open_bundle,
    pack_bundle,
    sign_bundle,
    unpack_bundle,
)
from contracts.errors import BundleError
from tests.contracts.bundle_factory import make_bundle


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def test_clean_bundle_opens(bundle_dir: Path) -> None:
    b = open_bundle(bundle_dir)
    assert b.files_verified and not b.signature_verified
    assert b.file("encoder") == bundle_dir / "encoder.fp32.onnx"
    assert b.file("tokenizer") == bundle_dir / "tokenizer.json"
    assert b.file("adapter:default") == bundle_dir / "adapters/default.safetensors"
    assert b.file("tokenizer.json").is_file()
    with pytest.raises(BundleError, match="no graph role or file 'hop_scorer'"):
        b.file("hop_scorer")


def test_modified_file(bundle_dir: Path) -> None:
    p = bundle_dir / "encoder.fp32.onnx"
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"'encoder.fp32.onnx' sha256 mismatch"):
        open_bundle(bundle_dir)


def test_truncated_file(bundle_dir: Path) -> None:
    p = bundle_dir / "adapters/default.safetensors"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"'adapters/default.safetensors' is truncated"):
        open_bundle(bundle_dir)


def test_missing_file(bundle_dir: Path) -> None:
    (bundle_dir / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"missing file 'tokenizer\.json'"):
        open_bundle(bundle_dir)


def test_wrong_hash_in_manifest(bundle_dir: Path) -> None:
    data = yaml.safe_load((bundle_dir / "manifest.yaml").read_text())
    data["files"]["tokenizer.json"]["sha256"] = "0" * 64
    (bundle_dir / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BundleError, match=r"'tokenizer\.json' sha256 mismatch"):
        open_bundle(bundle_dir)


def test_unknown_schema_version(bundle_dir: Path) -> None:
    data = yaml.safe_load((bundle_dir / "manifest.yaml").read_text())
    data["schema_version"] = 7
    (bundle_dir / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BundleError, match="unknown schema_version 7"):
        open_bundle(bundle_dir)


def test_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a bundle"):
        open_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such bundle directory"):
        open_bundle(tmp_path / "nope")


def test_signature_round_trip(bundle_dir: Path, keys: tuple[Path, Path]) -> None:
    secret, public = keys
    sign_bundle(bundle_dir, secret)
    assert open_bundle(bundle_dir, public_key=public).signature_verified
    assert open_bundle(bundle_dir, public_key=public.read_bytes()).signature_verified
    assert not open_bundle(bundle_dir).signature_verified  # no key: signature left unchecked


def test_bad_signature_after_manifest_edit(bundle_dir: Path, keys: tuple[Path, Path]) -> None:
    secret, public = keys
    sign_bundle(bundle_dir, secret)
    text = (bundle_dir / "manifest.yaml").read_text()
    (bundle_dir / "manifest.yaml").write_text(text.replace("temperature: 1.5", "temperature: 2.5"))
    with pytest.raises(BundleError, match="bad signature"):
        open_bundle(bundle_dir, public_key=public)


def test_signature_from_other_key(bundle_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    other_secret, _ = generate_keypair(tmp_path / "other")
    sign_bundle(bundle_dir, other_secret)
    with pytest.raises(BundleError, match="bad signature"):
        open_bundle(bundle_dir, public_key=keys[1])


def test_unsigned_with_key(bundle_dir: Path, keys: tuple[Path, Path]) -> None:
    with pytest.raises(BundleError, match="not signed"):
        open_bundle(bundle_dir, public_key=keys[1])


def test_keygen_refuses_overwrite(keys: tuple[Path, Path]) -> None:
    secret, _ = keys
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(BundleError, match="already exists"):
        generate_keypair(secret.parent)


def test_bad_key_file(bundle_dir: Path, tmp_path: Path) -> None:
    k = tmp_path / "k.pub"
    k.write_text("not a key")
    with pytest.raises(BundleError, match="not an ed25519 key"):
        open_bundle(bundle_dir, public_key=k)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_archive_round_trip(bundle_dir: Path, keys: tuple[Path, Path], tmp_path: Path, suffix: str) -> None:
    sign_bundle(bundle_dir, keys[0])
    archive = pack_bundle(bundle_dir, tmp_path / f"b{suffix}")
    with pytest.raises(BundleError, match="unpack it first"):
        open_bundle(archive)
    out = unpack_bundle(archive, tmp_path / "unpacked")
    b = open_bundle(out, public_key=keys[1])
    assert b.signature_verified and b.manifest.version == "1.0.0"
    with pytest.raises(BundleError, match="not empty"):
        unpack_bundle(archive, out)


def test_archive_with_escaping_member_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(BundleError, match="leave the destination"):
        unpack_bundle(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_archive_with_symlink_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.yaml")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(BundleError, match="not a regular file"):
        unpack_bundle(archive, tmp_path / "out")


def test_adapter_update_needs_parent_for_graph(bundle_dir: Path, tmp_path: Path) -> None:
    from contracts.manifest import Manifest, ParentRef

    parent = open_bundle(bundle_dir)
    update = tmp_path / "update"
    shutil.copytree(bundle_dir, update)
    (update / "encoder.fp32.onnx").unlink()
    (update / "tokenizer.json").unlink()
    m = parent.manifest
    files = {k: v for k, v in m.files.items() if k.startswith("adapters/")}
    upd = Manifest(
        **{
            **m.model_dump(),
            "kind": "adapter_update",
            "version": "1.0.1",
            "files": files,
            "graphs": {
                r: g.model_copy(update={"from_parent": True}).model_dump() for r, g in m.graphs.items()
            },
            "tokenizer": {**m.tokenizer.model_dump(), "from_parent": True},
            "parent": ParentRef(
                name=m.name, version=m.version, manifest_sha256=parent.manifest_sha256
            ).model_dump(),
        }
    )
    (update / "manifest.yaml").write_text(upd.to_yaml())
    alone = open_bundle(update)
    with pytest.raises(BundleError, match=r"lives in parent bundle router@1\.0\.0"):
        alone.file("encoder")
    joined = open_bundle(update, parent=bundle_dir)
    assert joined.file("encoder") == bundle_dir / "encoder.fp32.onnx"
    assert joined.tokenizer_file() == bundle_dir / "tokenizer.json"
    # a different parent (another manifest) is refused
    other = tmp_path / "other"
    shutil.copytree(bundle_dir, other)
    text = (other / "manifest.yaml").read_text().replace("version: 1.0.0", "version: 1.0.5")
    (other / "manifest.yaml").write_text(text)
    with pytest.raises(BundleError, match=r"the update needs router@1\.0\.0"):
        open_bundle(update, parent=other)
