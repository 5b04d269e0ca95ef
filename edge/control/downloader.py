"""Download a registered version from the cloud registry into the :class:`ModelCache`.

Protocol (the cloud's ``cloud/api/downloads.py``): ``GET …/versions/{v}/manifest`` and
``GET …/versions/{v}/files/{path}`` with the node's bearer token; responses carry
``ETag: "<sha256>"``. A file already in the cache (by the manifest's sha256) is not fetched
again, so an adapter-only update costs only its adapter. An interrupted download stays as
``blobs/<sha>.partial`` and is resumed with ``Range: bytes=<have>-`` and ``If-Range: "<sha>"``
(a 200 instead of 206 means the server sent the whole file: start over). Every file is checked
against the manifest's size and sha256 before it is renamed into ``blobs/``; the manifest is
checked against the ``manifest_sha256`` the command names. For an adapter-only update, the
parent version the manifest names is fetched too (by its own manifest sha256).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from contracts.bundle import sha256_bytes
from contracts.errors import BundleError, NotFound, Unavailable
from contracts.logging import get_logger
from contracts.manifest import SIGNATURE_FILE, Manifest
from edge.control.cache import ModelCache

log = get_logger("autoglm.edge.control.download")

CHUNK = 1 << 20


@dataclass
class DownloadStats:
    files_fetched: int = 0
    files_cached: int = 0
    bytes_fetched: int = 0
    bytes_resumed_from: int = 0  # bytes of partial files a download continued from
    seconds: float = 0.0
    fetched: list[str] = field(default_factory=list)


def _hash_file(path: Path) -> Any:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h


class RegistryDownloader:
    """Fetches manifests and files of registered versions (``client``: an httpx client whose
    base URL is the controller and whose headers carry the node's token)."""

    def __init__(self, client: httpx.Client, cache: ModelCache, *, retries: int = 3) -> None:
        self.client = client
        self.cache = cache
        self.retries = retries
        self.last = DownloadStats()

    @classmethod
    def connect(
        cls, url: str, token: str, cache: ModelCache, *, timeout_s: float = 60.0, retries: int = 3
    ) -> RegistryDownloader:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        return cls(client, cache, retries=retries)

    def close(self) -> None:
        self.client.close()

    # -- versions ----------------------------------------------------------------------------------
    def fetch_version(
        self, model: str, version: str, manifest_sha256: str | None = None, manifest_url: str | None = None
    ) -> Path:
        """The local version dir of ``model@version`` (downloaded unless cached); raises
        ``BundleError`` (bad bytes), ``NotFound`` (unknown version) or ``Unavailable``."""
        started = time.perf_counter()
        self.last = stats = DownloadStats()
        if manifest_sha256:
            cached = self.cache.find(manifest_sha256)
            if cached is not None:
                self._ensure_parent(cached)
                return cached
        base = f"/api/v1/models/{quote(model, safe='')}/versions/{quote(version, safe='')}"
        raw = self._get_small(manifest_url or f"{base}/manifest", what=f"manifest of {model}@{version}")
        msha = sha256_bytes(raw)
        if manifest_sha256 and msha != manifest_sha256:
            raise BundleError(
                f"manifest of {model}@{version} has sha256 {msha[:12]}…, "
                f"the command names {manifest_sha256[:12]}…"
            )
        manifest = Manifest.from_yaml(raw, f"{model}@{version}/manifest.yaml")
        if manifest.name != model or manifest.version != version:
            raise BundleError(f"registry sent {manifest.name}@{manifest.version} for {model}@{version}")
        existing = self.cache.find(msha)
        if existing is not None:
            self._ensure_parent(existing)
            return existing
        signature = self._get_optional(f"{base}/files/{SIGNATURE_FILE}")
        files: dict[str, str] = {}
        for rel, entry in manifest.files.items():
            files[rel] = entry.sha256
            if self.cache.has_blob(entry.sha256, entry.size):
                stats.files_cached += 1
                continue
            self.fetch_file(f"{base}/files/{quote(rel)}", entry.sha256, entry.size)
            stats.files_fetched += 1
            stats.fetched.append(rel)
        vdir = self.cache.materialise(model, version, raw, signature, files)
        stats.seconds = time.perf_counter() - started
        log.info(
            "downloaded %s@%s: %d files fetched (%d bytes), %d from cache, %.2fs",
            model,
            version,
            stats.files_fetched,
            stats.bytes_fetched,
            stats.files_cached,
            stats.seconds,
        )
        self._ensure_parent(vdir)
        return vdir

    def _ensure_parent(self, vdir: Path) -> None:
        manifest = Manifest.from_yaml((vdir / "manifest.yaml").read_bytes())
        ref = manifest.parent
        if (
            manifest.kind == "adapter_update"
            and ref is not None
            and self.cache.find(ref.manifest_sha256) is None
        ):
            outer = self.last
            self.fetch_version(ref.name, ref.version, ref.manifest_sha256)
            outer.files_fetched += self.last.files_fetched
            outer.bytes_fetched += self.last.bytes_fetched
            self.last = outer

    # -- files -------------------------------------------------------------------------------------
    def fetch_file(self, url: str, sha256: str, size: int) -> Path:
        """Download one file into ``blobs/<sha256>``, resuming a partial one; verify size + hash."""
        last_err: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return self._fetch_once(url, sha256, size)
            except (httpx.TransportError, Unavailable) as err:
                last_err = err
                log.warning("download of %s interrupted (attempt %d): %s", url, attempt + 1, err)
                time.sleep(min(0.2 * 2**attempt, 2.0))
        raise Unavailable(f"downloading {url} failed after {self.retries + 1} attempts: {last_err}")

    def _fetch_once(self, url: str, sha256: str, size: int) -> Path:
        part = self.cache.partial(sha256)
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        headers = {}
        if 0 < have < size:
            headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'}
        elif have == size:
            return self._finish(part, sha256, size, _hash_file(part))
        with self.client.stream("GET", url, headers=headers) as r:
            if r.status_code == 416:
                part.unlink(missing_ok=True)  # our partial does not fit the file: start over next time
                raise Unavailable(f"{url}: range not satisfiable, restarting the download")
            self._check_status(r, url)
            etag = r.headers.get("etag", "").strip('"')
            if etag and etag != sha256:
                raise BundleError(
                    f"{url}: registry serves sha256 {etag[:12]}…, the manifest says {sha256[:12]}…"
                )
            if r.status_code == 206:
                h = _hash_file(part)  # the bytes we keep, hashed once; the rest while it streams
                self.last.bytes_resumed_from += have
                mode = "ab"
            else:
                h = hashlib.sha256()
                mode = "wb"
            with part.open(mode) as f:
                for chunk in r.iter_bytes():  # as received: a cut connection loses nothing we got
                    f.write(chunk)
                    h.update(chunk)
                    self.last.bytes_fetched += len(chunk)
        return self._finish(part, sha256, size, h)

    def _finish(self, part: Path, sha256: str, size: int, h: Any) -> Path:
        got = part.stat().st_size
        if got < size:
            raise Unavailable(f"download of {sha256[:12]}… stopped at {got} of {size} bytes")
        if got != size or h.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise BundleError(
                f"downloaded file {sha256[:12]}… does not match the manifest "
                f"({got} bytes, sha256 {h.hexdigest()[:12]}…; expected {size} bytes)"
            )
        dst = self.cache.blob(sha256)
        part.replace(dst)
        return dst

    # -- helpers -----------------------------------------------------------------------------------
    def _get_small(self, url: str, *, what: str) -> bytes:
        try:
            r = self.client.get(url)
        except httpx.TransportError as err:
            raise Unavailable(f"cloud registry not reachable for the {what}: {err}") from err
        self._check_status(r, url)
        return r.content

    def _get_optional(self, url: str) -> bytes | None:
        try:
            r = self.client.get(url)
        except httpx.TransportError as err:
            raise Unavailable(f"cloud registry not reachable: {err}") from err
        if r.status_code == 404:
            return None
        self._check_status(r, url)
        return r.content

    @staticmethod
    def _check_status(r: httpx.Response, url: str) -> None:
        if r.status_code in (200, 206):
            return
        detail: Any = ""
        try:
            if not r.is_stream_consumed:
                r.read()
            detail = r.json().get("error", "")
        except Exception:
            detail = r.text[:200] if r.is_stream_consumed else ""
        if r.status_code == 404:
            raise NotFound(f"{url}: not in the registry ({detail})")
        if r.status_code in (401, 403):
            raise Unavailable(f"{url}: the cloud refused this node's token ({r.status_code} {detail})")
        raise Unavailable(f"{url}: HTTP {r.status_code} {detail}")
