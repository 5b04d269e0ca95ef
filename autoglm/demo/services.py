"""The demo's running parts: an MQTT broker, the cloud controller, edge nodes with the agent.

Each part starts on a free loopback port and stops cleanly (``stop`` is idempotent).
Broker: the real Mosquitto when its binary exists (the dev config of ``config/mosquitto``,
written to a temporary conf with a free port), else the embedded DEVELOPMENT broker.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoglm.demo.relaxed import DEMO_CACHE_THRESHOLD

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
DEV_CONF = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "dev.conf"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in MOSQUITTO_CANDIDATES if os.access(c, os.X_OK)), None)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """Mosquitto (subprocess) or the embedded dev broker, on a free port."""

    def __init__(self, work_dir: Path, host: str = "127.0.0.1", prefer_embedded: bool = False) -> None:
        self.host, self.port = host, free_port(host)
        self.work_dir = work_dir
        self.binary = None if prefer_embedded else mosquitto_binary()
        self.kind = "mosquitto" if self.binary else "embedded (amqtt, DEVELOPMENT ONLY)"
        self.mqtt_v5 = self.binary is not None  # the embedded broker speaks MQTT 3.1.1 only
        self._proc: subprocess.Popen[bytes] | None = None
        self._embedded: Any = None

    def _conf(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        base = (
            DEV_CONF.read_text(encoding="utf-8").splitlines()
            if DEV_CONF.is_file()
            else ["allow_anonymous true", "persistence false", "set_tcp_nodelay true"]
        )
        lines = [ln for ln in base if not ln.startswith(("listener", "log_dest"))]
        lines += [f"listener {self.port} {self.host}", f"log_dest file {self.work_dir / 'mosquitto.log'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # as root Mosquitto would drop to a user that cannot write here
        conf = self.work_dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout: float = 10.0) -> Broker:
        if self.binary is None:
            from edge.sync.embedded_broker import EmbeddedBroker

            self._embedded = EmbeddedBroker(self.host, self.port).start(timeout)
            return self
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self._conf())], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err.strip()[:300]}")
            if _listening(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout}s")

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._embedded is not None

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None


@dataclass
class CloudController:
    """The cloud API app (registry, fleet, rollouts, tools, MQTT hub) under uvicorn in a thread."""

    services: Any
    server: Any
    thread: threading.Thread
    port: int
    admin_token: str
    bootstrap_token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, data_dir: Path, broker: Broker, public_key_hex: str, timeout: float = 30.0
    ) -> CloudController:
        import uvicorn

        from cloud.api.app import create_app
        from cloud.api.container import CloudServices
        from cloud.settings import CloudSettings

        if not broker.mqtt_v5:  # the hub reads its own settings; the dev broker needs MQTT 3.1.1
            os.environ["AUTOGLM_CLOUD_SYNC_MQTT_V5"] = "false"
        admin, bootstrap = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        port = free_port()
        settings = CloudSettings(
            data_dir=data_dir,
            database_url="",
            admin_tokens=[f"demo-admin:{admin}"],
            bootstrap_token=bootstrap,
            bundle_public_key=public_key_hex,
            api_url=f"http://127.0.0.1:{port}",
            http_host="127.0.0.1",
            http_port=port,
            mqtt_enabled=True,
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            rollout_tick_s=0.1,
            heartbeat_timeout_s=15.0,
            fleet_flush_interval_s=0.5,
            tool_doc_embeddings=False,  # lexical doc search: no second MiniLM in the demo process
            log_level="WARNING",
        )
        svc = CloudServices.build(settings)
        app = create_app(services=svc, run_loops=True)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, name="demo-cloud-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                server.should_exit = True
                svc.close()
                raise RuntimeError("the cloud controller did not start (uvicorn)")
            time.sleep(0.02)
        return cls(svc, server, thread, port, admin, bootstrap)

    @property
    def hub(self) -> Any:
        link = self.services.extra.get("sync")
        return getattr(link, "sync", None)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def client(self) -> Any:
        import httpx

        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30
        )

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(20)
        if self.services is not None:
            with contextlib.suppress(Exception):
                self.services.close()
            self.services = None


def start_edge_node(
    home: Path,
    node_id: str,
    broker: Broker,
    cloud: CloudController,
    public_key_hex: str,
    *,
    labels: dict[str, str],
    keyword_router: bool = False,
) -> Any:
    """An ``EdgeNode`` (OIP v2, control plane, MQTT sync) plus the reasoning agent on ``/v1/ask``.

    The agent is wired here (not with ``EdgeNode.build(with_agent=True)``) so that two nodes in
    one process get their own memory database and agent settings.
    """
    from edge.agent.factory import build_agent
    from edge.agent.http import make_router
    from edge.agent.routing import KeywordRouter
    from edge.agent.settings import AgentSettings
    from edge.control.settings import ControlSettings
    from edge.memory.store import MemoryStore
    from edge.node import EdgeNode
    from edge.settings import ServeSettings
    from edge.sync.agent import EdgeSync
    from edge.sync.settings import SyncSettings
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    home.mkdir(parents=True, exist_ok=True)
    serve = ServeSettings(
        node_id=node_id,
        http_host="127.0.0.1",
        http_port=free_port(),
        providers=["cpu"],
        model_cache_dir=home / "model-cache",
        ort_intra_op_threads=1,
        serve_warmup_batches=1,
        bundle_public_key=public_key_hex,
        # the admin routes (repository, POST /v1/knowledge) need a token (docs/SECURITY.md)
        http_admin_token=secrets.token_urlsafe(24),
    )
    sync_settings = SyncSettings(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_v5=broker.mqtt_v5,
        mqtt_outbox_path=home / "outbox.sqlite3",
        mqtt_heartbeat_interval_s=0.5,
    )
    store = MemoryStore(home / "memory.sqlite3", node_id)
    sync = EdgeSync(sync_settings, node_id=node_id, store=store)
    control = ControlSettings(
        control_cloud_url=cloud.url,
        control_bootstrap_token=cloud.bootstrap_token,
        control_node_labels=labels,
        control_apply_timeout_s=120,
    )
    node = EdgeNode.build(serve, sync_settings, control, sync=sync)
    agent_settings = AgentSettings(
        agent_cloud_url=cloud.url,
        agent_cloud_token=cloud.admin_token,
        agent_memory_db=home / "memory.sqlite3",
        agent_cloud_timeout_s=2.0,
        # relaxed below the shipped default, printed by the ask stage
        agent_cache_threshold=DEMO_CACHE_THRESHOLD,
    )
    router = KeywordRouter(EntityLinker(default_graph())) if keyword_router else None
    agent = build_agent(agent_settings, service=node.service, sync=sync, node_id=node_id, router=router)
    node.app.include_router(make_router(agent))
    node.heartbeat.add(agent.metrics.heartbeat_fields)
    node.agent = agent
    return node.start(timeout=60)
