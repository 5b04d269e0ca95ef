"""MqttConnection against brokers that take the TCP connection but do not acknowledge it.

The mute brokers here are real TCP servers on free ports (a broken or overloaded broker is the
thing under test, so there is nothing to mock); the healthy case runs a real Mosquitto.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from contracts.mqtt_client import ConnectionState, MqttConnection, MqttOptions
from tests.support.mosquitto import MosquittoBroker, mosquitto_broker  # noqa: F401  (fixture)
from tests.support.wait import wait_for

CONNACK_OK = bytes([0x20, 0x02, 0x00, 0x00])  # MQTT 3.1.1 CONNACK, accepted


class MuteBroker:
    """Accepts connections; ``answer_connect`` sends CONNACK to the first packet and then stays
    silent (no SUBACK), otherwise nothing is ever sent."""

    def __init__(self, *, answer_connect: bool) -> None:
        self.answer_connect = answer_connect
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            if self.answer_connect:
                with contextlib.suppress(OSError):
                    conn.settimeout(5)
                    conn.recv(4096)  # the CONNECT
                    conn.sendall(CONNACK_OK)

    def __enter__(self) -> MuteBroker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        for c in self._conns:
            c.close()


def _connection(port: int, *, subscriptions: tuple[str, ...], ack_timeout_s: float) -> MqttConnection:
    return MqttConnection(
        MqttOptions(
            host="127.0.0.1",
            port=port,
            client_id="mute-test",
            mqtt5=False,
            subscriptions=subscriptions,
            ack_timeout_s=ack_timeout_s,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        ),
        on_message=lambda topic, payload, retained: None,
    )


@contextlib.contextmanager
def _running(conn: MqttConnection) -> Iterator[MqttConnection]:
    conn.start()
    try:
        yield conn
    finally:
        conn.stop(graceful=False)


@pytest.mark.parametrize(
    ("answer_connect", "subscriptions"),
    [(False, ()), (True, ("a/#",))],
    ids=["no-connack", "connack-but-no-suback"],
)
def test_an_unacknowledged_connection_is_dropped_and_retried(
    answer_connect: bool, subscriptions: tuple[str, ...]
) -> None:
    with MuteBroker(answer_connect=answer_connect) as broker:
        conn = _connection(broker.port, subscriptions=subscriptions, ack_timeout_s=0.3)
        with _running(conn):
            wait_for(lambda: broker.accepted >= 3, timeout=20, what="three connection attempts")
            assert conn.ack_timeouts >= 2
            assert conn.state is not ConnectionState.CONNECTED
            assert conn.connects == 0


def test_a_healthy_connection_outlives_the_ack_timeout(mosquitto_broker: MosquittoBroker) -> None:  # noqa: F811
    arrivals: list[float] = []
    conn = MqttConnection(
        MqttOptions(
            host="127.0.0.1",
            port=mosquitto_broker.port,
            client_id="healthy",
            subscriptions=("a/#",),
            ack_timeout_s=0.3,
        ),
        on_message=lambda topic, payload, retained: arrivals.append(time.monotonic()),
    )
    with _running(conn):
        assert conn.wait_connected(15)
        past_deadline = time.monotonic() + 1.0
        probe = _connection(mosquitto_broker.port, subscriptions=(), ack_timeout_s=0.3)
        with _running(probe):
            assert probe.wait_connected(15)
            wait_for(
                lambda: probe.publish("a/x", b"1") and any(t > past_deadline for t in arrivals),
                timeout=15,
                what="a message delivered well past the ack deadline",
            )
        assert conn.connected and conn.connects == 1 and conn.ack_timeouts == 0
