"""Checks a bundle directory before anything is stored: schema, file hashes, signature.

Delegates to the export side's reader (``contracts.bundle.open_bundle``) so the cloud accepts
exactly what an edge will accept; every problem surfaces as a :class:`BundleError` naming it.
Also unpacks uploaded archives safely (no absolute paths, no ``..``, no links).
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from contracts.bundle import archive_problem
from contracts.errors import BadRequest, BundleError
from contracts.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest


@dataclass(frozen=True)
class CheckedBundle:
    root: Path
    manifest: Manifest
    manifest_bytes: bytes
    files: dict[str, Path]  # relative name -> path on disk (manifest files + manifest + signature)


def check_bundle(root: Path, public_key: str | None = None) -> CheckedBundle:
    """Verify the bundle at ``root``; raise BundleError with the reason when anything is wrong."""
    from contracts.bundle import open_bundle

    if not (root / MANIFEST_FILE).is_file():
        raise BundleError(f"{root}: no {MANIFEST_FILE} at the bundle root")
    bundle = open_bundle(root, public_key=_key_arg(public_key), verify=True)
    manifest: Manifest = bundle.manifest
    files = {name: root / name for name in manifest.files}
    for name, path in files.items():
        if not path.is_file():  # open_bundle checks this too; be explicit about what we store
            raise BundleError(f"{name}: listed in the manifest but missing from the bundle")
    files[MANIFEST_FILE] = root / MANIFEST_FILE
    if (root / SIGNATURE_FILE).is_file():
        files[SIGNATURE_FILE] = root / SIGNATURE_FILE
    return CheckedBundle(root, manifest, (root / MANIFEST_FILE).read_bytes(), files)


def _key_arg(public_key: str | None) -> bytes | Path | None:
    """Settings carry the key as 64 hex characters or as a path to a ``.pub`` file."""
    if not public_key:
        return None
    text = public_key.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.encode("ascii")
    return Path(text)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Unpack a tar / tar.gz bundle into ``dest``; return the bundle root (holding the manifest)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = Path(m.name).parts
                if m.name.startswith("/") or ".." in parts:
                    raise BundleError(f"archive member {m.name!r} escapes the bundle")
                if not (m.isfile() or m.isdir()):
                    raise BundleError(f"archive member {m.name!r} is not a regular file")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:  # truncated, corrupt gzip, unreadable
        raise BadRequest(f"upload: {archive_problem(exc)}") from None
    if (dest / MANIFEST_FILE).is_file():
        return dest
    candidates = [p.parent for p in dest.glob(f"*/{MANIFEST_FILE}")]
    if len(candidates) != 1:
        raise BundleError(f"archive has no single {MANIFEST_FILE} at its root or in one top folder")
    return candidates[0]
