"""Several worker processes serving one port (``autoglm edge serve --workers N``, issue 17 item 4).

Each worker is a separate Python process (``multiprocessing`` *spawn*: nothing of the parent's
state, threads or ONNX Runtime sessions is inherited) that opens **its own** listening socket on
the same host and port with ``SO_REUSEPORT`` (Linux): the kernel spreads new connections over the
workers' accept queues by a hash of the connection's addresses, so one busy worker does not take
every connection the way a shared accept queue lets it. A keep-alive connection stays with the
worker that accepted it.

What is per worker (nothing is shared between the processes):

- the ``InferenceService``: model manager with its slots, the loaded bundle and its ORT session
  (or TensorRT engine), the dynamic batcher and its queue (``serve_queue_capacity`` is per worker),
  the LZ4 result cache (``cache_max_bytes`` is per worker: N workers hold up to N times it, and a
  text cached by one worker is a miss in the others);
- ONNX Runtime threads: with ``ort_intra_op_threads`` = 0 each worker gets ``cores // N`` (at
  least 1) instead of all cores, so N sessions do not oversubscribe the CPU;
- the in-flight body budget and uvicorn's ``limit_concurrency`` (both per worker).

Metrics: prometheus_client's multiprocess mode. The parent creates an empty directory and names
it in ``PROMETHEUS_MULTIPROC_DIR`` before it starts the workers, so every worker's counters,
histograms and gauges are kept in memory-mapped files there; ``/metrics`` on whichever worker
answers the scrape renders the sum over all workers (counters, histograms; gauges: queue depth
and cache bytes summed over live workers, the model-info gauge the max, the cache compression
ratio per worker with a ``pid`` label). The per-process ``process_*`` / ``python_*`` families are
not shown in this mode (they would describe one random worker). The parent removes the files of
a worker that exited and the directory at the end.

Model updates: a hot swap through ``POST /v2/repository/models/{m}/load`` would reach the one
worker that accepted the request, so with N > 1 the load and unload routes answer 409 (restart
the server with the new bundle instead); the node agent (``autoglm edge run`` / ``agent``), whose
control plane applies cloud commands to its one in-process service, refuses ``http_workers`` > 1
at start-up (``edge.node.EdgeNode.build``). Serving several worker processes behind a node agent
would need the swap to be applied by every worker; that is not built.

The parent supervises: it waits until every worker has loaded its model (or one failed to load:
it stops the others and returns 1), forwards SIGINT/SIGTERM, and when one worker dies the others
are stopped and the exit status is 1 (the orchestrator restarts the whole server).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.logging import get_logger
from contracts.settings import ConfigError
from edge.serving.metrics import MULTIPROC_ENV
from edge.settings import ServeSettings

log = get_logger("autoglm.edge.workers")


def reuseport_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and os.uname().sysname == "Linux"


def reuseport_socket(host: str, port: int, backlog: int = 2048, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and listening unless told not to)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def worker_settings(settings: ServeSettings) -> ServeSettings:
    """A worker's settings: its share of the cores when ORT threads are automatic."""
    from edge.runtime.providers import default_intra_op_threads

    if settings.http_workers <= 1 or settings.ort_intra_op_threads:
        return settings
    share = max(1, default_intra_op_threads() // settings.http_workers)
    return settings.model_copy(update={"ort_intra_op_threads": share})


def check_workers(settings: ServeSettings) -> None:
    """ConfigError where several workers cannot work here."""
    if settings.http_workers > 1 and not reuseport_supported():
        raise ConfigError(
            f"http_workers={settings.http_workers} needs SO_REUSEPORT (Linux); this platform has none"
        )


@dataclass(frozen=True)
class WorkerEvent:
    """What a worker tells the parent: ``ready`` (model loaded) or ``error`` (load failed)."""

    index: int
    pid: int
    kind: str
    text: str


def _watch_load(server: Any, service: Any, index: int, events: Any) -> None:
    """Tell the parent once this worker's model is ready, or why it failed (then stop)."""
    while not server.should_exit:
        if service.ready and server.started:
            m = service.active
            events.put(WorkerEvent(index, os.getpid(), "ready", f"{m.name}@{m.version} {m.adapter_set}"))
            return
        last = service.last_load
        if last is not None and last.error:
            events.put(WorkerEvent(index, os.getpid(), "error", str(last.error)))
            server.should_exit = True
            return
        time.sleep(0.05)


def worker_main(settings: ServeSettings, index: int, events: Any, log_level: str) -> None:
    """One worker process: its own service, app, socket and uvicorn server."""
    import uvicorn

    from contracts.logging import configure_logging
    from edge.http.app import create_app
    from edge.http.server import uvicorn_config
    from edge.serving.service import InferenceService

    configure_logging(log_level)
    settings = worker_settings(settings)
    sock = reuseport_socket(settings.http_host, settings.http_port)
    service = InferenceService.from_settings(settings)
    app = create_app(service, settings)
    app.state.worker_index = index
    server = uvicorn.Server(uvicorn_config(app, settings.http_host, settings.http_port))
    threading.Thread(
        target=_watch_load, args=(server, service, index, events), daemon=True, name="edge-worker-watch"
    ).start()
    server.run(sockets=[sock])


class WorkerPool:
    """The parent side: start N workers, wait until all serve, supervise, stop."""

    def __init__(self, settings: ServeSettings, log_level: str = "INFO") -> None:
        check_workers(settings)
        self.settings = settings
        self.log_level = log_level
        self.ctx = multiprocessing.get_context("spawn")
        self.events: Any = self.ctx.Queue()
        self.procs: list[Any] = []
        self.metrics_dir = ""
        self._reserved: socket.socket | None = None

    @property
    def port(self) -> int:
        return self.settings.http_port

    def start(self) -> WorkerPool:
        s = self.settings
        if s.http_port == 0:  # one port for all: reserve a free one (bound, not listening)
            self._reserved = reuseport_socket(s.http_host, 0, listen=False)
            self.settings = s = s.model_copy(update={"http_port": self._reserved.getsockname()[1]})
        self.metrics_dir = tempfile.mkdtemp(prefix="autoglm-edge-metrics-")
        os.environ[MULTIPROC_ENV] = self.metrics_dir  # read by prometheus_client in each spawned worker
        try:
            for i in range(s.http_workers):
                p = self.ctx.Process(
                    target=worker_main,
                    args=(s, i, self.events, self.log_level),
                    name=f"autoglm-edge-worker-{i}",
                )
                p.start()
                self.procs.append(p)
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
        return self

    def wait_ready(
        self, timeout: float = 600.0, on_event: Callable[[WorkerEvent], None] | None = None
    ) -> str | None:
        """None once every worker serves; else the first worker's load error (or why it stopped)."""
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < len(self.procs):
            try:
                ev: WorkerEvent = self.events.get(timeout=0.2)
            except queue.Empty:
                dead = [p for p in self.procs if p.exitcode is not None]
                if dead:
                    return f"worker {dead[0].name} exited with {dead[0].exitcode} during start-up"
                if time.monotonic() > deadline:
                    return f"workers not ready within {timeout:.0f}s"
                continue
            if on_event is not None:
                on_event(ev)
            if ev.kind == "error":
                return f"worker {ev.index}: {ev.text}"
            ready.add(ev.index)
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        return None

    def supervise(self, stop: threading.Event | None = None) -> int:
        """Until a worker exits (1) or ``stop`` is set (0)."""
        while True:
            if stop is not None and stop.is_set():
                return 0
            for p in self.procs:
                p.join(timeout=0.1 if len(self.procs) > 1 else 0.2)
                if p.exitcode is not None:
                    log.error("edge worker %s exited with %s; stopping the others", p.name, p.exitcode)
                    return 1

    def stop(self, timeout: float = 30.0) -> None:
        from prometheus_client import multiprocess

        for p in self.procs:
            if p.exitcode is None and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.exitcode is None:
                p.kill()
                p.join(5)
            if self.metrics_dir and p.pid is not None:
                multiprocess.mark_process_dead(p.pid, self.metrics_dir)
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs if p.pid is not None]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_workers(
    settings: ServeSettings,
    log_level: str = "INFO",
    say: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Foreground: N workers until interrupted; the exit status (1: a load failed or a worker died)."""
    pool = WorkerPool(settings, log_level).start()
    say = say or (lambda line: log.info("%s", line))
    status = 0
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the workers too, not only the parent
    try:
        error = pool.wait_ready(
            on_event=lambda ev: say(f"worker {ev.index} (pid {ev.pid}): {ev.kind} {ev.text}")
        )
        if error is not None:
            say(f"the bundle did not load: {error}")
            return 1
        s = pool.settings
        say(f"serving on {s.http_host}:{s.http_port} with {s.http_workers} worker processes (SO_REUSEPORT)")
        status = pool.supervise(stop)
    except KeyboardInterrupt:
        status = 0
    finally:
        pool.stop()
    return status
