"""DEVELOPMENT ONLY: an embedded MQTT broker (the maintained ``amqtt`` package) for the
zero-setup demo when no broker is configured.

It speaks MQTT 3.1.1 only (connect with ``mqtt_v5=False``), keeps everything in memory, has no
authentication, no ACL and no TLS, and its throughput is far below Mosquitto's. Production and
the tests use Mosquitto (``config/mosquitto/``). ``amqtt`` is imported lazily: it is a dev
dependency and the edge image does not ship it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

from contracts.logging import get_logger

log = get_logger("autoglm.edge.sync.embedded_broker")


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` in a background thread (``start`` / ``stop``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        try:
            from amqtt.broker import Broker
        except ImportError as err:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the embedded dev broker needs the 'amqtt' package (pip install amqtt)"
            ) from err
        log.warning(
            "starting the EMBEDDED DEVELOPMENT MQTT broker on %s:%s (not for production)",
            self.host,
            self.port,
        )
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as err:
                self._error = err
                self._started.set()
                return
            self._started.set()
            loop.run_forever()
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._broker.shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("embedded broker did not start in time")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed to start: {self._error}") from self._error
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"embedded broker is not listening on {self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._thread = None
        self._loop = None


def broker_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
