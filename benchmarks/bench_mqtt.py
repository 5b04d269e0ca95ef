"""Edge -> cloud memory sync throughput and latency over a loopback Mosquitto.

Runs side by side through the SAME broker (started here with the production throughput
settings: set_tcp_nodelay true, max_inflight_messages 1000):

* ``batched+lz4``  — the real pipeline: EdgeSync (SQLite outbox, batches of up to
  ``--batch`` records, LZ4, window of unacked messages) -> Mosquitto -> CloudSync (decode,
  validate, LWW merge into SQLite, ack) -> edge releases the records. Records/s counts only
  records acknowledged end to end (the edge outbox is empty at the end).
* ``1-per-msg``    — the same pipeline with one record per message, no compression.
* ``raw-paho-1-per-msg`` — bare paho QoS 1 publishes of one record each (no outbox, no
  application ack): what a naive client gets from the broker alone.

The records are the REAL MIX an edge node produces (``edge_records``): the real ``Agent``
answers questions of the route data's held-out test split against a real cloud tool service
on loopback, with all-MiniLM-L6-v2 embeddings (384 floats, from an exported bundle through
ONNX Runtime) and the keyword router, and its ``SemanticCache`` / ``KnowledgeMemory`` /
hard-example sink publish what they publish in production: ``cache:`` records (JSON answer +
signature + embedding), ``kb:`` knowledge records (``POST /v1/knowledge`` texts + embedding;
``--knowledge-per-100`` per 100 questions, an assumption stated in the record) and hard examples.
That pool is cycled to the run size with fresh keys (a record's copies are ≥ the pool size apart,
never in one message). Per kind: bytes per record (as the outbox serialises it), the embedding's
share, LZ4 ratio of batches as the outbox seals them (up to 500 records / 192 KiB per message)
and of single records, decompression time; a kind whose batches do not shrink by 10 % is flagged.
Sync latency p50/p99 (edge publish_memory -> merged in the cloud database) idle and under load.
The former synthetic ~300-byte text-only records are kept as a comparison line for LZ4 only.

Usage: ``python benchmarks/bench_mqtt.py [--records 20000] [--questions 1200] [--quick]``. The last
line printed is a JSON record; a record is written under ``benchmarks/results/``. The machine may be
shared: numbers are noisy, compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lz4.block  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from autoglm.bench.records import HeadlineRow, write_record  # noqa: E402
from cloud.sync.hub import CloudSync  # noqa: E402
from cloud.sync.settings import CloudSyncSettings  # noqa: E402
from contracts.envelope import join_record_bodies, records_body  # noqa: E402
from contracts.hlc import HybridClock  # noqa: E402
from contracts.memory import KnowledgeRecord  # noqa: E402
from edge.sync.agent import EdgeSync, _dump  # noqa: E402
from edge.sync.settings import SyncSettings  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

SUBJECTS = [
    "conveyor 3",
    "press 7",
    "the labeller",
    "station 12",
    "the packing robot",
    "oven B",
    "line 2 camera",
    "the palletizer",
    "valve V-101",
    "the filler head",
]
EVENTS = [
    "jams when carton width exceeds",
    "overheats after running for",
    "misreads barcodes below",
    "needs recalibration every",
    "drifts by 2 mm after",
    "stops on alarm code",
    "vibrates above",
    "loses vacuum at",
]
ADVICE = [
    "reduce belt speed",
    "call maintenance",
    "switch to the backup feeder",
    "clean the lens",
    "restart the PLC",
    "check the air pressure",
    "replace the gasket",
    "log it and continue",
]


def make_records(node: str, n: int, seed: int = 7) -> list[KnowledgeRecord]:
    """Knowledge entries of ~300 bytes JSON each: varied operational facts plus metadata."""
    rng = random.Random(seed)
    clock = HybridClock(node)
    out = []
    for i in range(n):
        text = (
            f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(EVENTS)} {rng.randint(2, 900)} "
            f"{rng.choice(['cm', 'minutes', 'lux', 'rpm', 'bar'])}; operator should {rng.choice(ADVICE)}. "
            f"Seen {rng.randint(1, 50)} times on shift {rng.choice('ABC')}."
        )
        h = clock.now().pack()
        out.append(
            KnowledgeRecord(
                key=f"{node}/fact/{i:07d}",
                text=text,
                source=f"{node}/agent",
                confidence=round(rng.uniform(0.5, 1.0), 3),
                created=h,
                updated=h,
            )
        )
    return out


# ----------------------------------------------------------------------------- the real mix
Item = tuple[str, Any]  # ("memory", KnowledgeRecord) | ("hard_example", dict as the agent queues it)
KIND_CACHE, KIND_KNOWLEDGE, KIND_HARD = "cache", "knowledge", "hard_example"
MIN_RATIO = 1.1  # a kind whose batches shrink by less than 10 % is flagged "not compressing"
DESIGN_RATIO = 3.0  # the design documents' LZ4 claim


def kind_of(item: Item) -> str:
    if item[0] == "hard_example":
        return KIND_HARD
    return KIND_CACHE if item[1].key.startswith("cache:") else KIND_KNOWLEDGE


def record_bytes(item: Item) -> bytes:
    """One record serialised exactly as ``EdgeSync.publish_memory`` / ``publish_hard_example`` do
    (the hard example with the id / node / HLC fields EdgeSync adds)."""
    if item[0] == "memory":
        return bytes(item[1].model_dump_json().encode("utf-8"))
    doc = {**item[1], "id": "0" * 32, "node_id": "edge-bench", "hlc": HybridClock("edge-bench").now().pack()}
    return _dump(doc)


class _KeywordRoutedEncoder:
    """Routes with the keyword router (as a node whose router is keyword-level), embeds with the
    bundle's encoder through the real InferenceService (384 floats for MiniLM)."""

    def __init__(self, service: Any, keyword: Any) -> None:
        self.service = service
        self.keyword = keyword

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Any]:
        import dataclasses

        import numpy as np

        routed = await self.keyword.encode(texts)
        res = await self.service.infer(texts, priority=priority)
        return [
            dataclasses.replace(
                e,
                embedding=np.asarray(r.embedding, dtype=np.float32),
                model_version=f"{r.model_name}:{r.model_version}",
            )
            for e, r in zip(routed, res, strict=True)
        ]


class _Recorder:
    """Stands where EdgeSync stands for the agent: its store, and what it would queue."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.items: list[Item] = []

    def publish_memory(self, records: Any) -> int:
        self.items += [("memory", r) for r in records]
        return len(records)

    def publish_hard_example(self, example: Any) -> str:
        self.items.append(("hard_example", dict(example)))
        return f"hx-{len(self.items)}"

    def publish_path_priors(self, records: Any) -> int:
        self.items += [("path_prior", r) for r in records]
        return len(records)


def minilm_bundle() -> Path:
    """The demo's trained bundle when present, else all-MiniLM-L6-v2 with untrained adapters
    (exported once by benchmarks/bench_serving.py's ``prepare_bundle``)."""
    demo = ROOT / ".autoglm" / "demo" / "bundles" / "autoglm-router-1.0.0"
    if (demo / "manifest.yaml").is_file():
        return demo
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_serving import prepare_bundle

    return prepare_bundle("fp32")[1]


def edge_records(n_questions: int, bundle: Path, knowledge_per_100: int = 5, seed: int = 7) -> list[Item]:
    """What a node publishes while answering ``n_questions`` questions of the held-out test split
    (and taking ``knowledge_per_100`` knowledge entries per 100 questions), in order."""
    import asyncio

    from cloud.api.app import create_app
    from cloud.api.container import CloudServices
    from cloud.data.generator import default_splits
    from cloud.fleet.channel import RecordingChannel
    from cloud.settings import CloudSettings
    from edge.agent.factory import build_agent
    from edge.agent.routing import HashingEncoder, KeywordRouter
    from edge.agent.settings import AgentSettings
    from edge.agent.types import AskRequest
    from edge.http.server import BackgroundServer
    from edge.memory.store import MemoryStore
    from edge.serving.service import InferenceService
    from edge.settings import ServeSettings
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    rng = random.Random(seed)
    questions = rng.sample(default_splits()["test"], min(n_questions, len(default_splits()["test"])))
    facts = make_records("kb", max(1, n_questions * knowledge_per_100 // 100), seed=seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-mix-"))
    svc = CloudServices.build(
        CloudSettings(
            data_dir=tmp / "cloud",
            admin_tokens=["bench-token"],
            bootstrap_token="b",
            mqtt_enabled=False,
            tool_doc_embeddings=False,
        ),
        channel=RecordingChannel(),
    )
    server = BackgroundServer(create_app(services=svc, run_loops=False)).start()
    store = MemoryStore(tmp / "memory.sqlite3", "edge-bench")
    recorder = _Recorder(store)
    loop = asyncio.new_event_loop()
    service = InferenceService.from_settings(ServeSettings(bundle_dir=bundle, providers=["cpu"]))
    try:
        loop.run_until_complete(service.start(str(bundle)))
        router = KeywordRouter(EntityLinker(default_graph()))
        encoder = _KeywordRoutedEncoder(service, HashingEncoder(router))
        agent = build_agent(
            AgentSettings(
                agent_memory_db=tmp / "m.sqlite3", agent_cloud_url=server.url, agent_cloud_token="bench-token"
            ),
            encoder=encoder,
            router=router,
            sync=recorder,
            node_id="edge-bench",
        )

        async def run() -> None:
            every = max(1, 100 // max(knowledge_per_100, 1))
            k = 0
            for i, q in enumerate(questions):
                await agent.ask(AskRequest(text=q.text))
                if knowledge_per_100 and i % every == every - 1 and k < len(facts):
                    await agent.remember(f"bench/{k:05d}", facts[k].text)
                    k += 1

        loop.run_until_complete(run())
    finally:
        loop.run_until_complete(service.stop())
        loop.close()
        server.stop()
        svc.close()
        store.close()
    return recorder.items


def cycle(pool: list[Item], n: int) -> list[Item]:
    """``n`` items cycling ``pool`` in order, memory records with fresh keys (copy #k of a record
    is k·len(pool) items after the first)."""
    out: list[Item] = []
    for i in range(n):
        kind, obj = pool[i % len(pool)]
        rnd = i // len(pool)
        if kind == "memory" and rnd:
            obj = obj.model_copy(update={"key": f"{obj.key}~{rnd}"})
        out.append((kind, obj))
    return out


def lz4_by_kind(
    items: list[Item],
    *,
    batch: int = 500,
    batch_bytes: int = 192 * 1024,
    compress: Any = None,
    decompress: Any = None,
) -> dict[str, Any]:
    """Per kind (and for the whole mix): bytes per record, embedding share, LZ4 ratio of batches
    sealed like the outbox seals them (per kind, up to ``batch`` records / ``batch_bytes``), of
    single records, decompression time; ``flagged`` when a kind's batch ratio < MIN_RATIO."""
    compress = compress or (lambda b: lz4.block.compress(b, store_size=True))
    decompress = decompress or lz4.block.decompress
    by_kind: dict[str, list[bytes]] = {}
    emb_bytes: dict[str, int] = {}
    for it in items:
        k = kind_of(it)
        body = record_bytes(it)
        by_kind.setdefault(k, []).append(body)
        if it[0] == "memory" and it[1].embedding:
            emb_bytes[k] = emb_bytes.get(k, 0) + len(json.dumps(it[1].embedding, separators=(",", ":")))
    out: dict[str, Any] = {}
    total_raw = total_comp = 0
    for k, bodies in sorted(by_kind.items()):
        batches: list[bytes] = []
        cur: list[bytes] = []
        size = 0
        for b in bodies:
            if cur and (len(cur) >= batch or size + len(b) > batch_bytes):
                batches.append(join_record_bodies(cur))
                cur, size = [], 0
            cur.append(b)
            size += len(b)
        if cur:
            batches.append(join_record_bodies(cur))
        comp = [compress(b) for b in batches]
        raw, packed = sum(len(b) for b in batches), sum(len(c) for c in comp)
        total_raw += raw
        total_comp += packed
        singles = bodies[:300]
        t0 = time.perf_counter()
        for c in comp[:20]:
            decompress(c)
        dec_us = (time.perf_counter() - t0) / max(1, min(20, len(comp))) * 1e6
        ratio = raw / packed if packed else 0.0
        out[k] = {
            "records": len(bodies),
            "bytes_per_record": round(statistics.mean(len(b) for b in bodies), 1),
            "embedding_share": round(emb_bytes.get(k, 0) / sum(len(b) for b in bodies), 3),
            "records_per_message": round(len(bodies) / len(batches), 1),
            "batch_ratio": round(ratio, 3),
            "single_record_ratio": round(
                sum(len(b) for b in singles) / sum(len(compress(b)) for b in singles), 3
            ),
            "batch_decompress_us": round(dec_us, 1),
            "flagged": ratio < MIN_RATIO,
        }
    out["mix"] = {
        "records": len(items),
        "share": {k: round(len(v) / len(items), 4) for k, v in sorted(by_kind.items())},
        "bytes_per_record": round(sum(sum(len(b) for b in v) for v in by_kind.values()) / len(items), 1),
        "batch_ratio": round(total_raw / total_comp, 3) if total_comp else 0.0,
        "flagged": [k for k, v in out.items() if v["flagged"]],
    }
    return out


def proc_cpu_s(pid: int) -> float:
    """User+system CPU seconds of another process (Linux /proc), 0 when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        import os

        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _cloud_main(conn: Any, host: str, port: int, db: str, label: str, track: list[str]) -> None:
    """The cloud hub in its own process (as in production: edge and cloud are different hosts)."""
    hub = CloudSync(
        CloudSyncSettings(
            sync_mqtt_host=host,
            sync_mqtt_port=port,
            sync_db_path=Path(db),
            sync_rebroadcast="none",
            sync_mqtt_client_id=f"bench-cloud-{label}",
        )
    )
    tracked = set(track)
    applied_at: dict[str, float] = {}
    if tracked:
        hub.on_memory_merged(
            lambda node, recs: applied_at.update((r.key, time.monotonic()) for r in recs if r.key in tracked)
        )
    hub.start()
    conn.send(hub.wait_connected(10))
    conn.recv()  # "start"
    cpu0 = time.process_time()
    conn.recv()  # "report"
    while not hub.idle():
        time.sleep(0.01)
    conn.send(
        {
            "applied": dict(hub.applied_records),
            "applied_at": applied_at,
            "rejected": dict(hub.rejected),
            "cpu_s": time.process_time() - cpu0,
        }
    )
    hub.stop()


class CloudProcess:
    def __init__(
        self, broker: MosquittoBroker, db: Path, label: str, track: list[str], in_process: bool
    ) -> None:
        self.in_process = in_process
        if in_process:
            self._hub = CloudSync(
                CloudSyncSettings(
                    sync_mqtt_host=broker.host,
                    sync_mqtt_port=broker.port,
                    sync_db_path=db,
                    sync_rebroadcast="none",
                    sync_mqtt_client_id=f"bench-cloud-{label}",
                )
            )
            self._applied_at: dict[str, float] = {}
            tracked = set(track)
            self._hub.on_memory_merged(
                lambda node, recs: self._applied_at.update(
                    (r.key, time.monotonic()) for r in recs if r.key in tracked
                )
            )
            self._hub.start()
            assert self._hub.wait_connected(10)
        else:
            ctx = mp.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(
                target=_cloud_main, args=(child, broker.host, broker.port, str(db), label, track)
            )
            self._proc.start()
            assert self._conn.recv(), "cloud process did not connect"

    def begin(self) -> None:
        if not self.in_process:
            self._conn.send("start")

    def report(self) -> dict[str, Any]:
        if self.in_process:
            while not self._hub.idle():
                time.sleep(0.01)
            out = {"applied": dict(self._hub.applied_records), "applied_at": self._applied_at}
            self._hub.stop()
            return out
        self._conn.send("report")
        out = self._conn.recv()
        self._proc.join(30)
        return dict(out)


def run_pipeline(
    broker: MosquittoBroker,
    tmp: Path,
    items: list[Item],
    *,
    batch: int,
    compress: bool,
    window: int,
    label: str,
    track_latency: bool,
    cloud_in_process: bool,
) -> dict[str, Any]:
    """Publish ``items`` through EdgeSync (memory records in calls of up to 500, hard examples one
    call each, in the mix's order) and wait until the cloud acked every one."""
    chunk = 500
    groups: list[tuple[str, list[Any]]] = []
    for kind, obj in items:
        if kind == "memory" and groups and groups[-1][0] == "memory" and len(groups[-1][1]) < chunk:
            groups[-1][1].append(obj)
        else:
            groups.append((kind, [obj]))
    track = (
        [k for kind, objs in groups if kind == "memory" for k in (objs[0].key, objs[-1].key)]
        if track_latency
        else []
    )
    cloud = CloudProcess(broker, tmp / f"{label}-cloud.db", label, track, cloud_in_process)
    edge = EdgeSync(
        SyncSettings(
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            mqtt_batch_max_records=batch,
            mqtt_compress=compress,
            mqtt_window_messages=window,
            mqtt_heartbeat_interval_s=3600,
            mqtt_ack_timeout_s=30,
        ),
        tmp / f"{label}-outbox.db",
        f"bench-{label}",
    )
    edge.start()
    assert edge.wait_connected(10)
    sent_at: dict[str, float] = {}
    cloud.begin()
    broker_cpu0 = proc_cpu_s(broker.proc.pid if broker.proc else 0)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for kind, objs in groups:
        if kind == "memory":
            now = time.monotonic()
            sent_at[objs[0].key] = now
            sent_at[objs[-1].key] = now
            edge.publish_memory(objs)
        else:
            edge.publish_hard_example(objs[0])
    t_put = time.perf_counter() - t0
    deadline = time.monotonic() + 600
    while edge.outbox.pending_records() and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    edge_cpu = time.process_time() - cpu0
    broker_cpu = proc_cpu_s(broker.proc.pid if broker.proc else 0) - broker_cpu0
    assert edge.outbox.pending_records() == 0, "not everything was acknowledged"
    edge.stop()
    rep = cloud.report()
    cpu: dict[str, Any] = {"edge_cpu_s": round(edge_cpu, 2), "broker_cpu_s": round(broker_cpu, 2)}
    if "cpu_s" in rep:
        cpu["cloud_cpu_s"] = round(rep["cpu_s"], 2)
        # What the pipeline sustains when each side has one free core (the shared machine rarely
        # gives us that): limited by the busiest of edge, broker and cloud.
        cpu["records_per_cpu_s_bottleneck"] = round(len(items) / max(edge_cpu, broker_cpu, rep["cpu_s"]), 1)
    n_mem = sum(kind == "memory" for kind, _ in items)
    applied = rep["applied"]
    assert applied.get("memory", 0) == n_mem, (
        f"cloud applied {applied.get('memory', 0)} of {n_mem} memory records"
    )
    assert applied.get("hard_example", 0) == len(items) - n_mem, f"cloud applied {applied} hard examples"
    lat = [(rep["applied_at"][k] - t) * 1000 for k, t in sent_at.items() if k in rep["applied_at"]]
    payload = sum(len(record_bytes(it)) for it in items)
    return {
        "records": len(items),
        "acked": sum(applied.values()),
        "seconds": round(elapsed, 3),
        "records_per_s": round(len(items) / elapsed, 1),
        "record_mb_per_s": round(payload / elapsed / 1e6, 2),
        "enqueue_s": round(t_put, 3),
        "cloud": "in-process" if cloud_in_process else "separate process",
        **cpu,
        "latency_ms_p50": round(pct(lat, 0.5), 1) if lat else None,
        "latency_ms_p99": round(pct(lat, 0.99), 1) if lat else None,
    }


def idle_latency(broker: MosquittoBroker, tmp: Path, records: list[KnowledgeRecord]) -> dict[str, Any]:
    """One record at a time: edge publish_memory -> merged in the cloud DB, and -> acked at the edge."""
    hub = CloudSync(
        CloudSyncSettings(
            sync_mqtt_host=broker.host,
            sync_mqtt_port=broker.port,
            sync_db_path=tmp / "lat-cloud.db",
            sync_rebroadcast="none",
            sync_mqtt_client_id="bench-cloud-lat",
        )
    )
    done = threading.Event()
    hub.on_memory_merged(lambda node, recs: done.set())
    edge = EdgeSync(
        SyncSettings(mqtt_host=broker.host, mqtt_port=broker.port, mqtt_heartbeat_interval_s=3600),
        tmp / "lat-outbox.db",
        "bench-lat",
    )
    hub.start()
    edge.start()
    assert hub.wait_connected(10) and edge.wait_connected(10)
    applied, acked = [], []
    for rec in records:
        done.clear()
        t = time.perf_counter()
        edge.publish_memory([rec])
        done.wait(10)
        applied.append((time.perf_counter() - t) * 1000)
        while edge.outbox.pending_records():
            time.sleep(0.0002)
        acked.append((time.perf_counter() - t) * 1000)
    edge.stop()
    hub.stop()
    return {
        "samples": len(records),
        "applied_ms_p50": round(pct(applied, 0.5), 2),
        "applied_ms_p99": round(pct(applied, 0.99), 2),
        "acked_ms_p50": round(pct(acked, 0.5), 2),
        "acked_ms_p99": round(pct(acked, 0.99), 2),
    }


def raw_paho(broker: MosquittoBroker, items: list[Item]) -> dict[str, Any]:
    """Baseline: one QoS 1 PUBLISH per record from a bare paho client, counted at a subscriber."""
    got = threading.Event()
    count = [0]
    n = len(items)

    def on_msg(c: Any, u: Any, m: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            got.set()

    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-raw-sub", protocol=MQTTProtocolVersion.MQTTv5
    )
    sub.on_message = on_msg
    sub.connect(broker.host, broker.port)
    sub.subscribe("bench/raw", qos=1)
    sub.loop_start()
    pub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-raw-pub", protocol=MQTTProtocolVersion.MQTTv5
    )
    pub.max_inflight_messages_set(1000)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    time.sleep(0.3)
    payloads = [record_bytes(it) for it in items]
    t0 = time.perf_counter()
    infos = [pub.publish("bench/raw", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(60)
    got.wait(120)
    elapsed = time.perf_counter() - t0
    pub.loop_stop()
    sub.loop_stop()
    pub.disconnect()
    sub.disconnect()
    return {
        "records": n,
        "received": count[0],
        "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed, 1),
    }


def lz4_stats(records: list[KnowledgeRecord], batch: int) -> dict[str, Any]:
    dicts = [r.model_dump() for r in records]
    single = [records_body([d]) for d in dicts[:2000]]
    one_raw = sum(len(s) for s in single)
    one_comp = sum(len(lz4.block.compress(s, store_size=True)) for s in single)
    bodies = [records_body(dicts[i : i + batch]) for i in range(0, len(dicts) - batch + 1, batch)][:40]
    comp = [lz4.block.compress(b, store_size=True) for b in bodies]
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        for c in comp:
            lz4.block.decompress(c)
    per_batch_us = (time.perf_counter() - t0) / (reps * len(comp)) * 1e6
    one_comp_blocks = [lz4.block.compress(s, store_size=True) for s in single[:500]]
    t0 = time.perf_counter()
    for _ in range(reps):
        for c in one_comp_blocks:
            lz4.block.decompress(c)
    per_single_us = (time.perf_counter() - t0) / (reps * len(one_comp_blocks)) * 1e6
    return {
        "record_json_bytes_mean": round(statistics.mean(len(s) - 2 for s in single), 1),
        "batch_records": batch,
        "batch_ratio": round(sum(len(b) for b in bodies) / sum(len(c) for c in comp), 2),
        "batch_decompress_us": round(per_batch_us, 1),
        "batch_decompress_us_per_record": round(per_batch_us / batch, 3),
        "single_record_ratio": round(one_raw / one_comp, 2),
        "single_record_decompress_us": round(per_single_us, 2),
    }


def headline(
    mix: dict[str, Any], batched: dict[str, Any], single: dict[str, Any], goal: int
) -> list[HeadlineRow]:
    kinds = [k for k in mix if k != "mix"]
    ratios = ", ".join(f"{k} {mix[k]['batch_ratio']:.2f}" for k in kinds)
    sizes = ", ".join(f"{k} {mix[k]['bytes_per_record'] / 1024:.1f} KiB" for k in kinds)
    return [
        HeadlineRow(
            what=f"MQTT sync, real record mix ({sizes}; embeddings 384 floats), records/s acked end to end",
            baseline=f"1 per message: {single['records_per_s']:,.0f}/s",
            result=f"batched+LZ4: {batched['records_per_s']:,.0f}/s ({batched['record_mb_per_s']} MB/s)",
            target=f"≥ {goal:,}/s",
            met=batched["records_per_s"] >= goal,
        ),
        HeadlineRow(
            what="LZ4 ratio per kind, outbox batches of the real mix",
            baseline=f"whole mix {mix['mix']['batch_ratio']:.2f} : 1",
            result=ratios
            + (
                f"; flagged (< {MIN_RATIO}): {', '.join(mix['mix']['flagged'])}"
                if mix["mix"]["flagged"]
                else ""
            ),
            target=f"≥ {DESIGN_RATIO:g} : 1 (design documents)",
            met=all(mix[k]["batch_ratio"] >= DESIGN_RATIO for k in kinds),
        ),
    ]


def figures(
    mix: dict[str, Any], batched: dict[str, Any], single: dict[str, Any], raw: dict[str, Any]
) -> list[Any]:
    from autoglm.plots import Figure

    kinds = [k for k in mix if k != "mix"]
    return [
        Figure(
            title="bytes per record by kind (real mix)",
            categories=kinds,
            ylabel="KiB",
            series={
                "record": [mix[k]["bytes_per_record"] / 1024 for k in kinds],
                "of it embedding": [
                    mix[k]["bytes_per_record"] * mix[k]["embedding_share"] / 1024 for k in kinds
                ],
            },
        ),
        Figure(
            title="LZ4 ratio by kind",
            categories=kinds,
            ylabel="ratio : 1",
            series={
                "outbox batch": [mix[k]["batch_ratio"] for k in kinds],
                "single record": [mix[k]["single_record_ratio"] for k in kinds],
            },
        ),
        Figure(
            title="records/s acked end to end (real mix)",
            categories=["batched+LZ4", "1 per message", "raw paho"],
            ylabel="records/s",
            series={"records/s": [batched["records_per_s"], single["records_per_s"], raw["records_per_s"]]},
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000, help="records in the batched run (real mix)")
    ap.add_argument("--single-records", type=int, default=2_000, help="records in the one-per-message runs")
    ap.add_argument(
        "--questions", type=int, default=1_200, help="questions the agent answers to make the pool"
    )
    ap.add_argument("--knowledge-per-100", type=int, default=5, help="knowledge entries per 100 questions")
    ap.add_argument(
        "--bundle", type=Path, help="bundle whose encoder embeds (default: demo bundle or MiniLM)"
    )
    ap.add_argument("--batch", type=int, default=500, help="records per message in the batched run")
    ap.add_argument("--window", type=int, default=64, help="unacked messages in flight (batched run)")
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.records, args.single_records, args.latency_samples, args.questions = 3_000, 300, 50, 300

    bundle = args.bundle or minilm_bundle()
    t0 = time.perf_counter()
    pool = edge_records(args.questions, bundle, args.knowledge_per_100)
    pool_s = time.perf_counter() - t0
    mix = lz4_by_kind(pool, batch=args.batch)
    print(
        f"pool: {len(pool)} records from {args.questions} questions in {pool_s:.0f} s "
        f"(bundle {bundle.name}); "
        f"shares {mix['mix']['share']}",
        flush=True,
    )
    for k, v in mix.items():
        if k != "mix":
            print(
                f"  {k:<13} {v['bytes_per_record']:>8,.0f} B/record (embedding {v['embedding_share']:.0%}), "
                f"{v['records_per_message']:>5} records/message, LZ4 batch {v['batch_ratio']}:1, "
                f"single {v['single_record_ratio']}:1, decompress {v['batch_decompress_us']} us/batch"
                + ("  FLAGGED: not compressing" if v["flagged"] else ""),
                flush=True,
            )
    synthetic = lz4_stats(make_records("bench-synthetic", 5000), args.batch)
    print(
        f"  (former synthetic text-only records: {synthetic['record_json_bytes_mean']:.0f} B, "
        f"LZ4 batch {synthetic['batch_ratio']}:1)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = MosquittoBroker(tmp, persistence=False).start()  # set_tcp_nodelay + max_inflight 1000
        try:
            batched = run_pipeline(
                broker,
                tmp,
                cycle(pool, args.records),
                batch=args.batch,
                compress=True,
                window=args.window,
                label="batched",
                track_latency=True,
                cloud_in_process=False,
            )
            print(
                f"batched+lz4      : {batched['records_per_s']:>10,.0f} records/s acked end to end "
                f"({batched['records']} in {batched['seconds']} s, "
                f"{batched['record_mb_per_s']} MB/s of records; "
                f"latency under load p50 {batched['latency_ms_p50']} ms p99 {batched['latency_ms_p99']} ms)",
                flush=True,
            )
            print(
                f"  CPU: edge {batched['edge_cpu_s']} s, broker {batched['broker_cpu_s']} s, cloud "
                f"{batched.get('cloud_cpu_s')} s -> "
                f"{batched.get('records_per_cpu_s_bottleneck', 0):,.0f} records/s "
                "with one free core per side",
                flush=True,
            )
            single = run_pipeline(
                broker,
                tmp,
                cycle(pool, args.single_records),
                batch=1,
                compress=False,
                window=1000,
                label="single",
                track_latency=False,
                cloud_in_process=False,
            )
            print(
                f"1-per-msg        : {single['records_per_s']:>10,.0f} records/s acked end to end "
                f"({single['records']} in {single['seconds']} s)",
                flush=True,
            )
            raw = raw_paho(broker, cycle(pool, args.single_records))
            print(
                f"raw paho 1/msg   : {raw['records_per_s']:>10,.0f} records/s delivered "
                "(no outbox, no app ack)",
                flush=True,
            )
            mem = [obj for kind, obj in cycle(pool, len(pool) * 2) if kind == "memory"]
            idle = idle_latency(
                broker,
                tmp,
                [r.model_copy(update={"key": f"{r.key}~lat"}) for r in mem[: args.latency_samples]],
            )
            print(
                f"idle sync latency: publish->merged p50 {idle['applied_ms_p50']} ms "
                f"p99 {idle['applied_ms_p99']} ms; "
                f"publish->acked p50 {idle['acked_ms_p50']} ms p99 {idle['acked_ms_p99']} ms",
                flush=True,
            )
        finally:
            broker.stop()
    speedup = batched["records_per_s"] / single["records_per_s"]
    goal = 20_000
    print(
        f"batched+lz4 vs 1-per-msg: {speedup:.1f}x; "
        f"vs raw paho: {batched['records_per_s'] / raw['records_per_s']:.1f}x; "
        f"goal {goal:,} records/s: {'MET' if batched['records_per_s'] >= goal else 'NOT MET'}"
    )
    metrics = {
        "bundle": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle),
        "questions": args.questions,
        "knowledge_per_100_questions": args.knowledge_per_100,
        "pool_records": len(pool),
        "lz4_by_kind": mix,
        "lz4_synthetic_text_only": synthetic,
        "batched_lz4": batched,
        "one_per_message": single,
        "raw_paho_one_per_message": raw,
        "idle_latency": idle,
        "speedup_vs_one_per_message": round(speedup, 2),
        "goal_records_per_s": goal,
        "goal_met": batched["records_per_s"] >= goal,
    }
    print(json.dumps({"bench": "mqtt_sync", **metrics}))
    if not args.no_record:
        write_record(
            "mqtt", metrics, headline(mix, batched, single, goal), figures=figures(mix, batched, single, raw)
        )


if __name__ == "__main__":
    main()
