"""KubeEdge device twin: payload format (KubeEdge's DeviceTwinUpdate / DeviceTwinDelta JSON) and
reporting / delta following through a real broker standing in for the node's EventBus."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from edge.sync.agent import EdgeSync
from edge.sync.twin import TWIN_VALUE_MAX_BYTES, build_twin_update, parse_twin_delta, twin_delta_topic
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import RawClient, wait_until


def _check_kubeedge_update(doc: dict[str, Any]) -> None:
    """Field names and types of KubeEdge's dttype.DeviceTwinUpdate (BaseMessage + twin map of
    MsgTwin{actual: TwinValue{value *string, metadata{timestamp int64}}, metadata{type}})."""
    assert set(doc) == {"event_id", "timestamp", "twin"}
    assert isinstance(doc["event_id"], str) and doc["event_id"]
    assert isinstance(doc["timestamp"], int) and doc["timestamp"] > 1_600_000_000_000  # milliseconds
    for prop in doc["twin"].values():
        assert set(prop) == {"actual", "metadata"}
        assert set(prop["actual"]) == {"value", "metadata"}
        assert isinstance(prop["actual"]["value"], str)
        assert len(prop["actual"]["value"].encode()) <= TWIN_VALUE_MAX_BYTES
        assert set(prop["actual"]["metadata"]) == {"timestamp"}
        assert isinstance(prop["actual"]["metadata"]["timestamp"], int)
        assert prop["metadata"]["type"] in {"string", "int", "float", "boolean"}


def test_twin_update_matches_kubeedge_format() -> None:
    doc, skipped = build_twin_update(
        {
            "model_version": "1.2.0",
            "queue_depth": 3,
            "latency_p99_ms": 12.5,
            "healthy": True,
            "adapters": ["intent", "slots"],
            "huge": "x" * 600,
            "none": None,
        },
        now_ms=1_760_000_000_123,
    )
    _check_kubeedge_update(doc)
    assert skipped == ["huge"] and "none" not in doc["twin"]
    t = doc["twin"]
    assert (
        t["model_version"]["actual"]["value"] == "1.2.0"
        and t["model_version"]["metadata"]["type"] == "string"
    )
    assert t["queue_depth"]["actual"]["value"] == "3" and t["queue_depth"]["metadata"]["type"] == "int"
    assert t["latency_p99_ms"]["metadata"]["type"] == "float" and t["healthy"]["actual"]["value"] == "true"
    assert json.loads(t["adapters"]["actual"]["value"]) == ["intent", "slots"]
    assert t["model_version"]["actual"]["metadata"]["timestamp"] == 1_760_000_000_123
    # KubeEdge's DeviceTwinDelta: BaseMessage + twin + delta map of strings.
    delta = {"event_id": "e1", "timestamp": 1, "twin": {}, "delta": {"desired_model_version": "1.3.0"}}
    assert parse_twin_delta(json.dumps(delta).encode()) == {"desired_model_version": "1.3.0"}
    with pytest.raises(ValueError):
        parse_twin_delta(b'["not", "a", "delta"]')


def test_twin_reported_and_delta_followed_over_mqtt(
    mosquitto_broker: MosquittoBroker, make_edge: Callable[..., EdgeSync]
) -> None:
    watcher = RawClient(mosquitto_broker, "eventbus-watch")
    watcher.subscribe("$hw/events/device/factory/press-7/twin/update")
    edge = make_edge(
        mosquitto_broker,
        "node-a",
        store=False,
        mqtt_kubeedge_enabled=True,
        mqtt_kubeedge_host=mosquitto_broker.host,
        mqtt_kubeedge_port=mosquitto_broker.port,
        mqtt_kubeedge_namespace="factory",
        mqtt_kubeedge_device="press-7",
    )
    edge.set_heartbeat_provider(
        lambda: {"model_version": "2.0.1", "queue_depth": 1, "resources": {"cpu_percent": 12.5}}
    )
    desired: list[dict[str, str]] = []
    edge.on_twin_delta(desired.append)
    edge.start()
    assert edge.wait_connected(30) and edge.twin is not None and edge.twin.wait_connected(30)
    edge.send_heartbeat()
    wait_until(lambda: watcher.messages, what="twin update on the EventBus topic")
    topic, payload = watcher.messages[0]
    assert topic == "$hw/events/device/factory/press-7/twin/update"
    doc = json.loads(payload)
    _check_kubeedge_update(doc)
    assert doc["twin"]["model_version"]["actual"]["value"] == "2.0.1"
    assert doc["twin"]["resources_cpu_percent"]["actual"]["value"] == "12.5"

    delta = {
        "event_id": "e2",
        "timestamp": 1_760_000_000_000,
        "twin": {"desired_model_version": {"expected": {"value": "2.1.0"}, "metadata": {"type": "string"}}},
        "delta": {"desired_model_version": "2.1.0"},
    }
    watcher.publish(twin_delta_topic("factory", "press-7"), json.dumps(delta).encode())
    wait_until(lambda: desired, what="delta handler")
    assert desired == [{"desired_model_version": "2.1.0"}]
    watcher.close()
