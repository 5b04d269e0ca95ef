"""The shipped config/mosquitto/mosquitto.conf really runs: TLS listener with password auth and
the ACL, loopback plain listener, persistence — with paths and ports pointed at a tmp dir."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.sync.hub import CloudSync
from edge.sync.agent import EdgeSync
from tests.support.certs import make_ca_and_server_cert
from tests.support.mosquitto import MosquittoBroker, free_port
from tests.sync.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def production_broker(tmp_path: Path) -> tuple[MosquittoBroker, int]:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_server_cert(certs)
    tls_port, plain_port = free_port(), free_port()
    # The helper writes the password file (mosquitto_passwd) and the ACL into broker.dir; the
    # conf itself is the shipped one with only paths and ports changed.
    broker = MosquittoBroker(
        tmp_path,
        acl=(ROOT / "config/mosquitto/acl").read_text(),
        passwords={"autoglm-cloud": "c-pw", "node-a": "a-pw"},
        port=plain_port,
        persistence=False,
    )
    conf = (ROOT / "config/mosquitto/mosquitto.conf").read_text()
    for old, new in (
        ("/etc/mosquitto/certs/", f"{certs}/"),
        ("/etc/mosquitto/passwd", f"{broker.dir}/passwd"),
        ("/etc/mosquitto/acl", f"{broker.dir}/acl"),
        ("/var/lib/mosquitto/", f"{broker.dir}/"),
        ("listener 8883", f"listener {tls_port} 127.0.0.1"),
        ("listener 1883 127.0.0.1", f"listener {plain_port} 127.0.0.1"),
        ("log_dest stdout", f"log_dest file {broker.log_path}"),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        conf += "\nuser root\n"
    broker.conf_path.write_text(conf)
    broker.start()
    yield broker, tls_port
    broker.stop()


def test_production_conf_tls_auth_acl(
    production_broker: tuple[MosquittoBroker, int],
    tmp_path: Path,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    broker, tls_port = production_broker
    ca = tmp_path / "certs" / "ca.crt"
    hub = make_cloud(broker, sync_mqtt_username="autoglm-cloud", sync_mqtt_password="c-pw").start()
    edge = make_edge(
        broker,
        "node-a",
        mqtt_port=tls_port,
        mqtt_tls=True,
        mqtt_tls_ca_file=ca,
        mqtt_username="node-a",
        mqtt_password="a-pw",
    ).start()
    assert hub.wait_connected(15), "cloud on the loopback listener"
    assert edge.wait_connected(15), "node over TLS with password"
    assert edge.store is not None
    edge.publish_memory([edge.store.put("tls", "over the TLS listener")])
    wait_until(lambda: edge.outbox.pending_records() == 0, what="acked through the production conf")
    assert hub.repo.knowledge("tls") is not None
    # Without the password the TLS listener refuses the node.
    intruder = make_edge(broker, "node-b", mqtt_port=tls_port, mqtt_tls=True, mqtt_tls_ca_file=ca).start()
    assert not intruder.wait_connected(1.5)
