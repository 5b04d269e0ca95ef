"""Dynamic batcher policy on a recording engine (unit level; the HTTP tests use real bundles)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from contracts.errors import Overloaded
from edge.serving.batcher import DynamicBatcher
from edge.serving.loaded_model import LoadedModel


class CharTokenizer:
    """ids = code points (+ CLS/SEP); enough to exercise padding and buckets."""

    def encode_ids(self, texts: list[str]) -> list[list[int]]:
        return [[101, *(ord(c) for c in t), 102] for t in texts]

    @staticmethod
    def pad(ids: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        n, L = len(ids), max(len(x) for x in ids)
        a = np.zeros((n, L), dtype=np.int64)
        m = np.zeros((n, L), dtype=np.int64)
        for i, row in enumerate(ids):
            a[i, : len(row)] = row
            m[i, : len(row)] = 1
        return a, m


class RecordingEngine:
    """embedding row = [sum of ids, length]; records each batch's texts-per-call and padded length."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set once a batch reached the engine

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append((ids.shape[0], ids.shape[1]))
        emb = np.stack([(ids * mask).sum(1), mask.sum(1)], axis=1).astype(np.float32)
        return emb, np.zeros((ids.shape[0], 2), dtype=np.float32)


def make_model(engine: RecordingEngine, overhead: int = 32) -> LoadedModel:
    return LoadedModel(
        "m", "1.0.0", "default", ["a", "b"], 1.0, engine, CharTokenizer(), bucket_overhead_tokens=overhead
    )


def expected(text: str) -> tuple[float, float]:
    ids = [101, *(ord(c) for c in text), 102]
    return float(sum(ids)), float(len(ids))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_full_batch_starts_at_once_and_respects_max_size() -> None:
    engine = RecordingEngine()

    async def main() -> None:
        b = DynamicBatcher(max_batch_size=8, max_queue_delay_s=3.0, arrival_gap_s=3.0, capacity=100)
        b.start()
        m = make_model(engine)
        futs = b.submit(m, [f"t{i}" for i in range(20)])
        rows = await asyncio.wait_for(
            asyncio.gather(*futs[:16]), 1.5
        )  # long delays, yet no wait: batches are full
        for i, row in enumerate(rows):
            assert tuple(row[0]) == expected(f"t{i}")
        assert not futs[16].done()  # the partial tail waits (arrivals may continue)
        await asyncio.wait_for(asyncio.gather(*futs[16:]), 10.0)  # … until the delay cap
        await b.stop()

    run(main())
    assert [n for n, _ in engine.batches] == [8, 8, 4]


def test_lone_request_does_not_wait_for_the_queue_delay() -> None:
    engine = RecordingEngine()

    async def main() -> float:
        b = DynamicBatcher(max_batch_size=32, max_queue_delay_s=5.0, arrival_gap_s=0.001, capacity=10)
        b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(b.submit(make_model(engine), ["alone"])[0], 2.0)
        dt = loop.time() - t0
        await b.stop()
        return dt

    assert run(main()) < 2.0  # would be 5 s if it waited the full delay


def test_priority_levels_are_served_first() -> None:
    engine = RecordingEngine()
    order: list[str] = []

    async def main() -> None:
        b = DynamicBatcher(
            max_batch_size=2, max_queue_delay_s=0.0, arrival_gap_s=0.0, capacity=20, priority_levels=2
        )
        b.start()
        m = make_model(engine)
        engine.gate.clear()
        blocker = b.submit(m, ["blocker"])
        assert await asyncio.to_thread(engine.entered.wait, 10)  # blocker is in the engine; the rest queue up
        normal = b.submit(m, ["n1", "n2", "n3"], priority=0)
        critical = b.submit(m, ["c1", "c2"], priority=1)
        for name, f in [
            *zip(["n1", "n2", "n3"], normal, strict=True),
            *zip(["c1", "c2"], critical, strict=True),
        ]:
            f.add_done_callback(lambda _f, name=name: order.append(name))
        engine.gate.set()
        await asyncio.gather(*blocker, *normal, *critical)
        await b.stop()

    run(main())
    assert order[:2] == ["c1", "c2"] and sorted(order[2:]) == ["n1", "n2", "n3"]


def test_bounded_queue_raises_overloaded() -> None:
    engine = RecordingEngine()

    async def main() -> None:
        b = DynamicBatcher(max_batch_size=4, capacity=3)
        b.start()
        m = make_model(engine)
        engine.gate.clear()
        first = b.submit(m, ["x"])
        assert await asyncio.to_thread(engine.entered.wait, 10)  # "x" holds the engine
        queued = b.submit(m, ["a", "b", "c"])
        with pytest.raises(Overloaded) as err:
            b.submit(m, ["d"])
        assert err.value.headers["Retry-After"] == "1"
        assert b.depth == 3
        engine.gate.set()
        await asyncio.gather(*first, *queued)
        await b.stop()

    run(main())


def test_length_buckets_split_a_batch_and_keep_order() -> None:
    engine = RecordingEngine()
    texts = ["short", "x" * 100, "tiny", "y" * 40]

    async def main() -> list[tuple[np.ndarray, np.ndarray]]:
        b = DynamicBatcher(max_batch_size=8, max_queue_delay_s=0.01, arrival_gap_s=0.01, capacity=10)
        b.start()
        rows = await asyncio.gather(*b.submit(make_model(engine), texts))
        await b.stop()
        return rows

    rows = run(main())
    for t, row in zip(texts, rows, strict=True):  # type: ignore[call-overload]
        assert tuple(row[0]) == expected(t)
    assert sorted(engine.batches) == [(1, 42), (1, 102), (2, 7)]  # no short text padded to 102


def test_models_are_never_mixed_in_one_forward() -> None:
    e1, e2 = RecordingEngine(), RecordingEngine()

    async def main() -> None:
        b = DynamicBatcher(max_batch_size=8, max_queue_delay_s=0.05, arrival_gap_s=0.05, capacity=20)
        b.start()
        f1 = b.submit(make_model(e1), ["a", "b"])
        f2 = b.submit(make_model(e2), ["c"])
        await asyncio.gather(*f1, *f2)
        await b.stop()

    run(main())
    assert e1.batches == [(2, 3)] and e2.batches == [(1, 3)]


def test_length_groups_cost_model() -> None:
    from edge.serving.text_batching import length_groups

    assert length_groups([12] * 32) == [list(range(32))]
    lengths = [5, 16, 5, 16, 9, 9]
    assert length_groups(lengths, overhead_tokens=0) == [[0, 2], [4, 5], [1, 3]]
    assert length_groups(lengths, overhead_tokens=1000) == [[0, 2, 4, 5, 1, 3]]
    groups = length_groups([3, 120] + [10] * 30, overhead_tokens=32)
    assert [sorted(g) for g in groups] == [[0, *range(2, 32)], [1]]  # the long one alone; 3 joins the 10s
