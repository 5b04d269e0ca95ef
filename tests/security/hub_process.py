"""A cloud sync hub in its own process, for the adversarial MQTT tests: the test measures this
process's RSS (a clean number, not mixed with the test's own allocations) and reads its Prometheus
metrics over HTTP, exactly as an operator would.

    python -m tests.security.hub_process SETTINGS_JSON METRICS_PORT LOG_FILE READY_FILE [RLIMIT_AS_BYTES]

``SETTINGS_JSON`` holds ``CloudSyncSettings`` keyword arguments. The process logs to LOG_FILE,
writes READY_FILE once connected to the broker and stops on SIGTERM. The optional address-space
limit keeps a runaway hub from taking the (shared) test machine down with it.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from prometheus_client import Gauge, start_http_server


def main(argv: list[str]) -> int:
    settings_json, metrics_port, log_file, ready_file = argv[:4]
    if len(argv) > 4:
        limit = int(argv[4])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(filename=log_file, level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

    from cloud.sync.hub import CloudSync
    from cloud.sync.settings import CloudSyncSettings

    kwargs: dict[str, Any] = json.loads(settings_json)
    hub = CloudSync(CloudSyncSettings(**kwargs))
    unfinished = Gauge(
        "test_hub_unfinished_messages", "Received messages the hub has not finished processing."
    )
    unfinished.set_function(lambda: hub._queue.unfinished_tasks)
    start_http_server(int(metrics_port), addr="127.0.0.1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hub.start()
    if not hub.wait_connected(30):
        print("hub did not connect to the broker", file=sys.stderr)
        return 1
    Path(ready_file).write_text("ready")
    stop.wait()
    hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
