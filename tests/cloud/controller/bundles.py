"""Hand-built bundles that satisfy the manifest contract (schema, hashes, optional signature).

The registry only checks the contract (it never runs the graphs), so these use small opaque
files instead of exported ONNX graphs; one test registers a really exported bundle.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from contracts.bundle import sign_bundle
from contracts.manifest import (
    AdapterSetEntry,
    BaseEncoder,
    FileEntry,
    GraphEntry,
    Manifest,
    ParentRef,
    Provenance,
    TokenizerSpec,
    default_signature,
)

ROUTES = ["calculator", "chitchat"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bundle(
    root: Path,
    name: str = "tiny",
    version: str = "1.0.0",
    *,
    parent: Path | None = None,
    encoder_seed: int = 0,
    adapter_seed: int | None = None,
    sign_key: Path | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, FileEntry] = {}

    def add(fname: str, data: bytes) -> str:
        (root / fname).parent.mkdir(parents=True, exist_ok=True)
        (root / fname).write_bytes(data)
        files[fname] = FileEntry(sha256=_sha(data), size=len(data))
        return _sha(data)

    encoder = (f"encoder-{encoder_seed}-".encode() * 4096)[:50_000]
    enc_sha = _sha(encoder)
    if parent is None:
        add("encoder.onnx", encoder)
        add("tokenizer.json", b'{"model": "fake tokenizer"}')
    adapter_sha = add("adapters/default.safetensors", f"adapter {version} {adapter_seed or 0}".encode() * 64)
    parent_ref = None
    if parent is not None:
        pman = Manifest.from_yaml((parent / "manifest.yaml").read_bytes())
        enc_sha = pman.graphs["encoder"].sha256
        parent_ref = ParentRef(
            name=pman.name,
            version=pman.version,
            manifest_sha256=_sha((parent / "manifest.yaml").read_bytes()),
        )
    man = Manifest(
        kind="adapter_update" if parent is not None else "full",
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        base_encoder=BaseEncoder(
            id="tiny-random", sha256=_sha(b"base"), hidden_size=32, num_layers=2, num_heads=2
        ),
        routes=ROUTES,
        default_adapter_set="default",
        adapter_sets={
            "default": AdapterSetEntry(
                file="adapters/default.safetensors",
                sha256=adapter_sha,
                routes=ROUTES,
                bottleneck=8,
                tensors={},
            )
        },
        graphs={
            "encoder": GraphEntry(
                file="encoder.onnx",
                sha256=enc_sha,
                precision="fp32",
                signature=default_signature(32, len(ROUTES)),
                from_parent=parent is not None,
            )
        },
        opset=17,
        precision="fp32",
        files=files,
        tokenizer=TokenizerSpec(from_parent=parent is not None),
        provenance=Provenance(checkpoint_sha256=_sha(b"ckpt" + version.encode()), training={"epochs": 1}),
        parent=parent_ref,
    )
    (root / "manifest.yaml").write_text(man.to_yaml(), encoding="utf-8")
    if sign_key is not None:
        sign_bundle(root, sign_key)
    return root
