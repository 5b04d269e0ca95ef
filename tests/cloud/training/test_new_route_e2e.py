"""The route-growth path end to end on a tiny encoder: a route learnt from k examples is in the
grown checkpoint, the exported bundle's manifest and router head, the edge's model routing
(ONNX Runtime through the serving InferenceService), and the edge agent answers it through the
cloud tool bound to it (a real cloud app on a free port)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.api.container import CloudServices
from cloud.data.generator import examples_for_template
from cloud.data.new_route import NEW_ROUTE, support_set
from cloud.fleet.channel import RecordingChannel
from cloud.tools.registry import Tool
from cloud.training.maml import AdaptConfig
from cloud.training.new_route import NewRouteConfig, train_new_route
from contracts.bundle import open_bundle
from contracts.routes import DEFAULT_ROUTES
from edge.agent.types import AskRequest, AskResponse, Source
from edge.runtime.bundle_session import BundleSession, bundle_tokenizer
from edge.serving.service import InferenceService
from edge.settings import ServeSettings
from export.pipeline import export_checkpoint
from tests.cloud.controller.conftest import ADMIN, LiveServer, make_settings
from tests.edge.agent.helpers import make_agent, step
from tests.export.helpers import make_checkpoint


def _shift_tool() -> Tool:
    return Tool(
        "shift_roster",
        "The plant's shift roster",
        {"type": "object", "properties": {}},
        func=lambda: {"answer": "roster"},
        route=NEW_ROUTE,
        from_text=lambda text: {"answer": f"Shift roster: you are on the early shift ({text[:20]})"},
    )


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    with LiveServer(svc) as server:
        yield server
    svc.close()


def test_new_route_flows_from_examples_to_the_edge_answer(
    tiny_base: Path, tmp_path: Path, cloud: LiveServer
) -> None:
    cloud.svc.tools.registry.register(_shift_tool())
    tool_routes = [t.route for t in cloud.svc.tools.registry.all() if t.route]
    base = make_checkpoint(tmp_path / "c", routes=list(DEFAULT_ROUTES), base_dir=tiny_base)
    support = support_set(8, seed=0)
    replay = [
        e for r in DEFAULT_ROUTES for lang in ("en", "zh") for e in examples_for_template(f"{lang}.{r}.00", 6)
    ]
    res = train_new_route(
        base,
        NEW_ROUTE,
        support,
        tmp_path / "grown",
        tool_routes=tool_routes,
        replay=replay,
        config=NewRouteConfig(adapt=AdaptConfig(steps=80, lr=1e-2), threads=1),
    )

    bundle_dir = export_checkpoint(res.checkpoint_dir, tmp_path / "bundle", version="1.1.0")
    bundle = open_bundle(bundle_dir)
    assert bundle.manifest.routes == [*DEFAULT_ROUTES, NEW_ROUTE]
    session = BundleSession(bundle)
    ids, mask = bundle_tokenizer(bundle)([e.text for e in support])
    _emb, logits = session.run(ids, mask)
    assert logits.shape == (8, 10) and session.routes[-1] == NEW_ROUTE
    hits = [t for t, i in zip(support, logits.argmax(axis=1), strict=True) if session.routes[i] == NEW_ROUTE]
    assert len(hits) >= 6

    settings = ServeSettings(
        bundle_dir=bundle_dir,
        ort_intra_op_threads=1,
        serve_warmup_batches=1,
        model_cache_dir=tmp_path / "mc",
        providers=["cpu"],
    )
    service = InferenceService.from_settings(settings)
    agent = make_agent(
        tmp_path,
        "node-s",
        service=service,
        agent_cloud_url=cloud.url,
        agent_cloud_token=ADMIN,
        agent_confidence_threshold=0.0,
    )

    async def ask_new_route() -> AskResponse:
        await service.start(str(bundle_dir))
        try:
            return await agent.ask(AskRequest(text=hits[0].text))
        finally:
            await service.stop()

    r = asyncio.run(ask_new_route())
    assert r.route == NEW_ROUTE and r.source is Source.CLOUD_TOOL, r
    assert "Shift roster" in r.answer
    call = step(r, "cloud_call")
    assert call["route_hint"] == NEW_ROUTE and call["tool"] == "shift_roster"
