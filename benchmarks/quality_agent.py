"""Quality of the edge reasoning agent on labelled data.

Reports, side by side where there is a baseline:

* route accuracy (English, Chinese) on the held-out *test* split of the route data
  (``cloud.data.generator``: test phrasings are templates no model trained on) — for the keyword
  router and, with ``--bundle DIR``, for the bundle's router head (calibrated probabilities);
* exact-match answers: calculator and unit conversion on generated EN/ZH questions whose gold
  values are computed independently of the skills, and graph questions (hits@1 per hop count
  on the held-out phrasings of ``skillpack.kg.questions``, lexical hop scorer and — with
  ``--hop-scorer FILE.onnx`` — the learned hop scorer);
* fallback rate: share of test requests below the confidence threshold (hard examples → cloud);
* semantic-cache threshold calibrated on paraphrase / non-paraphrase pairs that share a
  signature (same entities and numbers — the pairs the cache must tell apart), the false-hit
  rate on held-out pairs (goal < 1 %) and the paraphrase hit rate;
* latency per answer source through ``Agent.ask`` (local tool, knowledge graph, semantic
  cache, cloud tool against a real cloud tool service on loopback, offline with the breaker open).

Usage: ``python benchmarks/quality_agent.py [--bundle DIR] [--quick]``. The last line printed
is a JSON record. The machine may be shared by several jobs: latencies are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contracts.errors import AutoGLMError  # noqa: E402
from edge.agent.memory import calibrate_threshold, question_signature  # noqa: E402
from edge.agent.routing import Encoder, HashingEncoder, KeywordRouter  # noqa: E402
from skillpack import calculator, units  # noqa: E402
from skillpack.kg.graph import default_graph  # noqa: E402
from skillpack.kg.linking import EntityLinker  # noqa: E402
from skillpack.kg.questions import generate_questions  # noqa: E402
from skillpack.kg.reasoner import PathReasoner  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


# ----------------------------------------------------------------------------- routing
async def route_accuracy(encoder: Encoder, examples: list[Any], threshold: float) -> dict[str, Any]:
    encoded = []
    for i in range(0, len(examples), 32):
        encoded.extend(await encoder.encode([e.text for e in examples[i : i + 32]]))
    by_lang: dict[str, list[bool]] = defaultdict(list)
    hard = 0
    for ex, enc in zip(examples, encoded, strict=True):
        by_lang[ex.lang].append(enc.route == ex.route)
        hard += enc.confidence < threshold
    return {
        "accuracy": {lang: round(sum(v) / len(v), 4) for lang, v in sorted(by_lang.items())},
        "n": {lang: len(v) for lang, v in sorted(by_lang.items())},
        "fallback_rate": round(hard / max(len(examples), 1), 4),
    }


# ----------------------------------------------------------------------------- exact match
def calculator_set(rng: random.Random, n: int) -> list[tuple[str, float]]:
    zh_num = "零一二三四五六七八九"

    def zh(k: int) -> str:  # 1..99 in Chinese numerals
        if k < 10:
            return zh_num[k]
        tens, ones = divmod(k, 10)
        return ("" if tens == 1 else zh_num[tens]) + "十" + (zh_num[ones] if ones else "")

    out: list[tuple[str, float]] = []
    for _ in range(n):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        p = rng.choice([5, 10, 15, 20, 25, 40])
        out += [
            (f"what is {a} plus {b}?", a + b),
            (f"{a} times {b}", a * b),
            (f"{p}% of {a * 4}", p * a * 4 / 100),
            (f"average of {a}, {b} and {c}", (a + b + c) / 3),
            (f"{a}的{p}%", a * p / 100),
            (f"{zh(a)}加{zh(b)}", a + b),
            (f"{zh(a)}乘以{zh(c)}", a * c),
            (f"{a}减去{b}等于多少", a - b),
            (f"{c} to the power of 3", c**3),
            (f"({a} + {b}) * {c}", (a + b) * c),
        ]
    return out


def units_set(rng: random.Random, n: int) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for _ in range(n):
        v = rng.randint(1, 500)
        out += [
            (f"convert {v} km to miles", v / 1.609344),
            (f"{v}公里等于多少英里", v / 1.609344),
            (f"{v} °C in Fahrenheit", v * 9 / 5 + 32),
            (f"把{v}摄氏度换算成华氏度", v * 9 / 5 + 32),
            (f"how many pounds is {v} kg", v / 0.45359237),
            (f"{v}公斤是多少磅", v / 0.45359237),
            (f"{v} bar to psi", v * 1e5 / 6894.757293168),
            (f"{v} psi in bar", v * 6894.757293168 / 1e5),
            (f"{v} kWh in MJ", v * 3.6),
            (f"{v} mph in km/h", v * 1.609344),
        ]
    return out


def exact_match(items: list[tuple[str, float]], solve: Any, attr: str) -> dict[str, Any]:
    ok, errors = 0, []
    for text, gold in items:
        try:
            got = float(getattr(solve(text), attr))
        except AutoGLMError as exc:
            errors.append(f"{text}: {exc.message}")
            continue
        if abs(got - gold) <= 1e-6 * max(1.0, abs(gold)):
            ok += 1
        else:
            errors.append(f"{text}: {got} != {gold}")
    return {"exact_match": round(ok / len(items), 4), "n": len(items), "errors": errors[:5]}


def graph_hits(reasoner: PathReasoner, questions: list[Any]) -> dict[str, Any]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for q in questions:
        try:
            ans = reasoner.answer(q.text, use_cache=False)
            ok = ans.answers[:1] == [q.answer]
        except AutoGLMError:
            ok = False
        hits[f"{q.hops}hop"].append(ok)
        hits[f"{q.hops}hop_{q.lang}"].append(ok)
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(hits.items())} | {"n": len(questions)}


# ----------------------------------------------------------------------------- cache calibration
def paraphrase_pairs(rng: random.Random) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(paraphrases, non-paraphrases) that share a signature (same entities / numbers)."""
    g = default_graph()
    qs = generate_questions(g, "train", per_pattern=6) + generate_questions(g, "eval", per_pattern=6)
    by_key: dict[tuple[str, str, tuple[str, ...]], list[str]] = defaultdict(list)
    by_start: dict[tuple[str, str], list[tuple[tuple[str, ...], str]]] = defaultdict(list)
    for q in qs:
        by_key[(q.lang, q.start, q.path)].append(q.text)
        by_start[(q.lang, q.start)].append((q.path, q.text))
    pos = [(a, b) for texts in by_key.values() for a, b in itertools.pairwise(texts)]
    neg = []
    for items in by_start.values():
        for (p1, t1), (p2, t2) in itertools.pairwise(items):
            if p1 != p2:
                neg.append((t1, t2))
    for _ in range(150):
        a, b = rng.sample(range(2, 300), 2)
        pos += [
            (f"what is {a} plus {b}", f"{a} + {b} = ?"),
            (f"{a}% of {b}", f"what is {a} percent of {b}"),
            (f"convert {a} km to miles", f"how many miles is {a} km"),
        ]
        neg += [
            (f"what is {a} plus {b}", f"what is {a} minus {b}"),
            (f"{a}% of {b}", f"{b}% of {a}"),
            (f"convert {a} km to miles", f"convert {a} miles to km"),
            (f"{a} times {b}", f"{a} divided by {b}"),
        ]
    return pos, neg


async def cache_calibration(encoder: Encoder, rng: random.Random) -> dict[str, Any]:
    """Calibrate the similarity threshold on the calibration half of the pairs whose signatures
    agree (only those are ever compared by the cache), then measure the end-to-end cache decision
    (same signature AND cosine >= threshold) on the held-out half of ALL pairs."""
    linker = EntityLinker(default_graph())
    pos, neg = paraphrase_pairs(rng)

    async def sims(pairs: list[tuple[str, str]]) -> np.ndarray:
        out = []
        for i in range(0, len(pairs), 16):
            chunk = pairs[i : i + 16]
            enc = await encoder.encode([t for p in chunk for t in p])
            out += [float(enc[2 * j].embedding @ enc[2 * j + 1].embedding) for j in range(len(chunk))]
        return np.asarray(out)

    def same_sig(pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.array([question_signature(a, linker) == question_signature(b, linker) for a, b in pairs])

    ps, ns = await sims(pos), await sims(neg)
    p_same, n_same = same_sig(pos), same_sig(neg)
    half_p = np.zeros(len(ps), dtype=bool)
    half_p[rng.sample(range(len(ps)), len(ps) // 2)] = True
    half_n = np.zeros(len(ns), dtype=bool)
    half_n[rng.sample(range(len(ns)), len(ns) // 2)] = True
    cal_neg = ns[half_n & n_same]
    t_sig = calibrate_threshold(ps[half_p & p_same], cal_neg, 0.005) if cal_neg.size else 0.0
    # second, independent gate: the embedding alone keeps false hits <= 10 % over all negatives,
    # so the cache does not rest on the signature alone when few same-signature negatives exist
    t_emb = calibrate_threshold(ps[half_p], ns[half_n], 0.10)
    t = max(t_sig, t_emb)
    hit_p = p_same & (ps >= t)
    hit_n = n_same & (ns >= t)
    return {
        "threshold": round(t, 4),
        "threshold_signature_gate": round(t_sig, 4),
        "threshold_embedding_gate": round(t_emb, 4),
        "pairs": {
            "paraphrase": len(ps),
            "non_paraphrase": len(ns),
            "non_paraphrase_same_signature": int(n_same.sum()),
        },
        "false_hit_rate_heldout": round(float(hit_n[~half_n].mean()), 4),
        "paraphrase_hit_rate_heldout": round(float(hit_p[~half_p].mean()), 4),
        "embedding_only_false_hit_rate_at_threshold": round(float((ns[~half_n] >= t).mean()), 4),
        "curve": {
            f"{x:.2f}": {
                "false_hit": round(float((n_same & (ns >= x)).mean()), 4),
                "paraphrase_hit": round(float((p_same & (ps >= x)).mean()), 4),
            }
            for x in (0.8, 0.85, 0.9, 0.95, 0.98)
        },
        "paraphrase_similarity_p50": round(float(np.median(ps)), 4),
        "non_paraphrase_similarity_p99": round(float(np.percentile(ns, 99)), 4),
    }


# ----------------------------------------------------------------------------- latency per source
def latency_by_source(encoder: Encoder, quick: bool) -> dict[str, Any]:
    from cloud.api.app import create_app
    from cloud.api.container import CloudServices
    from cloud.fleet.channel import RecordingChannel
    from cloud.settings import CloudSettings
    from edge.agent.factory import build_agent
    from edge.agent.settings import AgentSettings
    from edge.agent.types import AskRequest
    from edge.http.server import BackgroundServer

    tmp = Path(tempfile.mkdtemp(prefix="quality-agent-"))
    svc = CloudServices.build(
        CloudSettings(
            data_dir=tmp / "cloud",
            admin_tokens=["bench:bench-token"],
            bootstrap_token="b",
            mqtt_enabled=False,
            tool_doc_embeddings=False,
        ),
        channel=RecordingChannel(),
    )
    server = BackgroundServer(create_app(services=svc, run_loops=False)).start()
    lat: dict[str, list[float]] = defaultdict(list)
    try:
        agent = build_agent(
            AgentSettings(
                agent_memory_db=tmp / "m.sqlite3",
                agent_cloud_url=server.url,
                agent_cloud_token="bench-token",
                agent_confidence_threshold=0.0,
            ),
            encoder=encoder,
            router=KeywordRouter(EntityLinker(default_graph())),
        )
        reps = 5 if quick else 20
        cities = [
            "Beijing",
            "Tokyo",
            "London",
            "Paris",
            "Berlin",
            "Madrid",
            "Rome",
            "Seoul",
            "Sydney",
            "Cairo",
        ]
        machines = sorted(str(e.attrs["code"]) for e in default_graph().of_type("machine"))[:10]
        texts = []
        for i in range(reps):
            texts += [
                f"what is {i + 3} times {i + 7}",
                f"convert {i + 5} km to miles",
                f"Who maintains {machines[i % len(machines)]}?",
                f"What is the average temperature in {cities[i % 10]} in July?",
                f"What's the temperature of OV-12{2 + i % 2}?",
            ]

        async def run() -> None:
            for t in texts + texts:  # the second pass hits the semantic cache where allowed
                r = await agent.ask(AskRequest(text=t))
                lat[r.source.value].append(r.latency_ms)
            agent.cloud.base_url = "http://127.0.0.1:9"  # cloud gone: breaker opens, then offline at once
            agent.cloud._client = type(agent.cloud._client)(base_url=agent.cloud.base_url, timeout=0.5)
            for i in range(reps + 3):
                was_open = agent.cloud.breaker.state == "open"
                r = await agent.ask(AskRequest(text=f"How much rain does {cities[i % 10]} get in March?"))
                lat["offline_breaker_open" if was_open else "offline_cloud_down"].append(r.latency_ms)

        asyncio.run(run())
    finally:
        server.stop()
        svc.close()
    return {
        src: {"n": len(v), "p50_ms": round(statistics.median(v), 3), "p99_ms": round(pct(v, 99), 3)}
        for src, v in sorted(lat.items())
    }


# ----------------------------------------------------------------------------- main
async def bundle_metrics(
    bundle: Path, test: list[Any], threshold: float, rng: random.Random
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route accuracy and cache calibration with the bundle's encoder + router head (ONNX Runtime)."""
    from edge.agent.routing import ServiceEncoder
    from edge.serving.service import InferenceService
    from edge.settings import ServeSettings

    service = InferenceService.from_settings(ServeSettings(bundle_dir=bundle, providers=["cpu"]))
    await service.start(str(bundle))
    try:
        enc = ServiceEncoder(service)
        t0 = time.perf_counter()
        routes = await route_accuracy(enc, test, threshold)
        routes |= {"bundle": str(bundle), "seconds": round(time.perf_counter() - t0, 2)}
        cache = await cache_calibration(enc, rng)
    finally:
        await service.stop()
    return routes, cache


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="bundle whose router head / encoder to evaluate")
    ap.add_argument("--threshold", type=float, default=0.6, help="confidence threshold for hard examples")
    ap.add_argument("--quick", action="store_true", help="smaller sets (a shared machine)")
    ap.add_argument(
        "--no-latency", action="store_true", help="skip the latency run (needs the cloud package)"
    )
    ap.add_argument(
        "--no-reasoning",
        action="store_true",
        help=(
            "skip the reasoning ablation on the frozen paraphrase families (benchmarks/reasoning_ablation.py)"
        ),
    )
    ap.add_argument(
        "--seeds", default="0,1,2", help="training seeds of the reasoning ablation's learned heads"
    )
    args = ap.parse_args()
    rng = random.Random(7)
    record: dict[str, Any] = {"benchmark": "quality_agent", "quick": args.quick}
    graph = default_graph()
    keyword = HashingEncoder(KeywordRouter(EntityLinker(graph)))

    from cloud.data.generator import default_splits

    test = default_splits()["test"]
    if args.quick:
        test = rng.sample(test, 300)
    record["route_keyword"] = asyncio.run(route_accuracy(keyword, test, args.threshold))
    print("route accuracy (keyword router):", record["route_keyword"]["accuracy"])
    if args.bundle:
        record["route_bundle"], record["cache_bundle"] = asyncio.run(
            bundle_metrics(args.bundle, test, args.threshold, rng)
        )
        print("route accuracy (bundle router):", record["route_bundle"]["accuracy"])
        print("semantic cache (bundle encoder):", record["cache_bundle"])

    n = 3 if args.quick else 10
    record["calculator"] = exact_match(calculator_set(rng, n), calculator.solve, "value")
    record["unit_convert"] = exact_match(units_set(rng, n), units.solve, "result")
    print(
        "exact match: calculator",
        record["calculator"]["exact_match"],
        "units",
        record["unit_convert"]["exact_match"],
    )
    evals = generate_questions(graph, "eval", per_pattern=3 if args.quick else 8)
    record["graph_lexical"] = graph_hits(PathReasoner(graph), evals)
    print(
        "graph hits@1 (lexical hop scorer):",
        {k: v for k, v in record["graph_lexical"].items() if k.endswith("hop")},
    )
    if args.bundle and (args.bundle / "hop_scorer.onnx").is_file():
        from edge.agent.hop_scorer import learned_scorer_from_bundle

        t0 = time.perf_counter()
        scorer = learned_scorer_from_bundle(args.bundle)  # a path scorer (/3) or a per-hop scorer (/1, /2)
        record["graph_learned"] = graph_hits(PathReasoner(graph, scorer=scorer), evals)
        record["graph_learned"]["seconds"] = round(time.perf_counter() - t0, 2)
        print(
            "graph hits@1 (learned hop scorer):",
            {k: v for k, v in record["graph_learned"].items() if k.endswith("hop")},
        )
    if args.bundle and not args.no_reasoning:  # graph / router / abstention on the frozen paraphrase families
        import torch

        from benchmarks.reasoning_ablation import run_ablation

        torch.set_num_threads(1)
        record["reasoning"] = run_ablation(args.bundle, [int(x) for x in args.seeds.split(",")], args.quick)
    record["cache"] = asyncio.run(cache_calibration(keyword, rng))
    print("semantic cache (hashing encoder):", record["cache"])
    if not args.no_latency:
        record["latency_by_source"] = latency_by_source(keyword, args.quick)
        print("latency per source:", record["latency_by_source"])
    from autoglm.bench.records import HeadlineRow, write_record

    kw = record["route_keyword"]["accuracy"]
    rows = []
    if "route_bundle" in record:
        acc = record["route_bundle"]["accuracy"]
        rows.append(
            HeadlineRow(
                what="Route accuracy, held-out test templates (EN / ZH), one bundle's router head, "
                f"n = {sum(record['route_bundle']['n'].values())}"
                + (" (--quick subset)" if record.get("quick") else "")
                + "; the seed spread of training is the `training` row",
                baseline=f"keyword router {kw.get('en', 0) * 100:.1f} / {kw.get('zh', 0) * 100:.1f} %",
                result=f"{acc.get('en', 0) * 100:.1f} / {acc.get('zh', 0) * 100:.1f} %",
                target="≥ 95 %",
                met=min(acc.values()) >= 0.95,
            )
        )
    g = record["graph_learned"] if "graph_learned" in record else record["graph_lexical"]
    hops = [g.get(f"{h}hop", 0.0) for h in (1, 2, 3)]
    rows.append(
        HeadlineRow(
            what="Graph questions hits@1, the question generator's held-out templates, 1 / 2 / 3 hops"
            + (" (learned hop scorer)" if "graph_learned" in record else " (lexical hop scorer)")
            + ": NOT blind, the cue lexicon was written while reading them; the blind numbers are the "
            "`reasoning` rows (frozen paraphrase families)",
            baseline="—",
            result=" / ".join(f"{h * 100:.1f} %" for h in hops),
            target="— (no target: not an unseen-phrasing measure)",
            met=None,
        )
    )
    if "reasoning" in record:
        from benchmarks.reasoning_ablation import headline as reasoning_headline

        rows += reasoning_headline(record["reasoning"])
    write_record("agent", record, rows)
    print(json.dumps(record, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
