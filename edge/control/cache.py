"""The node's model cache: content-addressed files, per-version bundle dirs, last-known-good.

Layout under ``ServeSettings.model_cache_dir``::

    blobs/<sha256>                 every downloaded file once, named by its sha256
    blobs/<sha256>.partial         an interrupted download (resumed with a Range request)
    versions/<model>/<version>-<manifest sha256[:12]>/
                                   manifest.yaml (+ manifest.sig) and the manifest's files,
                                   hard links to the blobs (copies where links are impossible)
    last-known-good.json           {"model", "version", "manifest_sha256", "path", "adapter_set"}

A version dir is built under a temporary name and renamed into place, so a dir that exists is
complete. The pointer is written atomically (temp file + rename) only after a version served.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.bundle import sha256_bytes
from contracts.logging import get_logger
from contracts.manifest import MANIFEST_FILE

log = get_logger("autoglm.edge.control.cache")

LKG_FILE = "last-known-good.json"


@dataclass(frozen=True)
class LastGood:
    model: str
    version: str
    manifest_sha256: str
    path: str
    adapter_set: str | None = None


def _safe(segment: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "_" for c in segment)
    return out.strip(".") or "_"


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.versions = self.root / "versions"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.versions.mkdir(parents=True, exist_ok=True)

    # -- blobs -------------------------------------------------------------------------------------
    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256

    def partial(self, sha256: str) -> Path:
        return self.blobs / f"{sha256}.partial"

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        p = self.blob(sha256)
        return p.is_file() and (size is None or p.stat().st_size == size)

    # -- version dirs ------------------------------------------------------------------------------
    def version_dir(self, model: str, version: str, manifest_sha256: str) -> Path:
        return self.versions / _safe(model) / f"{_safe(version)}-{manifest_sha256[:12]}"

    def find(self, manifest_sha256: str) -> Path | None:
        """A complete version dir whose manifest has this sha256."""
        for d in self.versions.glob(f"*/*-{manifest_sha256[:12]}"):
            m = d / MANIFEST_FILE
            if m.is_file() and sha256_bytes(m.read_bytes()) == manifest_sha256:
                return d
        return None

    def materialise(
        self, model: str, version: str, manifest: bytes, signature: bytes | None, files: dict[str, str]
    ) -> Path:
        """Build the version dir from the manifest bytes and blobs (``files``: path -> sha256)."""
        msha = sha256_bytes(manifest)
        final = self.version_dir(model, version, msha)
        if (final / MANIFEST_FILE).is_file():
            return final
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{time.monotonic_ns()}")
        tmp.mkdir(parents=True)
        try:
            for rel, sha in files.items():
                dst = tmp / rel
                if not dst.resolve().is_relative_to(tmp.resolve()):
                    raise ValueError(f"manifest file {rel!r} leaves the bundle dir")
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.blob(sha), dst)
                except OSError:
                    shutil.copyfile(self.blob(sha), dst)
            if signature is not None:
                (tmp / "manifest.sig").write_bytes(signature)
            (tmp / MANIFEST_FILE).write_bytes(manifest)  # last: a dir with a manifest is complete
            try:
                tmp.rename(final)
            except OSError:  # another thread built it first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def prune(self, keep: int, protect: set[Path]) -> list[Path]:
        """Remove the oldest version dirs beyond ``keep`` (never those in ``protect``) and the
        blobs no remaining dir links to."""
        dirs = sorted(
            (d for d in self.versions.glob("*/*") if d.is_dir() and not d.name.startswith(".")),
            key=lambda d: d.stat().st_mtime,
            reverse=True,
        )
        protect = {p.resolve() for p in protect}
        removed = []
        for d in dirs[keep:]:
            if d.resolve() in protect:
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        if removed:
            for b in self.blobs.iterdir():
                if b.is_file() and not b.name.endswith(".partial") and b.stat().st_nlink <= 1:
                    b.unlink(missing_ok=True)
        return removed

    # -- last-known-good ---------------------------------------------------------------------------
    def write_last_good(self, lkg: LastGood) -> None:
        path = self.root / LKG_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(lkg), indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def read_last_good(self) -> LastGood | None:
        path = self.root / LKG_FILE
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return LastGood(**doc)
        except (ValueError, TypeError) as err:
            log.warning("ignoring unreadable %s: %s", path, err)
            return None
