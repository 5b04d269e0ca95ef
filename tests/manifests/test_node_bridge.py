"""The node-to-cloud MQTT path the manifests rely on, with real Mosquitto processes:

cloud broker = the production configuration (config/mosquitto/mosquitto.conf + acl, TLS listener,
password file), only ports and file paths rewritten to a temporary directory;
node broker = manifests/kubeedge/edge-node/autoglm-bridge.conf.template rendered for one node.

Checks: uplinks of the node reach the cloud over TLS as the node's own MQTT user, downlinks for
this node (and broadcasts) reach the node, other nodes' topics cross in neither direction, and
QoS 1 sync published while the cloud broker is down is delivered once it is back.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from string import Template

import paho.mqtt.client as mqtt
import pytest

from tests.manifests.kube import KUBEEDGE, ROOT
from tests.support.certs import make_ca_and_server_cert
from tests.support.mosquitto import free_port, mosquitto_binary, write_password_file
from tests.support.wait import wait_for

NODE = "edge-node-1"
PASSWORDS = {"autoglm-cloud": "cloud-secret", NODE: "node-secret", "edge-node-2": "other-secret"}


class Broker:
    """One Mosquitto process for a given configuration file."""

    def __init__(self, conf: Path, port: int) -> None:
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto not installed (apt-get install mosquitto)")
        self.binary, self.conf, self.port = binary, conf, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mosquitto -c {self.conf} exited: {self.log()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        log = self.conf.with_suffix(".log")
        return log.read_text(errors="replace") if log.exists() else ""


def _root_line() -> str:
    # Started as root, Mosquitto drops to user "mosquitto", which cannot read the tmp dir.
    return "user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""


def _cloud_conf(d: Path, tls_port: int, local_port: int, ca: Path, crt: Path, key: Path) -> Path:
    conf = (ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    external = re.findall(r"^listener\s+(\d+)\s*$", conf, re.M)
    assert len(external) == 1, "expected one external (TLS) listener"
    conf = re.sub(r"^listener\s+\d+\s+127\.0\.0\.1\s*$", f"listener {local_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener\s+\d+\s*$", f"listener {tls_port} 127.0.0.1", conf, flags=re.M)
    passwd = write_password_file(d / "passwd", PASSWORDS)
    for old, new in (
        ("/etc/mosquitto/passwd", passwd),
        ("/etc/mosquitto/acl", ROOT / "config/mosquitto/acl"),
        ("/etc/mosquitto/certs/server.crt", crt),
        ("/etc/mosquitto/certs/server.key", key),
        ("/etc/mosquitto/certs/ca.crt", ca),
        ("/var/lib/mosquitto/", f"{d}/"),
    ):
        assert str(old) in conf, f"{old} no longer in mosquitto.conf: update this test"
        conf = conf.replace(str(old), str(new))
    path = d / "cloud.conf"
    path.write_text(conf + f"\nlog_dest file {path.with_suffix('.log')}\n" + _root_line())
    return path


def _node_conf(d: Path, node_port: int, cloud_port: int, ca: Path) -> Path:
    template = Template((KUBEEDGE / "edge-node" / "autoglm-bridge.conf.template").read_text(encoding="utf-8"))
    conf = template.substitute(
        NODE_ID=NODE,
        CLOUD_MQTT_ADDRESS=f"127.0.0.1:{cloud_port}",
        NODE_MQTT_PASSWORD=PASSWORDS[NODE],
        CA_FILE=str(ca),
    )
    assert "listener 1883 127.0.0.1" in conf
    conf = conf.replace("listener 1883 127.0.0.1", f"listener {node_port} 127.0.0.1")
    path = d / "node.conf"
    path.write_text(
        conf + f"\npersistence true\npersistence_location {d}/\n"
        f"log_dest file {path.with_suffix('.log')}\nlog_type all\n" + _root_line()
    )
    return path


class Client:
    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        user: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        persistent: bool = False,
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subscribed: queue.Queue[int] = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        if user:
            c.username_pw_set(user, password)
        if ca:
            c.tls_set(ca_certs=str(ca))
        c.reconnect_delay_set(0.1, 0.5)
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        c.on_subscribe = lambda _c, _u, mid, _rc, _p: self.subscribed.put(mid)
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def subscribe(self, *topics: str) -> None:
        for t in topics:
            self.client.subscribe(t, qos=1)
            self.subscribed.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def expect(self, topic: str, timeout: float = 15.0) -> bytes:
        """The next message; fails on anything else arriving first (topics crossing the bridge)."""
        got_topic, payload = self.messages.get(timeout=timeout)
        assert got_topic == topic, f"expected {topic}, got {got_topic}"
        return payload

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Broker, Broker, Path]]:
    ca, crt, key = make_ca_and_server_cert(tmp_path)
    tls_port, local_port, node_port = free_port(), free_port(), free_port()
    (tmp_path / "cloud").mkdir()
    (tmp_path / "node").mkdir()
    cloud = Broker(_cloud_conf(tmp_path / "cloud", tls_port, local_port, ca, crt, key), tls_port).start()
    node = Broker(_node_conf(tmp_path / "node", node_port, tls_port, ca), node_port)
    try:
        node.start()
        yield cloud, node, ca
    finally:
        node.stop()
        cloud.stop()


def _wait_bridge_up(node_client: Client, cloud_client: Client) -> None:
    """Publish probes until one crosses (the bridge connects asynchronously)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        node_client.publish(f"autoglm/up/{NODE}/heartbeat", b"probe", qos=0)
        try:
            topic, _ = cloud_client.messages.get(timeout=0.5)
            assert topic == f"autoglm/up/{NODE}/heartbeat"
            while not cloud_client.messages.empty():
                cloud_client.messages.get()
            return
        except queue.Empty:
            continue
    raise AssertionError("the bridge never carried a heartbeat to the cloud")


def _wait_downlink_up(cloud_client: Client, node_client: Client) -> None:
    """Publish downlink probes until one crosses (the bridge subscribes to the downlink topics
    right after it connects), then drop what arrived."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        cloud_client.publish(f"autoglm/down/{NODE}/ack", b"probe")
        try:
            topic, _ = node_client.messages.get(timeout=0.5)
        except queue.Empty:
            continue
        assert topic == f"autoglm/down/{NODE}/ack"
        wait_for(lambda: _drained(node_client), timeout=5.0, what="late downlink probes")
        return
    raise AssertionError("the bridge never carried a downlink message to the node")


def _drained(client: Client) -> bool:
    """Take one late message (if any) off the queue; True once none came for 0.2 s."""
    try:
        client.messages.get(timeout=0.2)
    except queue.Empty:
        return True
    return False


def test_node_bridge_carries_only_this_nodes_topics_over_tls(brokers: tuple[Broker, Broker, Path]) -> None:
    cloud, node, ca = brokers
    hub = Client(cloud.port, "cloud-hub", user="autoglm-cloud", password=PASSWORDS["autoglm-cloud"], ca=ca)
    agent = Client(node.port, "agent")
    try:
        hub.subscribe("autoglm/up/+/#")
        agent.subscribe(f"autoglm/down/{NODE}/#", "autoglm/fleet/#")
        _wait_bridge_up(agent, hub)

        agent.publish(f"autoglm/up/{NODE}/memory", b"delta-1")
        assert hub.expect(f"autoglm/up/{NODE}/memory") == b"delta-1"
        # Impersonating another node from this node does not reach the cloud.
        agent.publish("autoglm/up/edge-node-2/memory", b"forged")
        agent.publish(f"autoglm/up/{NODE}/events", b"after-forged")
        assert hub.expect(f"autoglm/up/{NODE}/events") == b"after-forged"

        # Downlinks: another node's commands stay in the cloud, this node's and broadcasts arrive.
        _wait_downlink_up(hub, agent)
        hub.publish("autoglm/down/edge-node-2/commands", b"not-for-us")
        hub.publish(f"autoglm/down/{NODE}/commands", b"set-version-1.2.0")
        assert agent.expect(f"autoglm/down/{NODE}/commands") == b"set-version-1.2.0"
        hub.publish("autoglm/fleet/memory", b"shared")
        assert agent.expect("autoglm/fleet/memory") == b"shared"
    finally:
        hub.close()
        agent.close()


def test_sync_published_while_the_cloud_is_down_arrives_when_it_is_back(
    brokers: tuple[Broker, Broker, Path],
) -> None:
    cloud, node, ca = brokers
    hub = Client(
        cloud.port,
        "cloud-hub-persistent",
        user="autoglm-cloud",
        password=PASSWORDS["autoglm-cloud"],
        ca=ca,
        persistent=True,
    )
    agent = Client(node.port, "agent")
    try:
        hub.subscribe("autoglm/up/+/#")
        _wait_bridge_up(agent, hub)
        cloud.stop()  # the cloud link is lost (SIGTERM: the broker saves its sessions)
        for i in range(3):
            agent.publish(f"autoglm/up/{NODE}/memory", f"offline-{i}".encode())
        cloud.start()
        got = [hub.expect(f"autoglm/up/{NODE}/memory", timeout=30) for _ in range(3)]
        assert got == [b"offline-0", b"offline-1", b"offline-2"]
    finally:
        hub.close()
        agent.close()
