"""KubeEdge device twin: report node status as twin ``actual`` values, follow ``desired`` deltas.

Formats (KubeEdge ``edge/pkg/devicetwin/dttype`` / mapper ``dto``; EventBus topics of KubeEdge
>= 1.15, where the device id is ``{namespace}/{name}``)::

    $hw/events/device/{ns}/{name}/twin/update          we publish
    {"event_id": "<uuid>", "timestamp": <ms>,
     "twin": {"<property>": {"actual": {"value": "<string <= 512 bytes>",
                                        "metadata": {"timestamp": <ms>}},
                             "metadata": {"type": "string|int|float|boolean"}}}}

    $hw/events/device/{ns}/{name}/twin/update/delta    EdgeCore publishes, we follow
    {"event_id": ..., "timestamp": ..., "twin": {...}, "delta": {"<property>": "<desired value>"}}

Values are strings on the wire (KubeEdge's ``TwinValue.Value *string``); lists and dicts are
sent as compact JSON. A value longer than 512 bytes is not sent (KubeEdge would refuse the
whole update); it is logged and counted instead.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from contracts.logging import get_logger
from contracts.mqtt_client import MqttConnection, MqttOptions
from edge.sync.settings import SyncSettings

log = get_logger("autoglm.edge.sync.twin")

TWIN_VALUE_MAX_BYTES = 512


class TwinValueTooLong(ValueError):
    pass


def twin_update_topic(namespace: str, name: str) -> str:
    return f"$hw/events/device/{namespace}/{name}/twin/update"


def twin_delta_topic(namespace: str, name: str) -> str:
    return f"$hw/events/device/{namespace}/{name}/twin/update/delta"


def twin_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def twin_value(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if len(text.encode("utf-8")) > TWIN_VALUE_MAX_BYTES:
        size = len(text.encode("utf-8"))
        raise TwinValueTooLong(f"twin value of {size} bytes exceeds {TWIN_VALUE_MAX_BYTES}")
    return text


def build_twin_update(
    properties: Mapping[str, object], *, now_ms: int | None = None, event_id: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """KubeEdge DeviceTwinUpdate for ``properties``; also returns the properties skipped."""
    ts = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    twin: dict[str, Any] = {}
    skipped: list[str] = []
    for name, value in properties.items():
        if value is None:
            continue
        try:
            text = twin_value(value)
        except TwinValueTooLong as err:
            log.warning("twin property %s not reported: %s", name, err)
            skipped.append(name)
            continue
        twin[name] = {
            "actual": {"value": text, "metadata": {"timestamp": ts}},
            "metadata": {"type": twin_type(value)},
        }
    return {"event_id": event_id or str(uuid.uuid4()), "timestamp": ts, "twin": twin}, skipped


def parse_twin_delta(payload: bytes) -> dict[str, str]:
    """The ``delta`` map (property -> desired value string) of a DeviceTwinDelta message."""
    doc = json.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("delta", {}), dict):
        raise ValueError("not a KubeEdge twin delta message")
    return {str(k): str(v) for k, v in (doc.get("delta") or {}).items()}


def flatten_status(status: Mapping[str, Any]) -> dict[str, object]:
    """Heartbeat dict -> twin properties (nested ``resources`` become ``resources_<k>``)."""
    out: dict[str, object] = {}
    for key, value in status.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                out[f"{key}_{sub}"] = v
        else:
            out[key] = value
    return out


DeltaHandler = Callable[[dict[str, str]], None]


class TwinReporter:
    """Reports status to the node's KubeEdge EventBus broker and follows desired deltas."""

    def __init__(self, options: MqttOptions, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self._handlers: list[DeltaHandler] = []
        self._lock = threading.Lock()
        self.skipped: dict[str, int] = {}
        self.desired: dict[str, str] = {}
        self._conn = MqttConnection(
            dataclasses.replace(options, subscriptions=(twin_delta_topic(namespace, name),), will=None),
            on_message=self._on_message,
            name=f"kubeedge-twin-{name}",
        )

    @classmethod
    def for_sync(cls, s: SyncSettings, node_id: str) -> TwinReporter:
        """The reporter a node's sync runs when ``mqtt_kubeedge_enabled``."""
        options = MqttOptions(
            host=s.mqtt_kubeedge_host,
            port=s.mqtt_kubeedge_port,
            client_id=f"autoglm-twin-{node_id}",
            mqtt5=False,  # KubeEdge's EventBus speaks MQTT 3.1.1
            reconnect_min_s=s.mqtt_reconnect_min_s,
            reconnect_max_s=s.mqtt_reconnect_max_s,
        )
        return cls(options, s.mqtt_kubeedge_namespace, s.mqtt_kubeedge_device or node_id)

    def start(self) -> None:
        self._conn.start()

    def stop(self) -> None:
        self._conn.stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._conn.wait_connected(timeout)

    def on_delta(self, handler: DeltaHandler) -> None:
        self._handlers.append(handler)

    def report(self, status: Mapping[str, Any]) -> bool:
        payload, skipped = build_twin_update(flatten_status(status))
        with self._lock:
            for name in skipped:
                self.skipped[name] = self.skipped.get(name, 0) + 1
        return self._conn.publish(
            twin_update_topic(self.namespace, self.name), json.dumps(payload).encode("utf-8"), qos=1
        )

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            delta = parse_twin_delta(payload)
        except ValueError as err:
            log.warning("ignoring malformed twin delta on %s: %s", topic, err)
            return
        self.desired.update(delta)
        for handler in list(self._handlers):
            try:
                handler(delta)
            except Exception:
                log.exception("twin delta handler failed")
