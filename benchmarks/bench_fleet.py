"""Fleet simulation: 500 lightweight edge agents in a separate process over a real Mosquitto.

The cloud side is the real controller (registry, fleet, rollout loop, CloudSync hub, HTTP API on
uvicorn) in this process. The agents run in ONE separate process: one paho client per node (its
own MQTT connection, retained ``online`` status and ``offline`` Last Will, heartbeats, command
handling and acks in the real envelope format), all driven by a single selector loop.

Measured, side by side:

* ``direct fan-out`` (baseline): desired version sent to every node at once, no steps; time
  until every node reports it.
* ``rollout``: 5% -> 25% -> 50% -> 100% with pauses set to zero and analysis off; time from
  create until the rollout has succeeded and every node reports the version. Goal: < 30 s.
* heartbeat ingestion at the agents' steady rate and when they burst (offered vs ingested/s).
* CPU: cloud process, simulator process and broker, as a share of one core and of the total.

Usage: ``python benchmarks/bench_fleet.py [--nodes 500] [--heartbeat-s 1.0] [--quick]``. The last
line printed is a JSON record. The machine is shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from contracts.commands import Command, CommandAck, CommandKind  # noqa: E402
from contracts.envelope import ContentType, Encoding, decode, new_message_id, pack, records_body  # noqa: E402
from contracts.hlc import HybridClock  # noqa: E402
from contracts.topics import Topics  # noqa: E402

# --------------------------------------------------------------------------------- simulator


class SimAgent:
    def __init__(self, node_id: str, topics: Topics, version: str) -> None:
        self.node_id = node_id
        self.topics = topics
        self.version = version
        self.clock = HybridClock(node_id)
        self.seen: set[str] = set()
        self.next_hb = 0.0
        self.connected = False
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"sim-{node_id}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,
        )
        self.client.will_set(
            topics.status(node_id),
            self.frame(ContentType.STATUS, [self._status("offline")]),
            qos=1,
            retain=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _status(self, status: str) -> dict[str, Any]:
        return {"node_id": self.node_id, "status": status, "ts_ms": time.time_ns() // 1_000_000}

    def frame(self, ct: ContentType, records: list[dict[str, Any]]) -> bytes:
        return pack(
            message_id=new_message_id(),
            node_id=self.node_id,
            seq=0,
            hlc=self.clock.now().pack(),
            content_type=ct,
            body=records_body(records),
            n_records=len(records),
            encoding=Encoding.LZ4,
        )

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connected = True
        client.subscribe(self.topics.commands(self.node_id), qos=1)
        client.publish(
            self.topics.status(self.node_id),
            self.frame(ContentType.STATUS, [self._status("online")]),
            qos=1,
            retain=True,
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        env = decode(msg.payload)
        acks = []
        for rec in env.records:
            cmd = Command.from_record(rec)
            if cmd.command_id not in self.seen:
                self.seen.add(cmd.command_id)
                if cmd.kind is CommandKind.SET_DESIRED_VERSION:
                    self.version = str(cmd.version)  # a real agent downloads, verifies, hot-swaps here
            acks.append(CommandAck.success(cmd.command_id, {"version": self.version}).to_record())
        if acks:
            client.publish(self.topics.up_ack(self.node_id), self.frame(ContentType.ACK, acks), qos=1)
            self.next_hb = 0.0  # report the new version at once

    def heartbeat(self) -> None:
        rec = {
            "node_id": self.node_id,
            "ts_ms": time.time_ns() // 1_000_000,
            "model_version": self.version,
            "requests": 20,
            "latency_p50_ms": 4.0,
            "latency_p99_ms": 9.0,
            "error_rate": 0.0,
            "fallback_rate": 0.02,
        }
        self.client.publish(
            self.topics.heartbeat(self.node_id), self.frame(ContentType.HEARTBEAT, [rec]), qos=0
        )


def run_simulator(host: str, port: int, nodes: int, heartbeat_s: float, burst_s: float, version: str) -> None:
    topics = Topics("autoglm")
    agents = [SimAgent(f"sim-{i:04d}", topics, version) for i in range(nodes)]
    interval = [heartbeat_s]
    sent = [0]
    stop = threading.Event()

    def switch(new_interval: float) -> None:
        interval[0] = new_interval
        print(f"SENT {sent[0]}", flush=True)  # lets the cloud side compute the real offered rate

    signal.signal(signal.SIGUSR1, lambda *_: switch(burst_s))
    signal.signal(signal.SIGUSR2, lambda *_: switch(heartbeat_s))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sel = selectors.DefaultSelector()
    for a in agents:
        a.client.connect(host, port, keepalive=60)
        sock = a.client.socket()
        assert sock is not None
        sel.register(sock, selectors.EVENT_READ, a)
    ready_sent = False
    last_misc = 0.0
    offset = {a.node_id: (i / max(len(agents), 1)) for i, a in enumerate(agents)}
    start = time.monotonic()
    while not stop.is_set():
        for a in agents:
            if a.client.want_write():
                a.client.loop_write()
        for key, _ in sel.select(timeout=0.01):
            key.data.client.loop_read()
        now = time.monotonic()
        if now - last_misc > 1.0:
            for a in agents:
                a.client.loop_misc()
            last_misc = now
        if not ready_sent and all(a.connected for a in agents):
            print("READY", flush=True)
            ready_sent = True
        if ready_sent:
            iv = interval[0]
            for a in agents:
                if now >= a.next_hb:
                    a.heartbeat()
                    sent[0] += 1
                    base = a.next_hb if a.next_hb else start + offset[a.node_id] * iv
                    a.next_hb = max(base + iv, now) if a.next_hb else base + iv
    for a in agents:
        a.client.disconnect()  # graceful: explicit DISCONNECT, the broker drops the will
        a.client.loop_write()


# --------------------------------------------------------------------------------- cloud side


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_pid(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument(
        "--heartbeat-s", type=float, default=1.0, help="Heartbeat interval of each agent (steady)"
    )
    ap.add_argument("--burst-s", type=float, default=0.05, help="Heartbeat interval during the burst")
    ap.add_argument("--window-s", type=float, default=5.0, help="Measurement window for ingestion")
    ap.add_argument("--quick", action="store_true", help="50 nodes, short windows (smoke run)")
    ap.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--version", default="1.0.0", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate:
        run_simulator(args.host, args.port, args.nodes, args.heartbeat_s, args.burst_s, args.version)
        return
    if args.quick:
        args.nodes, args.window_s = 50, 2.0

    import uvicorn

    from cloud.api.app import create_app
    from cloud.api.container import CloudServices
    from cloud.rollout.schemas import AnalysisConfig, RolloutCreate
    from cloud.rollout.service import version_command
    from cloud.settings import CloudSettings
    from tests.cloud.controller.bundles import make_bundle
    from tests.support.mosquitto import MosquittoBroker, free_port

    tmp = Path(tempfile.mkdtemp(prefix="autoglm-bench-fleet-"))
    broker = MosquittoBroker(
        tmp, conf_extra="max_queued_messages 100000\nmax_inflight_messages 1000\n", persistence=False
    ).start()
    settings = CloudSettings(
        data_dir=tmp / "cloud",
        admin_tokens=["bench:bench"],
        mqtt_enabled=True,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        tool_doc_embeddings=False,
        heartbeat_timeout_s=30.0,
    )
    svc = CloudServices.build(settings)
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        svc.registry.register_dir(make_bundle(tmp / "bundles" / v, version=v, encoder_seed=i), actor="bench")
    svc.registry.set_alias("tiny", "stable", "1.0.0", actor="bench", reason="benchmark start")
    app = create_app(services=svc)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)

    sim = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--simulate",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--nodes",
            str(args.nodes),
            "--heartbeat-s",
            str(args.heartbeat_s),
            "--burst-s",
            str(args.burst_s),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    record: dict[str, Any] = {
        "bench": "fleet",
        "nodes": args.nodes,
        "heartbeat_s": args.heartbeat_s,
        "rollout_tick_s": settings.rollout_tick_s,
    }
    try:
        t0 = time.monotonic()
        assert sim.stdout is not None
        line = sim.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"simulator did not start: {line!r}")

        def wait(cond: Any, timeout: float, what: str) -> float:
            start = time.monotonic()
            while not cond():
                if time.monotonic() - start > timeout:
                    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
                time.sleep(0.05)
            return time.monotonic() - start

        wait(lambda: len(svc.fleet.list_nodes(online=True)) >= args.nodes, 60, "all nodes online")
        record["fleet_discovery_s"] = round(time.monotonic() - t0, 2)
        print(
            f"{args.nodes} simulated agents connected and seen online in {record['fleet_discovery_s']} s",
            flush=True,
        )

        def all_on(version: str) -> bool:
            return all(n.current_version == version for n in svc.fleet.list_nodes())

        cpu0, sim0, brk0, w0 = _cpu_self(), _cpu_pid(sim.pid), _cpu_pid(broker.proc.pid), time.monotonic()  # type: ignore[union-attr]

        # Baseline: direct fan-out of 1.1.0 to every node, no steps.
        v11 = svc.registry.get_version("tiny", "1.1.0")
        start = time.monotonic()
        cmd = version_command("tiny", "1.1.0", v11.manifest_sha256)
        svc.fleet.send_commands([(nid, cmd) for nid in svc.fleet.node_ids({})])
        wait(lambda: all_on("1.1.0"), 120, "direct fan-out")
        direct_s = time.monotonic() - start
        svc.registry.set_alias("tiny", "stable", "1.1.0", actor="bench", reason="baseline fan-out done")
        print(f"direct fan-out (baseline): {args.nodes} nodes on 1.1.0 in {direct_s:.2f} s", flush=True)

        # The rollout: default steps, pauses zero, analysis off.
        start = time.monotonic()
        r = svc.rollouts.create(
            RolloutCreate(model="tiny", version="1.2.0", pause_s=0, analysis=AnalysisConfig(enabled=False)),
            actor="bench",
        )
        wait(lambda: svc.rollouts.get(r.id).state in ("succeeded", "aborted", "paused"), 120, "rollout end")
        out = svc.rollouts.get(r.id)
        wait(lambda: all_on("1.2.0"), 60, "every node reporting 1.2.0")
        rollout_s = time.monotonic() - start
        pauses = sum(1 for e in out.events if e.to_state == "paused")
        step_times = [
            round((e.at - out.events[0].at).total_seconds(), 2)
            for e in out.events
            if e.from_state == e.to_state == "progressing" or e.to_state == "succeeded"
        ]
        record.update(
            direct_fanout_s=round(direct_s, 2),
            rollout_s=round(rollout_s, 2),
            rollout_state=out.state,
            rollout_pauses=pauses,
            rollout_step_end_s=step_times,
            rollout_vs_direct=round(rollout_s / direct_s, 2),
            goal_met=out.state == "succeeded" and rollout_s < 30,
        )
        print(
            f"rollout 5->25->50->100% (pauses 0): {out.state}, {args.nodes} nodes on 1.2.0 "
            f"in {rollout_s:.2f} s "
            f"(goal < 30 s: {'met' if record['goal_met'] else 'NOT met'}); steps ended at {step_times} s; "
            f"{rollout_s / direct_s:.1f}x the direct fan-out",
            flush=True,
        )
        cpu1, sim1, brk1, w1 = _cpu_self(), _cpu_pid(sim.pid), _cpu_pid(broker.proc.pid), time.monotonic()  # type: ignore[union-attr]

        # Heartbeat ingestion: steady, then burst.
        def ingest(window: float) -> tuple[float, float, float]:
            c0, h0, t = _cpu_self(), svc.fleet.heartbeats_ingested, time.monotonic()
            time.sleep(window)
            dt = time.monotonic() - t
            return (svc.fleet.heartbeats_ingested - h0) / dt, (_cpu_self() - c0) / dt, dt

        steady_rate, steady_cpu, _ = ingest(args.window_s)
        sim.send_signal(signal.SIGUSR1)
        b0 = time.monotonic()
        sent0 = int(sim.stdout.readline().split()[1])
        time.sleep(0.5)
        burst_rate, burst_cpu, _ = ingest(args.window_s)
        sim.send_signal(signal.SIGUSR2)
        sent1 = int(sim.stdout.readline().split()[1])
        offered_actual = (sent1 - sent0) / (time.monotonic() - b0)
        record.update(
            heartbeat_offered_steady_per_s=round(args.nodes / args.heartbeat_s, 1),
            heartbeat_ingested_steady_per_s=round(steady_rate, 1),
            cloud_cpu_core_share_steady=round(steady_cpu, 3),
            heartbeat_offered_burst_per_s=round(args.nodes / args.burst_s, 1),
            heartbeat_sent_burst_per_s=round(offered_actual, 1),
            heartbeat_ingested_burst_per_s=round(burst_rate, 1),
            cloud_cpu_core_share_burst=round(burst_cpu, 3),
            cloud_us_per_heartbeat_burst=round(burst_cpu / max(burst_rate, 1e-9) * 1e6, 1),
        )
        print(
            f"heartbeats steady: offered {args.nodes / args.heartbeat_s:,.0f}/s, "
            f"ingested {steady_rate:,.0f}/s, "
            f"cloud CPU {steady_cpu:.0%} of a core",
            flush=True,
        )
        print(
            f"heartbeats burst : asked {args.nodes / args.burst_s:,.0f}/s, "
            f"simulator sent {offered_actual:,.0f}/s, "
            f"cloud ingested {burst_rate:,.0f}/s, "
            f"cloud CPU {burst_cpu:.0%} of a core ({record['cloud_us_per_heartbeat_burst']} us/heartbeat)",
            flush=True,
        )

        wall = w1 - w0
        cloud_cpu, sim_cpu, brk_cpu = cpu1 - cpu0, sim1 - sim0, brk1 - brk0
        total = cloud_cpu + sim_cpu + brk_cpu
        record.update(
            fanout_rollout_wall_s=round(wall, 2),
            cpu_cloud_s=round(cloud_cpu, 2),
            cpu_sim_s=round(sim_cpu, 2),
            cpu_broker_s=round(brk_cpu, 2),
            cloud_cpu_core_share_rollouts=round(cloud_cpu / wall, 3),
            cloud_cpu_share_of_total=round(cloud_cpu / total, 3) if total else None,
        )
        print(
            f"CPU during fan-out + rollout ({wall:.1f} s): cloud {cloud_cpu:.1f} s "
            f"({cloud_cpu / wall:.0%} of a core, "
            f"{cloud_cpu / max(total, 1e-9):.0%} of all), simulator {sim_cpu:.1f} s, broker {brk_cpu:.1f} s",
            flush=True,
        )
        print(
            "note: shared 2-core machine; the simulator and the broker compete with the cloud for CPU.",
            flush=True,
        )
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(20)
        except subprocess.TimeoutExpired:
            sim.kill()
        server.should_exit = True
        th.join(10)
        svc.close()
        broker.stop()
    print(json.dumps(record), flush=True)
    from autoglm.bench.records import HeadlineRow, write_record

    write_record(
        "fleet",
        record,
        [
            HeadlineRow(
                what=f"Rollout to {args.nodes} simulated edges over MQTT",
                baseline=f"direct fan-out {record.get('direct_fanout_s')} s",
                result=f"{record.get('rollout_s')} s, {record.get('rollout_state')}",
                target="< 30 s, succeeded",
                met=bool(record.get("goal_met")),
            ),
            HeadlineRow(
                what="Heartbeat ingestion, burst",
                baseline=f"asked {record.get('heartbeat_offered_burst_per_s')}/s",
                result=f"{record.get('heartbeat_ingested_burst_per_s')}/s ingested, "
                f"{record.get('cloud_us_per_heartbeat_burst')} us/heartbeat in the cloud",
            ),
        ],
    )


if __name__ == "__main__":
    os.environ.setdefault("AUTOGLM_CLOUD_LOG_LEVEL", "WARNING")
    main()
