"""The manifest schema: YAML round trip, version gate, validation with readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contracts.errors import BundleError
from contracts.manifest import (
    SCHEMA_VERSION,
    GraphEntry,
    Manifest,
    ParentRef,
    TensorRTEngine,
    default_signature,
)
from tests.contracts.bundle_factory import make_manifest, write_files


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return make_manifest(write_files(tmp_path))


def test_yaml_round_trip(manifest: Manifest) -> None:
    text = manifest.to_yaml()
    again = Manifest.from_yaml(text)
    assert again == manifest
    assert again.to_yaml() == text
    assert again.schema_version == SCHEMA_VERSION
    assert again.adapter_sets["default"].tensors["adapters.0.down.weight"].transposed is True


def test_round_trip_with_optional_parts(manifest: Manifest) -> None:
    files = dict(manifest.files)
    from contracts.manifest import FileEntry

    files["engines/encoder.fp16.sm90.plan"] = FileEntry(sha256="c" * 64, size=10)
    files["hop_scorer.onnx"] = FileEntry(sha256="d" * 64, size=10)
    m = manifest.model_copy(
        update={
            "files": files,
            "graphs": {
                **manifest.graphs,
                "hop_scorer": GraphEntry(
                    file="hop_scorer.onnx", sha256="d" * 64, precision="fp32", signature=default_signature()
                ),
            },
            "tensorrt": [
                TensorRTEngine(
                    file="engines/encoder.fp16.sm90.plan",
                    precision="fp16",
                    gpu_name="H200",
                    gpu_arch="9.0",
                    trt_version="10.3.0",
                    min_shape=[1, 1],
                    opt_shape=[8, 32],
                    max_shape=[32, 128],
                )
            ],
        }
    )
    again = Manifest.from_yaml(m.to_yaml())
    assert again.tensorrt[0].gpu_arch == "9.0" and "hop_scorer" in again.graphs
    assert again.graphs["hop_scorer"].signature.outputs[0].shape == ["batch", "hidden"]


def _dump(manifest: Manifest, **changes: object) -> str:
    data = yaml.safe_load(manifest.to_yaml())
    data.update(changes)
    return yaml.safe_dump(data)


@pytest.mark.parametrize("bad", [2, 0, 99])
def test_unknown_schema_version_rejected(manifest: Manifest, bad: int) -> None:
    with pytest.raises(BundleError, match=f"unknown schema_version {bad}"):
        Manifest.from_yaml(_dump(manifest, schema_version=bad))


def test_missing_schema_version(manifest: Manifest) -> None:
    data = yaml.safe_load(manifest.to_yaml())
    del data["schema_version"]
    with pytest.raises(BundleError, match="schema_version missing"):
        Manifest.from_yaml(yaml.safe_dump(data))


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "01.0.0"])
def test_bad_semver(manifest: Manifest, version: str) -> None:
    with pytest.raises(BundleError, match="semantic version"):
        Manifest.from_yaml(_dump(manifest, version=version))


def test_semver_with_prerelease_ok(manifest: Manifest) -> None:
    assert Manifest.from_yaml(_dump(manifest, version="2.1.0-rc.1+build.5")).version == "2.1.0-rc.1+build.5"


def test_unknown_field_rejected(manifest: Manifest) -> None:
    with pytest.raises(BundleError, match="surprise"):
        Manifest.from_yaml(_dump(manifest, surprise=1))


def test_path_escape_rejected(manifest: Manifest) -> None:
    data = yaml.safe_load(manifest.to_yaml())
    data["files"]["../etc/passwd"] = {"sha256": "e" * 64, "size": 1}
    with pytest.raises(BundleError, match="relative path inside the bundle"):
        Manifest.from_yaml(yaml.safe_dump(data))


def test_cross_references_checked(manifest: Manifest) -> None:
    data = yaml.safe_load(manifest.to_yaml())
    data["adapter_sets"]["default"]["sha256"] = "f" * 64
    with pytest.raises(BundleError, match="sha256 differs"):
        Manifest.from_yaml(yaml.safe_dump(data))
    data = yaml.safe_load(manifest.to_yaml())
    data["routes"] = ["x", "y"]
    with pytest.raises(BundleError, match="routes must equal"):
        Manifest.from_yaml(yaml.safe_dump(data))
    data = yaml.safe_load(manifest.to_yaml())
    del data["files"]["tokenizer.json"]
    with pytest.raises(BundleError, match="tokenizer file"):
        Manifest.from_yaml(yaml.safe_dump(data))


def test_adapter_update_needs_parent(manifest: Manifest) -> None:
    with pytest.raises(BundleError, match="needs a parent"):
        Manifest.from_yaml(_dump(manifest, kind="adapter_update"))
    data = yaml.safe_load(manifest.to_yaml())
    data["kind"] = "adapter_update"
    data["parent"] = ParentRef(name="router", version="0.9.0", manifest_sha256="1" * 64).model_dump()
    assert Manifest.from_yaml(yaml.safe_dump(data)).parent is not None


def test_not_yaml() -> None:
    with pytest.raises(BundleError, match="not valid YAML"):
        Manifest.from_yaml("a: [unclosed")
    with pytest.raises(BundleError, match="mapping"):
        Manifest.from_yaml("- 1\n- 2\n")
