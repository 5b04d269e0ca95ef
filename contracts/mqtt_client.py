"""One MQTT 5 connection (paho-mqtt 2.x) shared by the edge and cloud sync code.

Why our own network loop instead of ``loop_start()``: paho's built-in reconnect backs off
exponentially but without jitter, so a fleet that lost its broker would reconnect in lock-step.
Here a single thread connects, runs ``client.loop()`` and, when the connection drops, waits
``min(max, min * 2**attempt) * uniform(0.5, 1.5)`` before trying again.

Sessions are persistent: ``clean_start=False`` with a Session Expiry Interval, QoS 1
subscriptions are re-sent on every connect (harmless when the broker kept them). Durability
does not rely on the broker: the callers keep their own outbox and resend until acked.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts.logging import get_logger

log = get_logger("autoglm.mqtt")


class ConnectionState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    clean_start: bool = False
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    max_inflight: int = 1000
    will: Will | None = None
    mqtt5: bool = True  # False: MQTT 3.1.1 (e.g. the embedded dev broker), clean_session=False
    subscriptions: tuple[str, ...] = field(default_factory=tuple)
    # A broker that takes the TCP connection but never sends CONNACK (or never the SUBACK of
    # our subscriptions) would leave us "connecting" forever: after this many seconds the
    # attempt is dropped and retried with backoff.
    ack_timeout_s: float = 10.0


def backoff_delay(attempt: int, lo: float, hi: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with +-50% jitter, capped at ``hi``."""
    base = min(hi, lo * (2 ** min(attempt, 30)))
    return base * (rng or random).uniform(0.5, 1.5)


MessageHandler = Callable[[str, bytes, bool], None]  # topic, payload, retained


class MqttConnection:
    def __init__(
        self,
        options: MqttOptions,
        *,
        on_message: MessageHandler,
        on_connected: Callable[[bool], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        name: str = "mqtt",
    ) -> None:
        self.options = options
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._name = name
        self._state = ConnectionState.IDLE
        self._state_cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connects = 0
        self.ack_timeouts = 0
        self._attempt = 0
        self._sub_mid = -1
        self._session_present = False
        self._client = self._build_client()

    # -- lifecycle ---------------------------------------------------------------------------
    def _build_client(self) -> mqtt.Client:
        o = self.options
        if o.mqtt5:
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=o.client_id,
                protocol=MQTTProtocolVersion.MQTTv5,
            )
        else:
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=o.client_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=o.clean_start,
            )
        if o.username is not None:
            client.username_pw_set(o.username, o.password)
        if o.tls:
            client.tls_set(
                ca_certs=o.tls_ca_file,
                certfile=o.tls_cert_file,
                keyfile=o.tls_key_file,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if o.will is not None:
            client.will_set(o.will.topic, o.will.payload, qos=o.will.qos, retain=o.will.retain)
        client.max_inflight_messages_set(o.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        return client

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-net", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, *, graceful: bool = True) -> None:
        """Disconnect and end the network thread. ``graceful=False`` drops the socket without
        a DISCONNECT packet, so the broker publishes the Last Will (a crash, for tests)."""
        self._stop.set()
        try:
            if graceful:
                self._client.disconnect()
            else:
                sock = self._client.socket()
                if sock is not None:
                    sock.close()
        except Exception:  # already gone
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._set_state(ConnectionState.STOPPED)

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def wait_connected(self, timeout: float) -> bool:
        with self._state_cv:
            return self._state_cv.wait_for(lambda: self._state is ConnectionState.CONNECTED, timeout)

    def _set_state(self, state: ConnectionState) -> None:
        with self._state_cv:
            self._state = state
            self._state_cv.notify_all()

    # -- I/O -----------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Hand a message to the connection; False when not connected (caller keeps it)."""
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _run(self) -> None:
        o = self.options
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = o.session_expiry_s
        first = True
        while not self._stop.is_set():
            self._set_state(ConnectionState.CONNECTING)
            try:
                if first and o.mqtt5:
                    self._client.connect(
                        o.host, o.port, keepalive=o.keepalive_s, clean_start=o.clean_start, properties=props
                    )
                    first = False
                elif first:
                    self._client.connect(o.host, o.port, keepalive=o.keepalive_s)
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ValueError) as err:
                first = first and not isinstance(err, ValueError)
                self._set_state(ConnectionState.DISCONNECTED)
                delay = backoff_delay(self._attempt, o.reconnect_min_s, o.reconnect_max_s)
                self._attempt += 1
                log.debug(
                    "%s: connect to %s:%s failed (%s); retry in %.2fs", self._name, o.host, o.port, err, delay
                )
                self._stop.wait(delay)
                continue
            self._set_nodelay()
            ack_deadline = time.monotonic() + o.ack_timeout_s
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self._state is ConnectionState.CONNECTING and time.monotonic() > ack_deadline:
                    self.ack_timeouts += 1
                    log.warning(
                        "%s: %s:%s took the connection but did not acknowledge it (CONNACK/SUBACK) "
                        "within %.1fs; reconnecting",
                        self._name,
                        o.host,
                        o.port,
                        o.ack_timeout_s,
                    )
                    self._drop_socket()
                    break
            if self._stop.is_set():
                break
            if self._state is ConnectionState.CONNECTED:
                self._set_state(ConnectionState.DISCONNECTED)
                if self._on_disconnected is not None:
                    self._on_disconnected()
            else:
                self._set_state(ConnectionState.DISCONNECTED)
            delay = backoff_delay(self._attempt, o.reconnect_min_s, o.reconnect_max_s)
            self._attempt += 1
            log.info("%s: connection lost; reconnecting in %.2fs", self._name, delay)
            self._stop.wait(delay)

    def _drop_socket(self) -> None:
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _set_nodelay(self) -> None:
        """paho leaves Nagle on; with small acks/publishes that costs ~40 ms per round trip."""
        setsockopt = getattr(self._client.socket(), "setsockopt", None)
        if setsockopt is not None:
            with contextlib.suppress(OSError):
                setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: object,
        properties: object,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("%s: broker refused the connection: %s", self._name, reason_code)
            return
        self._session_present = bool(flags.session_present)
        if self.options.subscriptions:
            # "Connected" only once the broker confirmed the subscriptions (SUBACK), so nothing
            # published to us after wait_connected() returns can be missed.
            _, mid = client.subscribe([(t, 1) for t in self.options.subscriptions])
            self._sub_mid = mid if mid is not None else -1
        else:
            self._ready()

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reason_codes: object, properties: object
    ) -> None:
        if mid == self._sub_mid:
            self._ready()

    def _ready(self) -> None:
        self.connects += 1
        self._attempt = 0
        self._set_state(ConnectionState.CONNECTED)
        log.info(
            "%s: connected to %s:%s (session present: %s)",
            self._name,
            self.options.host,
            self.options.port,
            self._session_present,
        )
        if self._on_connected is not None:
            self._on_connected(self._session_present)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason_code: object, properties: object
    ) -> None:
        if self._state is ConnectionState.CONNECTED:
            self._set_state(ConnectionState.DISCONNECTED)
            if self._on_disconnected is not None:
                self._on_disconnected()

    def _handle_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:
            log.exception("%s: message handler failed on %s", self._name, message.topic)
