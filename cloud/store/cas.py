"""Content-addressed blob store: each file lives once under ``blobs/<aa>/<sha256>``.

Writes go to a temporary file in the same directory and are renamed into place, so a reader
never sees a partial blob. ``put_file`` reports whether the blob was new, letting a caller that
fails later remove exactly what it added (a rejected registration leaves no trace).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from contracts.bundle import sha256_file
from contracts.errors import BadRequest, NotFound

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):
            raise BadRequest(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open_path(self, sha256: str) -> Path:
        p = self.path_for(sha256)
        if not p.is_file():
            raise NotFound(f"blob {sha256} is not in the store")
        return p

    def put_file(self, src: Path, expected_sha256: str | None = None) -> tuple[str, int, bool]:
        """Copy ``src`` into the store. Returns (sha256, size, newly_added)."""
        digest = sha256_file(src)
        if expected_sha256 is not None and digest != expected_sha256:
            raise BadRequest(f"{src.name}: sha256 {digest} does not match expected {expected_sha256}")
        dest = self.path_for(digest)
        size = src.stat().st_size
        if dest.is_file():
            return digest, size, False
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            if sha256_file(Path(tmp)) != digest:  # the source changed under us
                raise BadRequest(f"{src.name} changed while being stored")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest, size, True

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def list_digests(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*/*") if _SHA_RE.match(p.name))
