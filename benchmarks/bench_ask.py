"""``Agent.ask`` latency on graph questions with the bundle's learned hop scorer (issue 13).

``python benchmarks/bench_ask.py --bundle DIR`` — DIR a bundle carrying a ``hop_scorer`` graph
(e.g. the demo's ``.autoglm/demo/bundles/autoglm-router-1.0.0-heads`` or ``autoglm export
--graph-heads``). Side by side in one run, the questions interleaved so that load hits every
variant alike: the lexical scorer, the learned scorer on the old sequential path
(``agent_kg_prefetch=False``) and on the prefetch path (the scorer's encoder call on the masked
question runs in a worker thread while the router encodes). Routing: the hashing encoder + keyword
router (as ``reasoning_ablation.ask_latency``) and, with ``--service``, the bundle served by a real
``InferenceService`` (``ServiceEncoder``, the node's path). Every variant must give the same
route, answer and path as the old path (checked, counted in the record). ``--slow-scorer-ms N``
adds N ms to the prefetch path's encoder call (a sleep, like an ORT run it releases the GIL) to
show that the target row can fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_P50_MS = 15.0


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _agent(bundle: Path, tmp: Path, name: str, *, scorer: str, prefetch: bool, service: Any) -> Any:
    from edge.agent.factory import build_agent
    from edge.agent.settings import AgentSettings

    settings = AgentSettings(
        agent_memory_db=tmp / f"{name}.sqlite3",
        agent_kg_scorer=scorer,  # type: ignore[arg-type]
        agent_kg_prefetch=prefetch,
        agent_cache_enabled=False,
        agent_confidence_threshold=0.0,
        agent_scope="off",
    )
    from edge.agent.routing import ServiceEncoder

    # the node's encoder over one shared service (its own metrics registry per agent)
    encoder = ServiceEncoder(service) if service is not None else None
    return build_agent(settings, bundle_dir=bundle, encoder=encoder, node_id=name)


def _slow(agent: Any, ms: float) -> None:
    scorer = agent.reasoner.scorer
    inner = scorer.embed

    def embed(texts: list[str]) -> np.ndarray:
        time.sleep(ms / 1000.0)
        out: np.ndarray = inner(texts)
        return out

    scorer.embed = embed


async def _service(bundle: Path) -> Any:
    from edge.serving.service import InferenceService
    from edge.settings import ServeSettings

    # no result cache: the three variants ask the same texts
    svc = InferenceService.from_settings(ServeSettings(cache_max_bytes=0))
    await svc.start(str(bundle))
    return svc


def _stats(lat: list[float]) -> dict[str, float]:
    return {
        "n": len(lat),
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
    }


async def run(bundle: Path, n: int, routing: str, slow_ms: float) -> dict[str, Any]:
    from cloud.data.paraphrase import load_frozen_eval
    from edge.agent.types import AskRequest

    items = [it for it in load_frozen_eval() if it.kind == "kg"][:n]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ask-"))
    service = await _service(bundle) if routing == "service" else None
    variants = {
        "lexical": _agent(bundle, tmp, "lexical", scorer="lexical", prefetch=False, service=service),
        "learned_sequential": _agent(
            bundle, tmp, "sequential", scorer="learned", prefetch=False, service=service
        ),
        "learned_prefetch": _agent(bundle, tmp, "prefetch", scorer="learned", prefetch=True, service=service),
    }
    if slow_ms:  # both learned paths: the default one decides the target row
        _slow(variants["learned_sequential"], slow_ms)
        _slow(variants["learned_prefetch"], slow_ms)
    warm = "Who maintains PR-111?"  # first ORT runs (allocations) are not the questions' time
    for a in variants.values():
        await a.ask(AskRequest(text=warm + " now"))
    lat: dict[str, list[float]] = {k: [] for k in variants}
    same = {k: 0 for k in variants}
    order = list(variants)
    for i, it in enumerate(items):
        got = {}
        for name in order[i % len(order) :] + order[: i % len(order)]:  # rotate who goes first
            t0 = time.perf_counter()
            r = await variants[name].ask(AskRequest(text=it.text))
            lat[name].append((time.perf_counter() - t0) * 1000.0)
            path = next((s["path"] for s in r.steps if s["kind"] == "kg_answer"), None)
            got[name] = (r.route, r.answer, path)
        for name in variants:
            same[name] += got[name] == got["learned_sequential"]
    if service is not None:
        await service.stop()
    out: dict[str, Any] = {k: _stats(v) for k, v in lat.items()}
    seq, pre = out["learned_sequential"]["p50_ms"], out["learned_prefetch"]["p50_ms"]
    out["speedup_p50"] = round(seq / pre, 3) if pre else None
    out["same_as_sequential"] = same
    out["scorer"] = type(variants["learned_prefetch"].reasoner.scorer).__name__
    return out


def headline(rec: dict[str, Any]) -> list[Any]:
    from autoglm.bench.records import HeadlineRow
    from edge.agent.settings import AgentSettings

    # the target is the shipped path's: agent_kg_prefetch's default
    default = "learned_prefetch" if AgentSettings().agent_kg_prefetch else "learned_sequential"
    other = "learned_sequential" if default == "learned_prefetch" else "learned_prefetch"
    rows = []
    for routing, r in rec["routing"].items():
        how = "hashing-encoder routing" if routing == "hashing" else "bundle served by InferenceService"
        slow = f", scorer slowed by {rec['slow_scorer_ms']:g} ms" if rec["slow_scorer_ms"] else ""
        d, o = r[default], r[other]
        rows.append(
            HeadlineRow(
                what=f"Agent.ask p50 / p99 ms, {d['n']} graph questions, {r['scorer']} on the int8 "
                f"bundle, default path ({default.split('_')[1]}; {how}{slow}; load {r['load']})",
                baseline=f"lexical scorer {r['lexical']['p50_ms']:.1f} / {r['lexical']['p99_ms']:.1f}",
                result=f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f}; {other.split('_')[1]} path "
                f"{o['p50_ms']:.1f} / {o['p99_ms']:.1f} (prefetch/sequential p50 "
                f"{1 / r['speedup_p50']:.2f}x); same answers {r['same_as_sequential'][other]}/{o['n']}",
                target=f"p50 ≤ {TARGET_P50_MS:g}, same answers",
                met=d["p50_ms"] <= TARGET_P50_MS and r["same_as_sequential"][other] == o["n"],
            )
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--n", type=int, default=60, help="graph questions (frozen families, as the ablation)")
    ap.add_argument("--service", action="store_true", help="also route with the served bundle")
    ap.add_argument("--slow-scorer-ms", type=float, default=0.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rec: dict[str, Any] = {"bundle": str(args.bundle), "slow_scorer_ms": args.slow_scorer_ms, "routing": {}}
    for routing in ["hashing", *(["service"] if args.service else [])]:
        load = _load()
        r = asyncio.run(run(args.bundle, args.n, routing, args.slow_scorer_ms))
        r["load"] = f"{load} → {_load()}"
        rec["routing"][routing] = r
        print(routing, json.dumps(r), flush=True)
    if not args.no_record:
        from autoglm.bench.records import write_record

        write_record("ask_latency", rec, headline(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
