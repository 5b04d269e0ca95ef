"""Edge bundle download from the cloud registry: our downloader vs. a plain HTTP GET.

The real controller (registry on SQLite, HTTP API on uvicorn) runs in this process and holds
one registered bundle (default: the MiniLM serving bundle under ``.autoglm/bench/serving``,
copied first; else ``--bundle DIR``). Measured, side by side, over loopback:

* ``plain GET`` (baseline): every manifest file streamed to disk with httpx, no checks.
* ``downloader, empty cache``: ``edge.control.downloader.RegistryDownloader.fetch_version``
  (manifest sha check, ETag check, size + sha256 of every file, hard-linked version dir).
* ``resume from 50 %``: the largest file half present as a partial download (Range request).
* ``cached``: the same version again (manifest only, no file requests).

Usage: ``python benchmarks/bench_edge_download.py [--bundle DIR] [--rounds 3]``. The last line
printed is a JSON record. The machine is shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_BUNDLE = ROOT / ".autoglm" / "bench" / "serving" / "bundle-fp32-serving"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not (args.bundle / "manifest.yaml").is_file():
        sys.exit(f"{args.bundle}: no bundle (export one, or pass --bundle DIR)")

    import httpx
    import uvicorn

    from cloud.api.app import create_app
    from cloud.api.container import CloudServices
    from cloud.settings import CloudSettings
    from contracts.manifest import Manifest
    from edge.control.cache import ModelCache
    from edge.control.downloader import RegistryDownloader

    tmp = Path(tempfile.mkdtemp(prefix="bench-edge-download-"))
    try:
        bundle = shutil.copytree(args.bundle, tmp / "bundle")
        man = Manifest.from_yaml((bundle / "manifest.yaml").read_bytes())
        total = sum(f.size for f in man.files.values())
        settings = CloudSettings(
            data_dir=tmp / "cloud",
            admin_tokens=["bench:admin"],
            bootstrap_token="boot",  # type: ignore[arg-type]
            mqtt_enabled=False,
            tool_doc_embeddings=False,
        )
        svc = CloudServices.build(settings)
        svc.registry.register_dir(bundle, actor="bench")
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(services=svc), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        token = httpx.post(
            f"{url}/api/v1/nodes/register",
            json={"node_id": "bench-edge"},
            headers={"Authorization": "Bearer boot"},
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        base = f"/api/v1/models/{man.name}/versions/{man.version}"
        largest = max(man.files.items(), key=lambda kv: kv[1].size)

        def plain() -> float:
            out = tmp / "plain"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            t = time.perf_counter()
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                c.get(f"{base}/manifest").raise_for_status()
                for i, rel in enumerate(man.files):
                    with c.stream("GET", f"{base}/files/{rel}") as r, (out / str(i)).open("wb") as f:
                        for chunk in r.iter_bytes(1 << 20):
                            f.write(chunk)
            return time.perf_counter() - t

        def ours(seed_half: bool = False, keep: Path | None = None) -> tuple[float, int]:
            cache_root = keep or tmp / "cache"
            if keep is None:
                shutil.rmtree(cache_root, ignore_errors=True)
            cache = ModelCache(cache_root)
            if seed_half:
                name, entry = largest
                cache.partial(entry.sha256).write_bytes((bundle / name).read_bytes()[: entry.size // 2])
            dl = RegistryDownloader.connect(url, token, cache)
            t = time.perf_counter()
            dl.fetch_version(man.name, man.version)
            dt = time.perf_counter() - t
            fetched = dl.last.bytes_fetched
            dl.close()
            return dt, fetched

        rows: dict[str, list[float]] = {"plain": [], "ours": [], "resume": [], "cached": []}
        fetched: dict[str, int] = {}
        for _ in range(args.rounds):  # alternate, so load changes hit both alike
            rows["plain"].append(plain())
            dt, fetched["ours"] = ours()
            rows["ours"].append(dt)
            dt, fetched["resume"] = ours(seed_half=True)
            rows["resume"].append(dt)
            dt, fetched["cached"] = ours(keep=tmp / "cache")
            rows["cached"].append(dt)
        med = {k: statistics.median(v) for k, v in rows.items()}
        mb = total / 2**20
        print(
            f"bundle {man.name}@{man.version}: {len(man.files)} files, {mb:.1f} MiB; "
            f"{args.rounds} rounds (median)"
        )
        print(f"  plain GET (baseline)          {med['plain']:.3f} s  {mb / med['plain']:.0f} MiB/s")
        print(
            f"  downloader, empty cache       {med['ours']:.3f} s  {mb / med['ours']:.0f} MiB/s  "
            f"x{med['ours'] / med['plain']:.2f} of plain (sha256 + size checks, links)"
        )
        print(
            f"  resume from 50 % of largest   {med['resume']:.3f} s  "
            f"fetched {fetched['resume'] / 2**20:.1f} MiB "
            f"of {mb:.1f}  x{med['resume'] / med['ours']:.2f} of a full download"
        )
        print(
            f"  cached (same version again)   {med['cached'] * 1000:.1f} ms  "
            f"fetched {fetched['cached']} bytes"
        )
        record: dict[str, Any] = {
            "bench": "edge_download",
            "bundle_mib": round(mb, 2),
            "files": len(man.files),
            "rounds": args.rounds,
            "plain_s": round(med["plain"], 4),
            "downloader_s": round(med["ours"], 4),
            "downloader_vs_plain": round(med["ours"] / med["plain"], 3),
            "resume_s": round(med["resume"], 4),
            "resume_fetched_bytes": fetched["resume"],
            "resume_vs_full": round(med["resume"] / med["ours"], 3),
            "cached_s": round(med["cached"], 4),
            "note": "shared 2-core machine; noisy",
        }
        server.should_exit = True
        thread.join(10)
        svc.close()
        print(json.dumps(record))
        from autoglm.bench.records import HeadlineRow, write_record

        write_record(
            "edge_download",
            record,
            [
                HeadlineRow(
                    what=f"Bundle download ({mb:.1f} MiB), verified registry downloader vs plain HTTP GET",
                    baseline=f"plain GET {med['plain']:.3f} s",
                    result=f"{med['ours']:.3f} s (x{med['ours'] / med['plain']:.2f}); "
                    f"resume x{med['resume'] / med['ours']:.2f} "
                    f"of a full download; cached {med['cached'] * 1000:.1f} ms",
                )
            ],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
