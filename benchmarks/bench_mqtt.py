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

Also: LZ4 ratio and decompression time on real memory payloads (~300 bytes of text and
metadata per record, varied text), and sync latency p50/p99 (edge publish_memory -> merged in
the cloud database) both idle and under the full-throughput load.

Usage: ``python benchmarks/bench_mqtt.py [--records 60000] [--quick]``. The last line printed is
a JSON record. The machine may be shared: numbers are noisy, compare the ratios.
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

from cloud.sync.hub import CloudSync  # noqa: E402
from cloud.sync.settings import CloudSyncSettings  # noqa: E402
from contracts.envelope import records_body  # noqa: E402
from contracts.hlc import HybridClock  # noqa: E402
from contracts.memory import KnowledgeRecord  # noqa: E402
from edge.sync.agent import EdgeSync  # noqa: E402
from edge.sync.settings import SyncSettings  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

SUBJECTS = ["conveyor 3", "press 7", "the labeller", "station 12", "the packing robot", "oven B", "line 2 camera",
            "the palletizer", "valve V-101", "the filler head"]
EVENTS = ["jams when carton width exceeds", "overheats after running for", "misreads barcodes below",
          "needs recalibration every", "drifts by 2 mm after", "stops on alarm code", "vibrates above",
          "loses vacuum at"]
ADVICE = ["reduce belt speed", "call maintenance", "switch to the backup feeder", "clean the lens",
          "restart the PLC", "check the air pressure", "replace the gasket", "log it and continue"]


def make_records(node: str, n: int, seed: int = 7) -> list[KnowledgeRecord]:
    """Knowledge entries of ~300 bytes JSON each: varied operational facts plus metadata."""
    rng = random.Random(seed)
    clock = HybridClock(node)
    out = []
    for i in range(n):
        text = (f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(EVENTS)} {rng.randint(2, 900)} "
                f"{rng.choice(['cm', 'minutes', 'lux', 'rpm', 'bar'])}; operator should {rng.choice(ADVICE)}. "
                f"Seen {rng.randint(1, 50)} times on shift {rng.choice('ABC')}.")
        h = clock.now().pack()
        out.append(KnowledgeRecord(key=f"{node}/fact/{i:07d}", text=text, source=f"{node}/agent",
                                   confidence=round(rng.uniform(0.5, 1.0), 3), created=h, updated=h))
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
    hub = CloudSync(CloudSyncSettings(sync_mqtt_host=host, sync_mqtt_port=port, sync_db_path=Path(db),
                                      sync_rebroadcast="none", sync_mqtt_client_id=f"bench-cloud-{label}"))
    tracked = set(track)
    applied_at: dict[str, float] = {}
    if tracked:
        hub.on_memory_merged(
            lambda node, recs: applied_at.update((r.key, time.monotonic()) for r in recs if r.key in tracked))
    hub.start()
    conn.send(hub.wait_connected(10))
    conn.recv()  # "start"
    cpu0 = time.process_time()
    conn.recv()  # "report"
    while not hub.idle():
        time.sleep(0.01)
    conn.send({"applied": hub.applied_records["memory"], "applied_at": applied_at, "rejected": dict(hub.rejected),
               "cpu_s": time.process_time() - cpu0})
    hub.stop()


class CloudProcess:
    def __init__(self, broker: MosquittoBroker, db: Path, label: str, track: list[str], in_process: bool) -> None:
        self.in_process = in_process
        if in_process:
            self._hub = CloudSync(CloudSyncSettings(sync_mqtt_host=broker.host, sync_mqtt_port=broker.port,
                                                    sync_db_path=db, sync_rebroadcast="none",
                                                    sync_mqtt_client_id=f"bench-cloud-{label}"))
            self._applied_at: dict[str, float] = {}
            tracked = set(track)
            self._hub.on_memory_merged(lambda node, recs: self._applied_at.update(
                (r.key, time.monotonic()) for r in recs if r.key in tracked))
            self._hub.start()
            assert self._hub.wait_connected(10)
        else:
            ctx = mp.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_cloud_main, args=(child, broker.host, broker.port, str(db), label, track))
            self._proc.start()
            assert self._conn.recv(), "cloud process did not connect"

    def begin(self) -> None:
        if not self.in_process:
            self._conn.send("start")

    def report(self) -> dict[str, Any]:
        if self.in_process:
            while not self._hub.idle():
                time.sleep(0.01)
            out = {"applied": self._hub.applied_records["memory"], "applied_at": self._applied_at}
            self._hub.stop()
            return out
        self._conn.send("report")
        out = self._conn.recv()
        self._proc.join(30)
        return dict(out)


def run_pipeline(broker: MosquittoBroker, tmp: Path, records: list[KnowledgeRecord], *, batch: int, compress: bool,
                 window: int, label: str, track_latency: bool, cloud_in_process: bool) -> dict[str, Any]:
    chunk = 500
    track = [k for i in range(0, len(records), chunk) for k in (records[i].key,
             records[min(i + chunk, len(records)) - 1].key)] if track_latency else []
    cloud = CloudProcess(broker, tmp / f"{label}-cloud.db", label, track, cloud_in_process)
    edge = EdgeSync(SyncSettings(mqtt_host=broker.host, mqtt_port=broker.port, mqtt_batch_max_records=batch,
                                 mqtt_compress=compress, mqtt_window_messages=window,
                                 mqtt_batch_max_bytes=max(1024, batch * 400), mqtt_heartbeat_interval_s=3600,
                                 mqtt_ack_timeout_s=30),
                    tmp / f"{label}-outbox.db", f"bench-{label}")
    edge.start()
    assert edge.wait_connected(10)
    sent_at: dict[str, float] = {}
    cloud.begin()
    broker_cpu0 = proc_cpu_s(broker.proc.pid if broker.proc else 0)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, len(records), chunk):
        part = records[i : i + chunk]
        now = time.monotonic()
        sent_at[part[0].key] = now
        sent_at[part[-1].key] = now
        edge.publish_memory(part)
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
        cpu["records_per_cpu_s_bottleneck"] = round(len(records) / max(edge_cpu, broker_cpu, rep["cpu_s"]), 1)
    assert rep["applied"] == len(records), f"cloud applied {rep['applied']} of {len(records)}"
    lat = [(rep["applied_at"][k] - t) * 1000 for k, t in sent_at.items() if k in rep["applied_at"]]
    return {"records": len(records), "acked": rep["applied"], "seconds": round(elapsed, 3),
            "records_per_s": round(len(records) / elapsed, 1), "enqueue_s": round(t_put, 3),
            "cloud": "in-process" if cloud_in_process else "separate process", **cpu,
            "latency_ms_p50": round(pct(lat, 0.5), 1) if lat else None,
            "latency_ms_p99": round(pct(lat, 0.99), 1) if lat else None}


def idle_latency(broker: MosquittoBroker, tmp: Path, n: int) -> dict[str, Any]:
    """One record at a time: edge publish_memory -> merged in the cloud DB, and -> acked at the edge."""
    hub = CloudSync(CloudSyncSettings(sync_mqtt_host=broker.host, sync_mqtt_port=broker.port,
                                      sync_db_path=tmp / "lat-cloud.db", sync_rebroadcast="none",
                                      sync_mqtt_client_id="bench-cloud-lat"))
    done = threading.Event()
    hub.on_memory_merged(lambda node, recs: done.set())
    edge = EdgeSync(SyncSettings(mqtt_host=broker.host, mqtt_port=broker.port, mqtt_heartbeat_interval_s=3600),
                    tmp / "lat-outbox.db", "bench-lat")
    hub.start()
    edge.start()
    assert hub.wait_connected(10) and edge.wait_connected(10)
    applied, acked = [], []
    for rec in make_records("bench-lat", n, seed=3):
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
    return {"samples": n, "applied_ms_p50": round(pct(applied, 0.5), 2), "applied_ms_p99": round(pct(applied, 0.99), 2),
            "acked_ms_p50": round(pct(acked, 0.5), 2), "acked_ms_p99": round(pct(acked, 0.99), 2)}


def raw_paho(broker: MosquittoBroker, records: list[KnowledgeRecord]) -> dict[str, Any]:
    """Baseline: one QoS 1 PUBLISH per record from a bare paho client, counted at a subscriber."""
    got = threading.Event()
    count = [0]
    n = len(records)

    def on_msg(c: Any, u: Any, m: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            got.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-sub", protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_msg
    sub.connect(broker.host, broker.port)
    sub.subscribe("bench/raw", qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-pub", protocol=MQTTProtocolVersion.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    time.sleep(0.3)
    payloads = [r.model_dump_json().encode() for r in records]
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
    return {"records": n, "received": count[0], "seconds": round(elapsed, 3), "records_per_s": round(n / elapsed, 1)}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=60_000, help="records in the batched run")
    ap.add_argument("--single-records", type=int, default=3_000, help="records in the one-per-message runs")
    ap.add_argument("--batch", type=int, default=500, help="records per message in the batched run")
    ap.add_argument("--window", type=int, default=64, help="unacked messages in flight (batched run)")
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.records, args.single_records, args.latency_samples = 10_000, 500, 50

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = MosquittoBroker(tmp, persistence=False).start()  # set_tcp_nodelay + max_inflight 1000
        try:
            records = make_records("bench-batched", args.records)
            lz = lz4_stats(records, args.batch)
            print(f"LZ4 on memory records (~{lz['record_json_bytes_mean']:.0f} B JSON each): "
                  f"batch of {args.batch} ratio {lz['batch_ratio']}:1, decompress {lz['batch_decompress_us']} us/batch "
                  f"({lz['batch_decompress_us_per_record']} us/record); single record ratio "
                  f"{lz['single_record_ratio']}:1, decompress {lz['single_record_decompress_us']} us", flush=True)
            batched = run_pipeline(broker, tmp, records, batch=args.batch, compress=True, window=args.window,
                                   label="batched", track_latency=True, cloud_in_process=False)
            print(f"batched+lz4      : {batched['records_per_s']:>10,.0f} records/s acked end to end "
                  f"({batched['records']} in {batched['seconds']} s; latency under load p50 "
                  f"{batched['latency_ms_p50']} ms p99 {batched['latency_ms_p99']} ms)", flush=True)
            print(f"  CPU: edge {batched['edge_cpu_s']} s, broker {batched['broker_cpu_s']} s, cloud "
                  f"{batched.get('cloud_cpu_s')} s -> {batched.get('records_per_cpu_s_bottleneck', 0):,.0f} records/s "
                  "with one free core per side", flush=True)
            shared = run_pipeline(broker, tmp, make_records("bench-shared", args.records), batch=args.batch,
                                  compress=True, window=args.window, label="shared", track_latency=False,
                                  cloud_in_process=True)
            print(f"  same, edge+cloud in ONE process (one GIL): {shared['records_per_s']:>8,.0f} records/s",
                  flush=True)
            single = run_pipeline(broker, tmp, make_records("bench-single", args.single_records), batch=1,
                                  compress=False, window=1000, label="single", track_latency=False,
                                  cloud_in_process=False)
            print(f"1-per-msg        : {single['records_per_s']:>10,.0f} records/s acked end to end "
                  f"({single['records']} in {single['seconds']} s)", flush=True)
            raw = raw_paho(broker, make_records("bench-raw", args.single_records))
            print(f"raw paho 1/msg   : {raw['records_per_s']:>10,.0f} records/s delivered (no outbox, no app ack)",
                  flush=True)
            idle = idle_latency(broker, tmp, args.latency_samples)
            print(f"idle sync latency: publish->merged p50 {idle['applied_ms_p50']} ms p99 {idle['applied_ms_p99']} ms; "
                  f"publish->acked p50 {idle['acked_ms_p50']} ms p99 {idle['acked_ms_p99']} ms", flush=True)
        finally:
            broker.stop()
    speedup = batched["records_per_s"] / single["records_per_s"]
    goal = 20_000
    print(f"batched+lz4 vs 1-per-msg: {speedup:.1f}x; vs raw paho: {batched['records_per_s'] / raw['records_per_s']:.1f}x; "
          f"goal {goal:,} records/s: {'MET' if batched['records_per_s'] >= goal else 'NOT MET'}")
    print(json.dumps({"bench": "mqtt_sync", "lz4": lz, "batched_lz4": batched, "batched_lz4_one_process": shared,
                      "one_per_message": single,
                      "raw_paho_one_per_message": raw, "idle_latency": idle, "speedup_vs_one_per_message":
                      round(speedup, 2), "goal_records_per_s": goal, "goal_met": batched["records_per_s"] >= goal}))


if __name__ == "__main__":
    main()
