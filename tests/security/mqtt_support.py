"""Helpers of the MQTT security tests: the shipped broker configuration on free ports, a hub in
its own process (RSS + Prometheus metrics), a bare MQTT 5 client that notices being disconnected,
and builders of hand-made (hostile) sync frames."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import lz4.block
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from tests.support.certs import make_ca_and_server_cert
from tests.support.mosquitto import MosquittoBroker, free_port
from tests.sync.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "config" / "mosquitto" / "mosquitto.conf"
SHIPPED_ACL = ROOT / "config" / "mosquitto" / "acl"


# -- the shipped broker ---------------------------------------------------------------------------
def shipped_broker(tmp_path: Path, passwords: dict[str, str], acl: str | None = None) -> MosquittoBroker:
    """config/mosquitto/mosquitto.conf as shipped, only ports and file paths rewritten; ``acl``
    defaults to the shipped config/mosquitto/acl. Clients use the loopback plain listener
    (``broker.port``); the TLS listener runs too (same global settings)."""
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    make_ca_and_server_cert(certs)
    broker = MosquittoBroker(
        tmp_path,
        acl=acl if acl is not None else SHIPPED_ACL.read_text(),
        passwords=passwords,
        persistence=False,
    )
    conf = SHIPPED_CONF.read_text()
    for old, new in (
        ("/etc/mosquitto/certs/", f"{certs}/"),
        ("/etc/mosquitto/passwd", f"{broker.dir}/passwd"),
        ("/etc/mosquitto/acl", f"{broker.dir}/acl"),
        ("/var/lib/mosquitto/", f"{broker.dir}/"),
        ("listener 8883", f"listener {free_port()} 127.0.0.1"),
        ("listener 1883 127.0.0.1", f"listener {broker.port} 127.0.0.1"),
        ("log_dest stdout", f"log_dest file {broker.log_path}"),
    ):
        assert old in conf, f"{old!r} no longer in the shipped mosquitto.conf: update this helper"
        conf = conf.replace(old, new)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        conf += "\nuser root\n"
    broker.conf_path.write_text(conf)
    return broker.start()


# -- a bare client --------------------------------------------------------------------------------
class Client:
    """paho MQTT 5 with a persistent session; records messages and whether the broker dropped it."""

    def __init__(
        self,
        broker: MosquittoBroker,
        client_id: str,
        username: str,
        password: str,
        *,
        clean_start: bool = False,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.disconnects: list[Any] = []
        self.connect_rc: Any = None
        self._lock = threading.Lock()
        self._subacks: dict[int, Any] = {}
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        c.username_pw_set(username, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connect_rc", rc)
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc)
        c.on_message = self._on_message
        c.on_subscribe = lambda _c, _u, mid, rcs, _p: self._subacks.__setitem__(mid, rcs)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect(broker.host, broker.port, clean_start=clean_start, properties=props)
        c.loop_start()
        self.client = c
        wait_until(lambda: self.connect_rc is not None, 10, "CONNACK")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def subscribe(self, topic: str) -> None:
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self._subacks, 10, f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def got(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the hub in its own process -------------------------------------------------------------------
class HubProcess:
    def __init__(
        self, tmp_path: Path, broker: MosquittoBroker, *, address_space_limit: int = 4 << 30, **settings: Any
    ) -> None:
        self.dir = tmp_path / "hub"
        self.dir.mkdir()
        self.db_path = self.dir / "sync.sqlite3"
        self.log_path = self.dir / "hub.log"
        self.metrics_port = free_port()
        ready = self.dir / "ready"
        kwargs = {
            "sync_mqtt_host": broker.host,
            "sync_mqtt_port": broker.port,
            "sync_db_path": str(self.db_path),
            "sync_mqtt_client_id": "autoglm-cloud-sync",
            "sync_rebroadcast": "none",
            **settings,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.security.hub_process",
                json.dumps(kwargs),
                str(self.metrics_port),
                str(self.log_path),
                str(ready),
                str(address_space_limit),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "stderr").open("wb"),
        )
        self.ps = psutil.Process(self.proc.pid)
        wait_until(lambda: ready.exists() or self.proc.poll() is not None, 60, "hub process ready")
        assert self.proc.poll() is None, f"hub process exited: {(self.dir / 'stderr').read_text()}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """One sample; NaN while the endpoint does not answer (the hub is busy or gone)."""
        try:
            return self.samples().get((name, tuple(sorted(labels.items()))), 0.0)
        except OSError:
            return float("nan")

    def idle(self) -> bool:
        return self.metric("test_hub_unfinished_messages") == 0

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("sync.sqlite3*"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class PeakSampler:
    """Samples a process's RSS every 20 ms in a thread (the peak during an attack)."""

    def __init__(self, ps: psutil.Process) -> None:
        self.ps, self.peak, self._stop = ps, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, int(self.ps.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


# -- hand-made frames -----------------------------------------------------------------------------
def raw_frame(header: dict[str, Any] | bytes, payload: bytes, *, version: int = 1) -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return b"AGLM" + struct.pack(">BI", version, len(head)) + head + payload


def header(
    node: str,
    seq: int,
    ct: str = "memory",
    *,
    n: int = 1,
    enc: str = "lz4",
    mid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": mid or f"{node}.{ct}.{seq}.{time.monotonic_ns()}",
        "node": node,
        "seq": seq,
        "hlc": "0000000000001-000000-" + node,
        "ct": ct,
        "enc": enc,
        "n": n,
        **extra,
    }


def lz4_body(body: bytes) -> bytes:
    return bytes(lz4.block.compress(body, store_size=True))
