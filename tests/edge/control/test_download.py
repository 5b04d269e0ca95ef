"""Registry downloads against a real controller: content-addressed cache, adapter-only updates
(parent fetched, shared files not fetched twice), Range resume of a partial file, hash checks,
wrong manifest, refused token."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from contracts.bundle import open_bundle
from contracts.errors import BundleError, NotFound, Unavailable
from contracts.manifest import Manifest
from edge.control.cache import ModelCache
from edge.control.downloader import RegistryDownloader
from tests.edge.conftest import MODEL, Bundles
from tests.edge.control.helpers import Cloud


def _dl(cloud: Cloud, tmp_path: Path, node: str = "edge-dl") -> RegistryDownloader:
    return RegistryDownloader.connect(
        cloud.url, cloud.node_token(node), ModelCache(tmp_path / "cache"), retries=1
    )


def test_full_version_lands_verified_and_content_addressed(cloud: Cloud, tmp_path: Path) -> None:
    dl = _dl(cloud, tmp_path)
    vdir = dl.fetch_version(MODEL, "1.0.0", cloud.manifest_sha("1.0.0"))
    b = open_bundle(vdir, verify=True)  # every file's size and sha256 match the manifest
    assert b.manifest.version == "1.0.0"
    assert dl.last.files_fetched == len(b.manifest.files) and dl.last.files_cached == 0
    for rel, entry in b.manifest.files.items():
        blob = dl.cache.blob(entry.sha256)
        assert blob.is_file() and os.path.samefile(blob, vdir / rel)  # a hard link, not a copy
    # Asked again (by manifest sha or by name): nothing is fetched.
    assert dl.fetch_version(MODEL, "1.0.0", cloud.manifest_sha("1.0.0")) == vdir
    assert dl.fetch_version(MODEL, "1.0.0") == vdir
    assert dl.last.files_fetched == 0
    dl.close()


def test_adapter_update_fetches_parent_and_only_new_files(
    cloud: Cloud, tmp_path: Path, bundles: Bundles
) -> None:
    dl = _dl(cloud, tmp_path)
    vdir = dl.fetch_version(MODEL, "1.1.0", cloud.manifest_sha("1.1.0"))
    parent = dl.cache.find(cloud.manifest_sha("1.0.0"))
    assert parent is not None, "the parent named by the update was fetched too"
    b = open_bundle(vdir, verify=True, parent=parent)
    assert b.is_adapter_update and b.tokenizer_file().is_file()
    # On a node that already has the parent, only the update's own files travel.
    dl2 = _dl(cloud, tmp_path / "second", "edge-dl2")
    dl2.fetch_version(MODEL, "1.0.0")
    dl2.fetch_version(MODEL, "1.1.0")
    own = Manifest.from_yaml((bundles.update / "manifest.yaml").read_bytes()).files
    parent_files = Manifest.from_yaml((bundles.v1 / "manifest.yaml").read_bytes()).files
    assert dl2.last.files_fetched == len(
        [f for f in own.values() if f.sha256 not in {p.sha256 for p in parent_files.values()}]
    )
    assert dl2.last.bytes_fetched == sum(
        f.size for f in own.values() if f.sha256 not in {p.sha256 for p in parent_files.values()}
    )
    dl.close()
    dl2.close()


def test_partial_download_resumes_with_range(cloud: Cloud, tmp_path: Path, bundles: Bundles) -> None:
    dl = _dl(cloud, tmp_path)
    man = Manifest.from_yaml((bundles.v2 / "manifest.yaml").read_bytes())
    name, entry = max(man.files.items(), key=lambda kv: kv[1].size)  # the encoder graph
    half = entry.size // 2
    dl.cache.partial(entry.sha256).write_bytes(
        (bundles.v2 / name).read_bytes()[:half]
    )  # an interrupted download
    vdir = dl.fetch_version(MODEL, "2.0.0")
    assert dl.last.bytes_resumed_from == half
    total = sum(e.size for e in man.files.values())
    assert dl.last.bytes_fetched == total - half  # the first half was not sent again
    open_bundle(vdir, verify=True)
    assert not dl.cache.partial(entry.sha256).exists()
    dl.close()


def test_corrupt_partial_is_detected_and_discarded(cloud: Cloud, tmp_path: Path, bundles: Bundles) -> None:
    dl = _dl(cloud, tmp_path)
    man = Manifest.from_yaml((bundles.v2 / "manifest.yaml").read_bytes())
    _, entry = max(man.files.items(), key=lambda kv: kv[1].size)
    dl.cache.partial(entry.sha256).write_bytes(b"\0" * (entry.size // 3))  # wrong bytes on disk
    with pytest.raises(BundleError, match="does not match the manifest"):
        dl.fetch_version(MODEL, "2.0.0")
    assert not dl.cache.partial(entry.sha256).exists() and not dl.cache.has_blob(entry.sha256)
    assert not list(dl.cache.versions.glob("*/*")), "no version dir for a failed download"
    open_bundle(dl.fetch_version(MODEL, "2.0.0"), verify=True)  # the next try starts over and succeeds
    dl.close()


def test_wrong_manifest_sha_unknown_version_and_bad_token(cloud: Cloud, tmp_path: Path) -> None:
    dl = _dl(cloud, tmp_path)
    with pytest.raises(BundleError, match="the command names"):
        dl.fetch_version(MODEL, "1.0.0", "0" * 64)
    assert not list(dl.cache.versions.glob("*/*"))
    with pytest.raises(NotFound):
        dl.fetch_version(MODEL, "9.9.9")
    bad = RegistryDownloader.connect(cloud.url, "not-a-token", ModelCache(tmp_path / "c2"))
    with pytest.raises(Unavailable, match="refused this node's token"):
        bad.fetch_version(MODEL, "1.0.0")
    dl.close()
    bad.close()


class _CutStream(httpx.SyncByteStream):
    """A response body that breaks (connection reset) after ``cut`` bytes."""

    def __init__(self, inner: httpx.SyncByteStream, cut: int) -> None:
        self.inner, self.cut = inner, cut

    def __iter__(self):  # type: ignore[no-untyped-def]
        sent = 0
        for chunk in self.inner:
            if sent + len(chunk) >= self.cut:
                yield chunk[: self.cut - sent]
                raise httpx.ReadError("connection reset by peer (test)")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _FlakyTransport(httpx.HTTPTransport):
    """The real HTTP transport; the first download of ``path_part`` is cut after ``cut`` bytes."""

    def __init__(self, path_part: str, cut: int) -> None:
        super().__init__()
        self.path_part, self.cut, self.cut_done = path_part, cut, False
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        if self.path_part in request.url.path:
            self.ranges.append(request.headers.get("range"))
            if not self.cut_done:
                self.cut_done = True
                assert isinstance(resp.stream, httpx.SyncByteStream)
                return httpx.Response(
                    resp.status_code,
                    headers=resp.headers,
                    stream=_CutStream(resp.stream, self.cut),
                    request=request,
                )
        return resp


def test_connection_cut_mid_file_is_retried_from_where_it_stopped(
    cloud: Cloud, tmp_path: Path, bundles: Bundles
) -> None:
    man = Manifest.from_yaml((bundles.v2 / "manifest.yaml").read_bytes())
    name, entry = max(man.files.items(), key=lambda kv: kv[1].size)
    cut = entry.size // 3
    transport = _FlakyTransport(name, cut)
    client = httpx.Client(
        base_url=cloud.url,
        headers={"Authorization": f"Bearer {cloud.node_token('edge-cut')}"},
        transport=transport,
    )
    dl = RegistryDownloader(client, ModelCache(tmp_path / "cache"), retries=2)
    vdir = dl.fetch_version(MODEL, "2.0.0")
    assert transport.ranges == [None, f"bytes={cut}-"]  # the retry asked only for the rest
    assert dl.last.bytes_resumed_from == cut
    assert dl.last.bytes_fetched == sum(e.size for e in man.files.values())  # no byte fetched twice
    open_bundle(vdir, verify=True)
    dl.close()
