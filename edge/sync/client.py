"""The edge's MQTT connection: ``SyncSettings`` -> :class:`contracts.mqtt_client.MqttOptions`.

The connection itself (paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``, MQTT 5 with a persistent
session, QoS 1, reconnect with exponential backoff and jitter, :class:`ConnectionState`) lives in
``contracts.mqtt_client`` because the cloud hub uses the very same code; this module only maps
the edge's settings onto it.
"""

from __future__ import annotations

from contracts.mqtt_client import ConnectionState, MqttConnection, MqttOptions, Will
from edge.sync.settings import SyncSettings

__all__ = ["ConnectionState", "MqttConnection", "MqttOptions", "Will", "edge_mqtt_options"]


def edge_mqtt_options(
    settings: SyncSettings, node_id: str, *, will: Will | None, subscriptions: list[str]
) -> MqttOptions:
    s = settings
    return MqttOptions(
        host=s.mqtt_host,
        port=s.mqtt_port,
        client_id=f"autoglm-edge-{node_id}",
        username=s.mqtt_username,
        password=s.mqtt_password,
        tls=s.mqtt_tls,
        tls_ca_file=str(s.mqtt_tls_ca_file) if s.mqtt_tls_ca_file else None,
        tls_cert_file=str(s.mqtt_tls_cert_file) if s.mqtt_tls_cert_file else None,
        tls_key_file=str(s.mqtt_tls_key_file) if s.mqtt_tls_key_file else None,
        keepalive_s=s.mqtt_keepalive_s,
        mqtt5=s.mqtt_v5,
        session_expiry_s=s.mqtt_session_expiry_s,
        reconnect_min_s=s.mqtt_reconnect_min_s,
        reconnect_max_s=s.mqtt_reconnect_max_s,
        will=will,
        subscriptions=tuple(subscriptions),
    )
