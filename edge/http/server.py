"""Running the app under uvicorn: in the foreground (``autoglm edge serve``) or in a thread
(tests, benchmarks).

uvicorn is started with uvloop and httptools when installed, access logging off, and one
worker: the process owns one engine and one batcher; ONNX Runtime uses the cores. Several worker
processes on one port (``http_workers`` > 1) are :mod:`edge.http.workers`.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from edge.http.app import create_app
from edge.serving.service import InferenceService
from edge.settings import ServeSettings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def uvicorn_config(app: FastAPI, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    fast_loop = importlib.util.find_spec("uvloop") is not None
    fast_http = importlib.util.find_spec("httptools") is not None
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop" if fast_loop else "asyncio",
        "http": "httptools" if fast_http else "h11",
        "access_log": False,
        "log_level": "warning",
        "lifespan": "on",
        "timeout_keep_alive": 30,
        "backlog": 2048,
        # from the app's settings (ServeSettings.http_limit_concurrency): beyond it uvicorn answers 503
        "limit_concurrency": getattr(app.state, "limit_concurrency", None),
    }
    kwargs.update(overrides)
    return uvicorn.Config(app, **kwargs)


def serve(settings: ServeSettings, service: InferenceService | None = None) -> None:
    """Foreground server until interrupted."""
    service = service or InferenceService.from_settings(settings)
    app = create_app(service, settings)
    uvicorn.Server(uvicorn_config(app, settings.http_host, settings.http_port)).run()


class BackgroundServer:
    """A real uvicorn server on a free port in a daemon thread
    (``with BackgroundServer(...) as s: s.url``)."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None, **overrides: Any
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(uvicorn_config(app, host, self.port, **overrides))
        self._thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not start within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
