"""Writing a bundle directory: adapter files, file table, manifest, signature; atomic publish."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from contracts.adapter_codec import AdapterEncoding, encode_tensors
from contracts.bundle import sha256_file, sign_bundle
from contracts.manifest import MANIFEST_FILE, SIGNATURE_FILE, AdapterTensor, FileEntry, Manifest
from export.errors import ExportError


def write_adapter_file(
    path: Path,
    tensors: dict[str, np.ndarray],
    set_name: str,
    transposed: dict[str, bool],
    encoding: AdapterEncoding = "float32",
) -> dict[str, AdapterTensor]:
    """One safetensors file per adapter set (graph layout, stored with ``encoding``); returns the
    manifest's tensor table (always the float32 tensors the graph binds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(tensors.items())}
    save_file(
        encode_tensors(clean, encoding),
        str(path),
        metadata={"adapter_set": set_name, "layout": "onnx", "encoding": encoding},
    )
    return {k: AdapterTensor(shape=list(v.shape), transposed=transposed[k]) for k, v in clean.items()}


def file_table(root: Path) -> dict[str, FileEntry]:
    """Every file under ``root`` except the manifest and its signature."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel not in (MANIFEST_FILE, SIGNATURE_FILE):
                out[rel] = FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
    return out


def write_manifest(root: Path, manifest: Manifest, sign_key: Path | None) -> None:
    (root / MANIFEST_FILE).write_text(manifest.to_yaml(), encoding="utf-8")
    if sign_key is not None:
        sign_bundle(root, sign_key)


def prepare_out_dir(out_dir: Path) -> Path:
    """A fresh staging directory next to ``out_dir``; ``out_dir`` must be absent or empty."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir}: output directory exists and is not empty")
    staging = out_dir.with_name(out_dir.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, out_dir: Path) -> Path:
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked in prepare_out_dir)
    staging.replace(out_dir)
    return out_dir


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
