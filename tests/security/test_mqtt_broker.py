"""MQTT identity and group isolation with the shipped broker configuration (issue 14, D8).

The broker runs config/mosquitto/mosquitto.conf as shipped (only ports and paths rewritten) with
the shipped ACL plus the group sections ``python -m cloud.sync.broker_acl`` renders. A node must
not be able to take over another client's session by reusing its client id (which would
disconnect the victim and, with a clean start, discard its queued QoS 1 commands), and must read
the broadcasts of its own groups only.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.sync.broker_acl import parse_members, render_acl
from tests.security.mqtt_support import ROOT, SHIPPED_ACL, Client, shipped_broker
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import wait_until

PASSWORDS = {"autoglm-cloud": "cloud-pw", "node-a": "a-pw", "node-b": "b-pw"}
MEMBERS = {"node-a": ["g1"], "node-b": ["g2", "g3"]}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = shipped_broker(tmp_path, PASSWORDS, render_acl(SHIPPED_ACL.read_text(), MEMBERS))
    yield b
    b.stop()


@pytest.mark.parametrize("stolen_id", ["autoglm-edge-node-b", "node-b"])
def test_a_node_cannot_take_over_another_nodes_session(broker: MosquittoBroker, stolen_id: str) -> None:
    cloud = Client(broker, "autoglm-cloud-sync", "autoglm-cloud", "cloud-pw")
    victim = Client(broker, stolen_id, "node-b", "b-pw")
    victim.subscribe("autoglm/down/node-b/commands")
    # node-a (valid credentials of its own) connects with node-b's client id, with a clean start.
    intruder = Client(broker, stolen_id, "node-a", "a-pw", clean_start=True)
    assert not intruder.connect_rc.is_failure
    cloud.publish("autoglm/down/node-b/commands", b"cmd-online")
    wait_until(lambda: victim.got("autoglm/down/node-b/commands") == [b"cmd-online"], 15, "command to node-b")
    assert victim.disconnects == [], "node-b was disconnected by a client of node-a"
    # A command queued while node-b is offline survives node-a's clean-start connect.
    victim.close()
    cloud.publish("autoglm/down/node-b/commands", b"cmd-queued")
    intruder2 = Client(broker, stolen_id, "node-a", "a-pw", clean_start=True)
    intruder2.close()
    back = Client(broker, stolen_id, "node-b", "b-pw")
    wait_until(lambda: back.got("autoglm/down/node-b/commands") == [b"cmd-queued"], 15, "queued command")
    assert intruder.got("autoglm/down/node-b/commands") == []
    for c in (intruder, back, cloud):
        c.close()


def test_a_node_cannot_disconnect_the_cloud_hub(broker: MosquittoBroker) -> None:
    cloud = Client(broker, "autoglm-cloud-sync", "autoglm-cloud", "cloud-pw")
    cloud.subscribe("autoglm/up/+/#")
    for cid in ("autoglm-cloud-sync", "autoglm-cloud"):
        intruder = Client(broker, cid, "node-a", "a-pw", clean_start=True)
        intruder.publish("autoglm/up/node-a/events", cid.encode())
        intruder.close()
    wait_until(lambda: len(cloud.got("autoglm/up/node-a/events")) == 2, 15, "node-a's events at the cloud")
    assert cloud.disconnects == []
    cloud.close()


def test_a_node_reads_only_its_own_groups_broadcasts(broker: MosquittoBroker) -> None:
    cloud = Client(broker, "autoglm-cloud-sync", "autoglm-cloud", "cloud-pw")
    a = Client(broker, "autoglm-edge-node-a", "node-a", "a-pw")
    b = Client(broker, "autoglm-edge-node-b", "node-b", "b-pw")
    for node in (a, b):
        node.subscribe("autoglm/groups/#")  # granted, but the read ACL is checked on every delivery
        node.subscribe("autoglm/fleet/#")
    for group in ("g1", "g2", "g3", "g4"):
        cloud.publish(f"autoglm/groups/{group}/memory", group.encode())
    cloud.publish("autoglm/fleet/memory", b"fleet")  # after the group messages, in order
    wait_until(lambda: a.got("autoglm/fleet/memory") and b.got("autoglm/fleet/memory"), 15, "fleet broadcast")
    assert [t for t, _ in a.messages] == ["autoglm/groups/g1/memory", "autoglm/fleet/memory"]
    assert [t for t, _ in b.messages] == [
        "autoglm/groups/g2/memory",
        "autoglm/groups/g3/memory",
        "autoglm/fleet/memory",
    ]
    for c in (a, b, cloud):
        c.close()


def test_the_shipped_acl_grants_no_group_topic_and_sets_client_ids_from_user_names() -> None:
    acl = SHIPPED_ACL.read_text()
    assert "groups" not in "\n".join(line for line in acl.splitlines() if not line.startswith("#"))
    conf = (ROOT / "config/mosquitto/mosquitto.conf").read_text().splitlines()
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    # A listener option: it must follow every listener line (before the next one).
    for start, end in zip(listeners, [*listeners[1:], len(conf)], strict=True):
        assert "use_username_as_clientid true" in conf[start:end], conf[start]


def test_acl_generator_renders_members_and_refuses_names_that_could_inject_lines(tmp_path: Path) -> None:
    members = tmp_path / "members.txt"
    members.write_text("# node groups\nnode-a g1\n\nnode-b g2 g3  # two groups\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloud.sync.broker_acl",
            "--base",
            str(SHIPPED_ACL),
            "--members",
            str(members),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out == render_acl(SHIPPED_ACL.read_text(), MEMBERS)
    assert "user node-b\ntopic read autoglm/groups/g2/#\ntopic read autoglm/groups/g3/#\n" in out
    assert render_acl(out, {"node-c": ["g9"]}).count("user node-") == 1  # re-rendering replaces the old part
    for bad in ("node-a\ntopic readwrite #", "node a", "node/a", "+", "#", "", "-x"):
        with pytest.raises(ValueError):
            render_acl(SHIPPED_ACL.read_text(), {bad: ["g1"]})
        with pytest.raises(ValueError):
            render_acl(SHIPPED_ACL.read_text(), {"node-a": [bad]})
    with pytest.raises(ValueError, match="line 2"):
        parse_members("node-a g1\nnode-b g/2\n")
    members.write_text("node-a g#\n")
    bad_run = subprocess.run(
        [sys.executable, "-m", "cloud.sync.broker_acl", "--members", str(members)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_run.returncode == 2 and bad_run.stderr.count("\n") == 1 and "line 1" in bad_run.stderr
