"""``POST /v1/ask`` on the real edge app: a really exported tiny bundle served by ONNX Runtime
(the edge serving engineer's ``bundles`` fixture), the agent router mounted on the app, uvicorn
on a free port. The tiny encoder is random, so its route is arbitrary: the test checks what the
model path must guarantee (calibrated probabilities from the bundle, its version, the steps),
not which route wins."""

from __future__ import annotations

from pathlib import Path

import httpx

from edge.agent.factory import build_agent
from edge.agent.http import make_router
from edge.agent.settings import AgentSettings
from edge.http.app import create_app
from edge.http.server import BackgroundServer
from edge.serving.service import InferenceService
from edge.settings import ServeSettings


def test_ask_over_http_with_the_bundle_router(tmp_path: Path, bundles) -> None:  # type: ignore[no-untyped-def]
    settings = ServeSettings(
        bundle_dir=bundles.v1,
        ort_intra_op_threads=1,
        serve_warmup_batches=1,
        model_cache_dir=tmp_path / "mc",
        providers=["cpu"],
    )
    service = InferenceService.from_settings(settings)
    app = create_app(service, settings)
    agent = build_agent(
        AgentSettings(agent_memory_db=tmp_path / "m.sqlite3", agent_confidence_threshold=0.0),
        service=service,
        node_id="node-h",
    )
    app.include_router(make_router(agent))
    server = BackgroundServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for _ in range(100):
                if c.get("/v2/health/ready").status_code == 200:
                    break
                import time

                time.sleep(0.1)
            r = c.post("/v1/ask", json={"text": "what is 15% of 240", "session_id": "s", "priority": 1})
            assert r.status_code == 200, r.text
            doc = r.json()
            assert set(doc) >= {
                "answer",
                "route",
                "confidence",
                "source",
                "steps",
                "model_version",
                "latency_ms",
            }
            assert doc["model_version"].startswith("autoglm-router:1.0.0")
            route_step = doc["steps"][0]
            assert route_step["kind"] == "route" and route_step["router"] == "model"
            probs = [t["p"] for t in route_step["top"]]
            assert route_step["route"] == route_step["top"][0]["route"] and 0 < probs[0] <= 1
            assert doc["route"] in {"calculator", "climate", "chitchat", "doc_search"}
            bad = c.post("/v1/ask", json={"text": ""})
            assert bad.status_code == 400 and "error" in bad.json()
            assert c.post("/v1/ask", json={"txt": "x"}).status_code == 400
            status = c.get("/v1/agent/status").json()
            assert status["node_id"] == "node-h" and sum(status["sources"].values()) == 1
            assert status["agent_requests"] == 1 and 0.0 <= status["fallback_rate"] <= 1.0
            metrics = c.get("/metrics").text  # the agent's metrics share the serving registry
            assert (
                f'autoglm_edge_agent_requests_total{{node="node-h",route="{doc["route"]}",'
                f'source="{doc["source"]}"}} 1.0' in metrics
            )
            assert "autoglm_edge_agent_request_seconds_bucket" in metrics
    finally:
        server.stop()
