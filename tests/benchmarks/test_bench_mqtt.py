"""benchmarks/bench_mqtt.py can fail: with an "LZ4" that does not compress, every kind's ratio is
1.0 and flagged; with real LZ4 the records the edge really publishes (cache and knowledge records
with 384-float embeddings, hard examples) compress and are not flagged. The pool comes from the
real Agent (keyword router, hashing encoder at 384 dims — no bundle, no cloud, so the test stays
fast) publishing through its SemanticCache / KnowledgeMemory / hard-example sink."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from contracts.memory import KnowledgeRecord
from edge.agent.factory import build_agent
from edge.agent.routing import HashingEncoder, KeywordRouter
from edge.agent.settings import AgentSettings
from edge.agent.types import AskRequest
from edge.memory.store import MemoryStore
from skillpack.kg.graph import default_graph
from skillpack.kg.linking import EntityLinker
from tests.benchmarks.conftest import load_bench

bm = load_bench("bench_mqtt")
QUESTIONS = [
    "what is 17 times 23",
    "convert 12 km to miles",
    "Who maintains PR-111?",
    "15% of 240",
    "把100公斤换算成磅",
    "What's the temperature of OV-122?",
    "hello there",
    "asdf qwer zxcv",
    "what is 5 plus 9",
    "how many pounds is 30 kg",
    "Who supervises Suzhou line 2?",
    "计算12乘以7",
]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    tmp: Path = tmp_path_factory.mktemp("mqtt-pool")
    store = MemoryStore(tmp / "memory.sqlite3", "edge-test")
    recorder = bm._Recorder(store)
    router = KeywordRouter(EntityLinker(default_graph()))
    agent = build_agent(
        AgentSettings(agent_memory_db=tmp / "m.sqlite3", agent_cloud_url=""),
        encoder=HashingEncoder(router, dim=384),
        router=router,
        sync=recorder,
        node_id="edge-test",
    )

    async def run() -> None:
        for i, q in enumerate(QUESTIONS * 3):
            await agent.ask(AskRequest(text=f"{q} " + "?" * (i // len(QUESTIONS))))
        for k in range(6):
            await agent.remember(f"fact/{k}", f"Conveyor {k} jams when carton width exceeds {300 + k} mm.")

    asyncio.run(run())
    store.close()
    return list(recorder.items)


def test_pool_holds_the_kinds_the_edge_publishes_with_384_float_embeddings(pool: list[Any]) -> None:
    kinds = {bm.kind_of(it) for it in pool}
    assert {bm.KIND_CACHE, bm.KIND_KNOWLEDGE, bm.KIND_HARD} <= kinds
    for it in pool:
        if it[0] == "memory":
            assert (
                isinstance(it[1], KnowledgeRecord)
                and it[1].embedding is not None
                and len(it[1].embedding) == 384
            )
    cycled = bm.cycle(pool, len(pool) * 2 + 3)
    keys = [obj.key for kind, obj in cycled if kind == "memory"]
    assert len(keys) == len(set(keys))  # fresh keys for every copy


def test_a_non_compressing_lz4_is_flagged(pool: list[Any]) -> None:
    out = bm.lz4_by_kind(pool, compress=lambda b: b, decompress=lambda b: b)
    for k in (bm.KIND_CACHE, bm.KIND_KNOWLEDGE, bm.KIND_HARD):
        assert out[k]["batch_ratio"] == 1.0 and out[k]["flagged"] is True
    assert set(out["mix"]["flagged"]) == {bm.KIND_CACHE, bm.KIND_KNOWLEDGE, bm.KIND_HARD}
    row = bm.headline(out, {"records_per_s": 1.0, "record_mb_per_s": 0.0}, {"records_per_s": 1.0}, 20_000)[1]
    assert row.met is False and "flagged" in row.result


def test_real_lz4_compresses_every_kind_and_sizes_are_what_the_outbox_sends(pool: list[Any]) -> None:
    out = bm.lz4_by_kind(pool)
    assert out["mix"]["flagged"] == []
    for k in (bm.KIND_CACHE, bm.KIND_KNOWLEDGE, bm.KIND_HARD):
        assert out[k]["batch_ratio"] >= bm.MIN_RATIO
    cache = next(it for it in pool if bm.kind_of(it) == bm.KIND_CACHE)
    assert bm.record_bytes(cache) == cache[1].model_dump_json().encode()
    assert out[bm.KIND_CACHE]["bytes_per_record"] > 384 * 2  # the embedding travels with the record
    assert 0 < out[bm.KIND_CACHE]["embedding_share"] < 1
