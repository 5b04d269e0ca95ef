"""Semantic-cache false hits on HARD negatives, and the cache threshold chosen from the curve.

The cache (``edge.agent.memory.SemanticCache``, real SQLite ``MemoryStore``) is filled with the
answers to generated questions; then it is asked

* **paraphrases** of a stored question (another template, same meaning) — a hit on the entry of
  the same meaning is a *true hit*;
* **hard negatives**: the stored question's own template with ONE slot changed, same route —
  another city, month or quantity ("July in Shanghai" vs "July in Beijing"), another graph entity
  or relation ("who maintains PR-111" vs "who operates PR-111"), another device or reading,
  other numbers, operator or operand order, another target unit or direction. Their meaning is
  not in the cache, so any hit is a *false hit*.

One lookup per question through the real ``SemanticCache.lookup`` (route, signature, freshness
gates; the similarity gate opened) gives the best gated entry and its cosine, so the false-hit /
true-hit curve over every threshold comes from one pass. Two independent seeded sets:
**calibration** picks the threshold, **held-out** reports it.

Rule for the default threshold (``agent_cache_threshold``, rule version 2): on the calibration
set, for each deployable encoder, the lowest threshold (highest true-hit rate) whose false-hit
rate on hard negatives has a one-sided 95 % Clopper-Pearson upper bound ≤ 1 % (with ~300
negatives: no false hit at all); the default is the largest of those (it must be safe for whichever encoder a
node runs). Deployable: the hashing encoder (a node without a model) and the model's encoder —
the demo's trained bundle (``.autoglm/demo/bundles/autoglm-router-1.0.0``) when present, any
``--bundle DIR``, and with ``--minilm`` all-MiniLM-L6-v2 with untrained router adapters (the
cache only reads the embedding, which is MiniLM's). The tests' small bundle (tiny random
MiniLM-shaped encoder) is measured and reported too, but no node runs random weights, so it does
not set the default. The goal — false hits ≤ 1 % on the held-out hard negatives — is checked at
the shipped default. Baseline in the same run: the same cache without the signature gate
(embedding similarity only). The record says which encoders were measured.

Usage: ``python benchmarks/quality_cache.py [--n 80] [--minilm] [--bundle DIR] [--no-small]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autoglm.bench.records import HeadlineRow, write_record  # noqa: E402

GENERATOR_VERSION = 1
MAX_FALSE_HIT = 0.01
THRESHOLDS = [float(round(x, 3)) for x in [*np.arange(0.50, 0.99, 0.01), *np.arange(0.99, 1.0001, 0.001)]]
DEMO_BUNDLE = ROOT / ".autoglm" / "demo" / "bundles" / "autoglm-router-1.0.0"


@dataclass(frozen=True)
class Probe:
    text: str
    route: str
    meaning: str  # language-independent: the slots that decide the answer
    kind: str  # "paraphrase" or the hard-negative kind ("climate/city", "kg/relation", ...)
    lang: str


@dataclass(frozen=True)
class PairSet:
    anchors: list[Probe]  # stored in the cache
    probes: list[Probe]  # paraphrases (meaning stored) and hard negatives (meaning not stored)


# ----------------------------------------------------------------------------- generators
_CLIMATE = {
    "temperature": {
        "en": [
            "What is the average temperature in {c} in {m}?",
            "How warm is {c} in {m} on average?",
            "average {m} temperature in {c}",
            "what's the typical temperature in {c} during {m}",
        ],
        "zh": [
            "{c}{m}的平均气温是多少？",
            "{c}{m}平均温度多少",
            "{m}{c}的气温一般是多少",
            "请问{c}{m}有多热",
        ],
    },
    "precipitation": {
        "en": [
            "How much rain does {c} get in {m}?",
            "What is the average rainfall in {c} in {m}?",
            "average {m} precipitation in {c}",
            "how wet is {c} in {m}",
        ],
        "zh": ["{c}{m}的降水量是多少？", "{c}{m}平均下多少雨", "{m}{c}的降雨量有多少", "{c}{m}雨水多吗"],
    },
}
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DEVICE = {
    "en": [
        "What's the {q} of {d}?",
        "current {q} of {d}",
        "show me the {q} reading of {d}",
        "how high is the {q} on {d} right now",
    ],
    "zh": ["{d}的{q}是多少？", "{d}现在的{q}", "查一下{d}的{q}", "{d}当前{q}多少"],
}
_READINGS = {
    "temperature": "温度",
    "pressure": "压力",
    "vibration": "振动",
    "current": "电流",
    "speed": "速度",
}
_CALC = {
    "+": {
        "en": ["what is {a} plus {b}", "{a} + {b} = ?", "calculate {a} plus {b}", "how much is {a} plus {b}"],
        "zh": ["{a}加{b}等于多少", "{a}+{b}是多少", "计算{a}加{b}", "{a}加上{b}是多少"],
    },
    "-": {
        "en": [
            "what is {a} minus {b}",
            "{a} - {b} = ?",
            "calculate {a} minus {b}",
            "how much is {a} minus {b}",
        ],
        "zh": ["{a}减{b}等于多少", "{a}-{b}是多少", "计算{a}减{b}", "{a}减去{b}是多少"],
    },
    "*": {
        "en": [
            "what is {a} times {b}",
            "{a} * {b} = ?",
            "calculate {a} times {b}",
            "how much is {a} times {b}",
        ],
        "zh": ["{a}乘{b}等于多少", "{a}*{b}是多少", "计算{a}乘以{b}", "{a}乘以{b}是多少"],
    },
    "/": {
        "en": [
            "what is {a} divided by {b}",
            "{a} / {b} = ?",
            "calculate {a} divided by {b}",
            "how much is {a} divided by {b}",
        ],
        "zh": ["{a}除以{b}等于多少", "{a}/{b}是多少", "计算{a}除以{b}", "{a}除以{b}是多少"],
    },
}
_UNITS = {  # key: (EN name, ZH name)
    "km": ("km", "公里"),
    "mi": ("miles", "英里"),
    "m": ("meters", "米"),
    "ft": ("feet", "英尺"),
    "kg": ("kg", "公斤"),
    "lb": ("pounds", "磅"),
    "°C": ("°C", "摄氏度"),
    "°F": ("°F", "华氏度"),
    "bar": ("bar", "巴"),
    "psi": ("psi", "磅每平方英寸"),
    "L": ("liters", "升"),
    "gal": ("gallons", "加仑"),
    "km/h": ("km/h", "公里每小时"),
    "mph": ("mph", "英里每小时"),
    "kWh": ("kWh", "千瓦时"),
    "MJ": ("MJ", "兆焦"),
}
_UNIT_GROUPS = [
    ["km", "mi", "m", "ft"],
    ["kg", "lb"],
    ["°C", "°F"],
    ["bar", "psi"],
    ["L", "gal"],
    ["km/h", "mph"],
    ["kWh", "MJ"],
]
_UNIT_T = {
    "en": ["convert {v} {a} to {b}", "how many {b} is {v} {a}", "{v} {a} in {b}", "what is {v} {a} in {b}"],
    "zh": ["{v}{a}等于多少{b}", "把{v}{a}换算成{b}", "{v}{a}是多少{b}", "{v}{a}换算成{b}是多少"],
}


def _two(rng: random.Random, n: int) -> tuple[int, int]:
    i, j = rng.sample(range(n), 2)
    return i, j


def _climate(rng: random.Random, cities: list[Any]) -> tuple[Probe, Probe, Probe]:
    city, quantity, month = rng.choice(cities), rng.choice(list(_CLIMATE)), rng.randrange(12)
    kind = rng.choice(["city", "month", "quantity"])
    city2, q2, month2 = city, quantity, month
    if kind == "city":
        city2 = rng.choice([c for c in cities if c.id != city.id])
    elif kind == "month":
        month2 = rng.choice([m for m in range(12) if m != month])
    else:
        q2 = next(q for q in _CLIMATE if q != quantity)
    lang = rng.choice(["en", "zh"])
    t1, t2 = _two(rng, 4)

    def text(c: Any, q: str, m: int, t: int) -> str:
        name = c.name if lang == "en" else c.name_zh
        month_text = _MONTHS[m] if lang == "en" else f"{m + 1}月"
        return _CLIMATE[q][lang][t].format(c=name, m=month_text)

    meaning, meaning2 = f"climate|{city.id}|{month}|{quantity}", f"climate|{city2.id}|{month2}|{q2}"
    return (
        Probe(text(city, quantity, month, t1), "climate", meaning, "anchor", lang),
        Probe(text(city, quantity, month, t2), "climate", meaning, "paraphrase", lang),
        Probe(text(city2, q2, month2, t1), "climate", meaning2, f"climate/{kind}", lang),
    )


def _device(rng: random.Random, codes: list[str]) -> tuple[Probe, Probe, Probe]:
    code, reading = rng.choice(codes), rng.choice(list(_READINGS))
    kind = rng.choice(["device", "reading"])
    code2, reading2 = code, reading
    if kind == "device":
        code2 = rng.choice(
            [c for c in codes if c != code and c[:2] == code[:2]] or [c for c in codes if c != code]
        )
    else:
        reading2 = rng.choice([r for r in _READINGS if r != reading])
    lang = rng.choice(["en", "zh"])
    t1, t2 = _two(rng, 4)

    def text(d: str, r: str, t: int) -> str:
        return _DEVICE[lang][t].format(d=d, q=r if lang == "en" else _READINGS[r])

    return (
        Probe(text(code, reading, t1), "device_status", f"device|{code}|{reading}", "anchor", lang),
        Probe(text(code, reading, t2), "device_status", f"device|{code}|{reading}", "paraphrase", lang),
        Probe(
            text(code2, reading2, t1), "device_status", f"device|{code2}|{reading2}", f"device/{kind}", lang
        ),
    )


def _calc(rng: random.Random) -> tuple[Probe, Probe, Probe]:
    op = rng.choice(list(_CALC))
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    while a == b:
        b = rng.randint(2, 999)
    kind = rng.choice(["number", "operator", "order"] if op in "-/" else ["number", "operator"])
    op2, a2, b2 = op, a, b
    if kind == "number":
        if rng.random() < 0.5:
            a2 = a + rng.choice([-1, 1, 10, 100]) if a > 100 else a + 1
        else:
            b2 = b + rng.choice([-1, 1, 10, 100]) if b > 100 else b + 1
    elif kind == "operator":
        op2 = rng.choice([o for o in _CALC if o != op])
    else:
        a2, b2 = b, a
    lang = rng.choice(["en", "zh"])
    t1, t2 = _two(rng, 4)

    def text(o: str, x: int, y: int, t: int) -> str:
        return _CALC[o][lang][t].format(a=x, b=y)

    return (
        Probe(text(op, a, b, t1), "calculator", f"calc|{a}{op}{b}", "anchor", lang),
        Probe(text(op, a, b, t2), "calculator", f"calc|{a}{op}{b}", "paraphrase", lang),
        Probe(text(op2, a2, b2, t1), "calculator", f"calc|{a2}{op2}{b2}", f"calculator/{kind}", lang),
    )


def _units(rng: random.Random) -> tuple[Probe, Probe, Probe]:
    group = rng.choice(_UNIT_GROUPS)
    src, dst = rng.sample(group, 2)
    v = rng.randint(1, 999)
    kinds = ["number", "direction"] + (["target_unit"] if len(group) > 2 else [])
    kind = rng.choice(kinds)
    v2, src2, dst2 = v, src, dst
    if kind == "number":
        v2 = v + rng.choice([1, 2, 10, 100])
    elif kind == "direction":
        src2, dst2 = dst, src
    else:
        dst2 = rng.choice([u for u in group if u not in (src, dst)])
    lang = rng.choice(["en", "zh"])
    t1, t2 = _two(rng, 4)
    li = 0 if lang == "en" else 1

    def text(x: int, a: str, b: str, t: int) -> str:
        return _UNIT_T[lang][t].format(v=x, a=_UNITS[a][li], b=_UNITS[b][li])

    return (
        Probe(text(v, src, dst, t1), "unit_convert", f"units|{v}|{src}|{dst}", "anchor", lang),
        Probe(text(v, src, dst, t2), "unit_convert", f"units|{v}|{src}|{dst}", "paraphrase", lang),
        Probe(text(v2, src2, dst2, t1), "unit_convert", f"units|{v2}|{src2}|{dst2}", f"units/{kind}", lang),
    )


def _kg(rng: random.Random, n: int) -> list[tuple[Probe, Probe, Probe]]:
    """Graph questions of ``skillpack.kg.questions`` (train + eval phrasings): a paraphrase is the
    same (language, entity, path) in another phrasing; a hard negative keeps the anchor's templates
    and path with another entity, or keeps the entity with another path."""
    from skillpack.kg.graph import default_graph
    from skillpack.kg.questions import generate_questions

    g = default_graph()
    qs = generate_questions(g, "train", per_pattern=4) + generate_questions(g, "eval", per_pattern=4)
    by_frame: dict[tuple[str, str, tuple[str, ...]], list[Any]] = defaultdict(list)
    for q in qs:
        by_frame[(q.lang, q.start, q.path)].append(q)
    out: list[tuple[Probe, Probe, Probe]] = []
    frames = sorted(k for k, v in by_frame.items() if len({q.text for q in v}) >= 2)
    rng.shuffle(frames)
    for lang, start, path in frames:
        if len(out) >= n:
            break
        group = by_frame[(lang, start, path)]
        anchor = rng.choice(group)
        para = rng.choice([q for q in group if q.text != anchor.text])
        if rng.random() < 0.5:
            cands = [
                q
                for q in qs
                if q.lang == lang and q.path == path and q.templates == anchor.templates and q.start != start
            ]
            kind = "kg/entity"
        else:
            cands = [q for q in qs if q.lang == lang and q.start == start and q.path != path]
            kind = "kg/relation"
        if not cands:
            continue
        neg = rng.choice(cands)

        def meaning(q: Any) -> str:
            return f"kg|{q.start}|{'/'.join(q.path)}"

        out.append(
            (
                Probe(anchor.text, "kg_query", meaning(anchor), "anchor", lang),
                Probe(para.text, "kg_query", meaning(para), "paraphrase", lang),
                Probe(neg.text, "kg_query", meaning(neg), kind, lang),
            )
        )
    return out


def generate(n: int, seed: int) -> PairSet:
    """``n`` (anchor, paraphrase, hard negative) triples per family (climate, device status,
    calculator, units, knowledge graph); a hard negative whose meaning is stored is dropped."""
    from skillpack.climate import load_normals
    from skillpack.kg.graph import default_graph

    rng = random.Random(seed)
    cities = sorted(load_normals().values(), key=lambda c: c.id)
    codes = sorted(str(e.attrs["code"]) for e in default_graph().of_type("machine"))
    triples: list[tuple[Probe, Probe, Probe]] = []
    for _ in range(n):
        triples += [_climate(rng, cities), _device(rng, codes), _calc(rng), _units(rng)]
    triples += _kg(rng, n)
    anchors: dict[str, Probe] = {}
    for a, _, _ in triples:
        anchors.setdefault(a.meaning, a)
    probes = [p for _, p, _ in triples] + [neg for _, _, neg in triples if neg.meaning not in anchors]
    return PairSet(list(anchors.values()), probes)


# ----------------------------------------------------------------------------- measurement
Encode = Callable[[list[str]], list[np.ndarray]]
Signature = Callable[[str], list[str]]


def real_signature() -> Signature:
    from edge.agent.memory import question_signature
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    linker = EntityLinker(default_graph())
    return lambda text: question_signature(text, linker)


def lookups(
    pairs: PairSet, encode: Encode, signature: Signature, cache_cls: type | None = None
) -> list[tuple[Probe, str | None, float]]:
    """Store every anchor in a real SemanticCache, look every probe up with the similarity gate
    open; (probe, meaning of the best gated entry or None, its cosine)."""
    from edge.agent.memory import SemanticCache
    from edge.agent.settings import DEFAULT_FRESHNESS_S
    from edge.memory.store import MemoryStore

    texts = [p.text for p in pairs.anchors] + [p.text for p in pairs.probes]
    vecs = encode(texts)
    with tempfile.TemporaryDirectory(prefix="quality-cache-") as d:
        store = MemoryStore(Path(d) / "memory.sqlite3", "bench-node")
        try:
            # a frozen wall clock: every entry is fresh (device_status keeps answers 5 s) however long
            # encoding takes on a loaded machine — the benchmark measures the signature and threshold gates
            cache = (cache_cls or SemanticCache)(store, -1.0, DEFAULT_FRESHNESS_S, wall=lambda: 1.7e9)
            for p, v in zip(pairs.anchors, vecs, strict=False):
                cache.store_answer(
                    p.text, v, p.route, signature(p.text), f"answer[{p.meaning}]", {"meaning": p.meaning}
                )
            out = []
            for p, v in zip(pairs.probes, vecs[len(pairs.anchors) :], strict=True):
                hit, _ = cache.lookup(v, p.route, signature(p.text))
                out.append(
                    (
                        p,
                        None if hit is None else str(hit.data.get("meaning")),
                        0.0 if hit is None else hit.similarity,
                    )
                )
        finally:
            store.close()
    return out


def curve(
    results: list[tuple[Probe, str | None, float]], thresholds: list[float] = THRESHOLDS
) -> dict[str, Any]:
    """False-hit rate on hard negatives, true-hit and wrong-answer rates on paraphrases, per threshold."""
    para = [(p, m, s) for p, m, s in results if p.kind == "paraphrase"]
    neg = [(p, m, s) for p, m, s in results if p.kind != "paraphrase"]
    rows = []
    for t in thresholds:
        rows.append(
            {
                "t": t,
                "false_hit": round(sum(m is not None and s >= t for _, m, s in neg) / max(len(neg), 1), 4),
                "true_hit": round(sum(m == p.meaning and s >= t for p, m, s in para) / max(len(para), 1), 4),
                "paraphrase_wrong": round(
                    sum(m is not None and m != p.meaning and s >= t for p, m, s in para) / max(len(para), 1),
                    4,
                ),
            }
        )
    return {"n_paraphrase": len(para), "n_hard_negative": len(neg), "points": rows}


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen k times in n (bisection on the
    binomial CDF; no scipy)."""
    if n == 0:
        return 1.0
    if k >= n:
        return 1.0

    def cdf(p: float) -> float:
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) > 1 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def choose_threshold(c: dict[str, Any], max_false: float = MAX_FALSE_HIT) -> float:
    """The rule (version 2): the lowest threshold (= highest true-hit rate) whose calibration
    false-hit rate has a 95 % upper confidence bound ≤ ``max_false``. (Version 1 took the
    point estimate ≤ 1 %; its first run picked 0.84 and missed the goal on the held-out set —
    record cache-20261204T212918Z — so the rule was tightened and judged on a NEW held-out seed.)"""
    n = c["n_hard_negative"]
    ok = [r["t"] for r in c["points"] if upper_bound(round(r["false_hit"] * n), n) <= max_false]
    return float(min(ok)) if ok else 1.0


def at(c: dict[str, Any], t: float) -> dict[str, Any]:
    """The curve point at the largest grid threshold ≤ t."""
    pts = [r for r in c["points"] if r["t"] <= t + 1e-9]
    return pts[-1] if pts else c["points"][0]


def by_kind(
    results: list[tuple[Probe, str | None, float]], t: float, signature: Signature, anchors: dict[str, Probe]
) -> dict[str, Any]:
    """Per hard-negative kind at threshold t: false-hit rate, and how often the negative shares
    the signature of a stored question of the same route (so only the embedding can separate)."""
    sigs_by_route: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for a in anchors.values():
        sigs_by_route[a.route].add(tuple(signature(a.text)))
    out: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"hit": [], "same_sig": []})
    for p, m, s in results:
        if p.kind == "paraphrase":
            continue
        out[p.kind]["hit"].append(m is not None and s >= t)
        out[p.kind]["same_sig"].append(tuple(signature(p.text)) in sigs_by_route[p.route])
    return {
        k: {
            "n": len(v["hit"]),
            "false_hit": round(sum(v["hit"]) / len(v["hit"]), 4),
            "shares_signature": round(sum(v["same_sig"]) / len(v["same_sig"]), 4),
        }
        for k, v in sorted(out.items())
    }


def evaluate(
    calib: PairSet,
    heldout: PairSet,
    encode: Encode,
    signature: Signature,
    default_t: float,
    cache_cls: type | None = None,
) -> dict[str, Any]:
    """Curve on both sets, threshold by the rule on calibration, held-out numbers at it and at
    ``default_t``, and the embedding-only baseline (no signature gate) at ``default_t``."""
    encode = _memo(encode)
    cal = curve(lookups(calib, encode, signature, cache_cls))
    held_res = lookups(heldout, encode, signature, cache_cls)
    held = curve(held_res)
    chosen = choose_threshold(cal)
    base = curve(lookups(heldout, encode, lambda _t: [], cache_cls))
    anchors = {a.meaning: a for a in heldout.anchors}
    return {
        "threshold_rule": "lowest threshold whose calibration false-hit rate has a 95 % upper bound "
        f"<= {MAX_FALSE_HIT:.0%}",
        "chosen_threshold": chosen,
        "default_threshold": default_t,
        "calibration_curve": cal,
        "heldout_curve": held,
        "heldout_at_chosen": at(held, chosen),
        "heldout_at_default": at(held, default_t),
        "heldout_by_kind_at_default": by_kind(held_res, default_t, signature, anchors),
        "baseline_no_signature_at_default": at(base, default_t),
        "heldout_no_signature_curve": base,
        "baseline_no_signature_chosen_threshold": choose_threshold(
            curve(lookups(calib, encode, lambda _t: [], cache_cls))
        ),
        "goal_met": at(held, default_t)["false_hit"] <= MAX_FALSE_HIT,
    }


# ----------------------------------------------------------------------------- encoders
def _memo(encode: Encode) -> Encode:
    seen: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> list[np.ndarray]:
        todo = sorted({t for t in texts if t not in seen})
        if todo:
            seen.update(zip(todo, encode(todo), strict=True))
        return [seen[t] for t in texts]

    return cached


def hashing_encode() -> Encode:
    from edge.agent.routing import HashingEncoder, KeywordRouter
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    enc = HashingEncoder(KeywordRouter(EntityLinker(default_graph())))

    def encode(texts: list[str]) -> list[np.ndarray]:
        return [e.embedding for e in asyncio.run(enc.encode(texts))]

    return encode


def small_bundle(out: Path) -> Path:
    """The tests' small bundle: a tiny random MiniLM-shaped encoder with router adapters, exported
    by the real pipeline (as ``tests/edge/conftest.py`` builds it)."""
    import torch

    from cloud.model.autoglm_model import AutoGLMModel
    from cloud.model.base import make_tiny_base
    from cloud.model.checkpoint import save_checkpoint
    from contracts.routes import DEFAULT_ROUTES
    from export.pipeline import export_checkpoint

    base = make_tiny_base(out / "base", seed=0)
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.adapter_sets.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    ckpt = save_checkpoint(model, out / "ckpt", base_path=base)
    return export_checkpoint(ckpt, out / "bundle", name="autoglm-router", version="1.0.0")


def bundle_encode(bundle: Path) -> tuple[Encode, Callable[[], None]]:
    """Encode with the bundle's encoder through the real InferenceService (ONNX Runtime, CPU)."""
    from edge.serving.service import InferenceService
    from edge.settings import ServeSettings

    loop = asyncio.new_event_loop()
    service = InferenceService.from_settings(ServeSettings(bundle_dir=bundle, providers=["cpu"]))
    loop.run_until_complete(service.start(str(bundle)))

    def encode(texts: list[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i in range(0, len(texts), 32):
            res = loop.run_until_complete(service.infer(texts[i : i + 32]))
            out += [np.asarray(r.embedding, dtype=np.float32) for r in res]
        return out

    def close() -> None:
        loop.run_until_complete(service.stop())
        loop.close()

    return encode, close


# ----------------------------------------------------------------------------- main
def headline(
    results: dict[str, dict[str, Any]], default_t: float, names: list[str] | None = None
) -> list[HeadlineRow]:
    """One row per deployable encoder (``names``; default: all)."""
    rows = []
    for name, r in results.items():
        if names is not None and name not in names:
            continue
        d, b = r["heldout_at_default"], r["baseline_no_signature_at_default"]
        rows.append(
            HeadlineRow(
                what="Semantic-cache false hits, hard negatives, "
                f"held-out ({r['heldout_curve']['n_hard_negative']}), "
                f"{name} encoder, threshold {default_t:g}",
                baseline=f"no signature gate: {b['false_hit'] * 100:.1f} % false, "
                f"{b['true_hit'] * 100:.1f} % true hits",
                result=f"{d['false_hit'] * 100:.1f} % false, {d['true_hit'] * 100:.1f} % true hits "
                f"(rule picks {r['chosen_threshold']:g})",
                target=f"≤ {MAX_FALSE_HIT * 100:.0f} % false hits",
                met=r["goal_met"],
            )
        )
    return rows


def figures(results: dict[str, dict[str, Any]]) -> list[Any]:
    """Held-out false-hit and true-hit rate over the threshold, one panel per encoder."""
    from autoglm.plots import Figure

    out = []
    for name, r in results.items():
        pts = [p for p in r["heldout_curve"]["points"] if p["t"] >= 0.7]
        out.append(
            Figure(
                title=f"cache, {name} encoder: held-out hits vs threshold (rule: {r['chosen_threshold']:g})",
                kind="lines",
                x=[p["t"] for p in pts],
                xlabel="cosine threshold",
                ylabel="rate",
                series={
                    "false hits (hard negatives)": [p["false_hit"] for p in pts],
                    "true hits (paraphrases)": [p["true_hit"] for p in pts],
                    "false hits, no signature gate": [
                        q["false_hit"] for q in r["heldout_no_signature_curve"]["points"] if q["t"] >= 0.7
                    ],
                },
            )
        )
    return out


def main() -> int:
    from edge.agent.settings import AgentSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=80, help="triples per family and set")
    ap.add_argument("--seed", type=int, default=2026, help="calibration seed")
    ap.add_argument(
        "--heldout-seed",
        type=int,
        default=3031,
        help="held-out seed (2027 was the held-out set of rule version 1, seen: not used again)",
    )
    ap.add_argument(
        "--bundle", type=Path, action="append", help="a bundle whose encoder to measure (repeatable)"
    )
    ap.add_argument(
        "--minilm", action="store_true", help="also all-MiniLM-L6-v2 with untrained adapters (exported once)"
    )
    ap.add_argument("--no-small", action="store_true", help="skip the tests' small bundle")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    default_t = AgentSettings.model_fields["agent_cache_threshold"].default
    calib, held = generate(args.n, args.seed), generate(args.n, args.heldout_seed)
    sig = real_signature()
    results: dict[str, dict[str, Any]] = {"hashing": evaluate(calib, held, hashing_encode(), sig, default_t)}
    encoders = {"hashing": "HashingEncoder (character 3-grams, 256-d): a node without a model"}
    in_rule = ["hashing"]
    bundles: list[tuple[str, Path | None, str, bool]] = []  # (name, dir or None: build, label, in the rule)
    for b in args.bundle or []:
        bundles.append((f"bundle_{b.name}", b, f"bundle {b}", True))
    if (DEMO_BUNDLE / "manifest.yaml").is_file():
        bundles.append(
            ("demo", DEMO_BUNDLE, f"the demo's trained bundle {DEMO_BUNDLE.relative_to(ROOT)}", True)
        )
    if args.minilm:
        bundles.append(
            (
                "minilm",
                None,
                "all-MiniLM-L6-v2 with untrained router adapters (fp32 bundle of "
                "benchmarks/bench_serving.py; the embedding is MiniLM's)",
                True,
            )
        )
    if not args.no_small:
        bundles.append(
            (
                "small_bundle",
                None,
                "the tests' small bundle (tiny random MiniLM-shaped encoder, hidden 32): "
                "random weights, reported but not used for the default",
                False,
            )
        )
    for name, bdir, label, rule in bundles:
        with tempfile.TemporaryDirectory(prefix="quality-cache-bundle-") as d:
            if bdir is None and name == "minilm":
                sys.path.insert(0, str(ROOT / "benchmarks"))
                from bench_serving import prepare_bundle

                bdir = prepare_bundle("fp32")[1]
            elif bdir is None:
                bdir = small_bundle(Path(d))
            encode, close = bundle_encode(bdir)
            try:
                results[name] = evaluate(calib, held, encode, sig, default_t)
            finally:
                close()
        encoders[name] = label
        if rule:
            in_rule.append(name)
    recommended = max(results[n]["chosen_threshold"] for n in in_rule)
    for name, r in results.items():
        d, c, b = r["heldout_at_default"], r["heldout_at_chosen"], r["baseline_no_signature_at_default"]
        print(f"[{name}] {encoders[name]}")
        print(
            f"  held-out: {r['heldout_curve']['n_paraphrase']} paraphrases, "
            f"{r['heldout_curve']['n_hard_negative']} hard negatives"
        )
        print(
            f"  at default {default_t}: false hits {d['false_hit']:.2%}, true hits {d['true_hit']:.2%} "
            f"(no signature gate: {b['false_hit']:.2%} / {b['true_hit']:.2%})  "
            f"goal {'MET' if r['goal_met'] else 'NOT MET'}"
        )
        print(
            f"  rule picks {r['chosen_threshold']} on calibration; "
            f"held-out there: false {c['false_hit']:.2%}, true {c['true_hit']:.2%}"
        )
        for kind, k in r["heldout_by_kind_at_default"].items():
            print(
                f"    {kind:<22} n={k['n']:<4} false hits {k['false_hit']:.2%}  "
                f"shares a stored signature {k['shares_signature']:.0%}"
            )
    print(f"default threshold by the rule (largest over encoders): {recommended} (shipped: {default_t})")
    metrics = {
        "generator_version": GENERATOR_VERSION,
        "rule_version": 2,
        "n_per_family": args.n,
        "seed": args.seed,
        "heldout_seed": args.heldout_seed,
        "encoders": encoders,
        "default_rule_encoders": in_rule,
        "default_threshold": default_t,
        "recommended_default": recommended,
        "default_rule": "largest over the deployable encoders (default_rule_encoders) of: "
        "lowest threshold whose "
        f"calibration false-hit rate has a 95 % upper bound <= {MAX_FALSE_HIT:.0%}",
        "results": results,
    }
    print(
        json.dumps(
            {
                "bench": "cache",
                "recommended_default": recommended,
                "default_threshold": default_t,
                "goal_met": {k: r["goal_met"] for k, r in results.items()},
            }
        )
    )
    if not args.no_record:
        write_record("cache", metrics, headline(results, default_t, in_rule), figures=figures(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
