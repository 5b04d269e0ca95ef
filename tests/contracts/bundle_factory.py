"""A synthetic bundle (placeholder bytes, real hashes) for the torch-free contract tests."""

from __future__ import annotations

from pathlib import Path

from contracts.bundle import sha256_file
from contracts.manifest import (
    AdapterSetEntry,
    AdapterTensor,
    BaseEncoder,
    FileEntry,
    GraphEntry,
    Manifest,
    Provenance,
    TokenizerSpec,
    default_signature,
)

ROUTES = ["calculator", "chitchat"]


def write_files(root: Path) -> dict[str, FileEntry]:
    contents = {
        "encoder.fp32.onnx": b"\x08\x07graph-bytes" * 500,
        "adapters/default.safetensors": b"adapter-bytes" * 50,
        "tokenizer.json": b'{"version": "1.0"}',
    }
    files = {}
    for name, data in contents.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files[name] = FileEntry(sha256=sha256_file(p), size=len(data))
    return files


def make_manifest(files: dict[str, FileEntry], **over: object) -> Manifest:
    data: dict[str, object] = {
        "name": "router",
        "version": "1.0.0",
        "created_at": "2026-01-01T00:00:00+00:00",
        "base_encoder": BaseEncoder(id="tiny", sha256="a" * 64, hidden_size=32, num_layers=2, num_heads=2),
        "routes": ROUTES,
        "default_adapter_set": "default",
        "adapter_sets": {
            "default": AdapterSetEntry(
                file="adapters/default.safetensors",
                sha256=files["adapters/default.safetensors"].sha256,
                routes=ROUTES,
                temperature=1.5,
                bottleneck=64,
                tensors={"adapters.0.down.weight": AdapterTensor(shape=[32, 64], transposed=True)},
            )
        },
        "graphs": {
            "encoder": GraphEntry(
                file="encoder.fp32.onnx",
                sha256=files["encoder.fp32.onnx"].sha256,
                precision="fp32",
                signature=default_signature(32, 2),
            )
        },
        "opset": 17,
        "precision": "fp32",
        "files": files,
        "tokenizer": TokenizerSpec(max_length=64),
        "provenance": Provenance(checkpoint_sha256="b" * 64, git_commit="deadbeef"),
    }
    data.update(over)
    return Manifest(**data)  # type: ignore[arg-type]


def make_bundle(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    manifest = make_manifest(write_files(root))
    (root / "manifest.yaml").write_text(manifest.to_yaml(), encoding="utf-8")
    return root
