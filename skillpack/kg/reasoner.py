"""Multi-hop reasoning over the plant graph: entity linking → beam search over relation paths,
where each next hop is chosen by a *relation scorer* that scores the candidate relations (plus
STOP) against the question and the path so far.

- The scorer is pluggable (:class:`RelationScorer`). :class:`LexicalHopScorer` here needs no
  model: it aligns the relation cue words of the question (EN/ZH, ``schema.RELATIONS``) by their
  distance from the entity mention. The edge agent plugs in the learned hop-scorer head from the
  bundle (ONNX) instead.
- Beam search (width ``beam_width``), pruning of branches whose hop probability is below
  ``min_hop_prob``, a cache of paths per question shape (question with the entity masked), and
  feedback priors (:mod:`skillpack.kg.priors`): a path gains
  ``prior_weight * (log(1 + confirmed) - log(1 + rejected))``, clipped to ``±prior_max`` so that
  feedback never overrides the scorer completely; the edge persists the counts and syncs them with
  the fleet.
- Every hop is a :class:`HopStep` record (relation, score, entities) — the answer's steps.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from contracts.memory import MAX_PATH_HOPS
from skillpack.errors import UnknownEntity
from skillpack.kg.graph import KnowledgeGraph, default_graph
from skillpack.kg.linking import EntityLinker, Mention
from skillpack.kg.priors import PathPriors
from skillpack.kg.schema import RELATIONS
from skillpack.text import has_cjk, to_ascii

STOP = "STOP"
MAX_HOPS = MAX_PATH_HOPS


@dataclass(frozen=True)
class HopState:
    question: str  # normalised question text
    mention_span: tuple[int, int]  # where the start entity is written
    start_type: str
    current_type: str
    path: tuple[str, ...]  # relations taken so far


class RelationScorer(Protocol):
    def __call__(self, state: HopState, candidates: list[str]) -> np.ndarray:
        """Scores in (0, 1] over ``candidates + [STOP]`` (length len(candidates) + 1); a learned
        scorer returns softmax probabilities, the lexical one un-normalised cue scores."""
        ...


# --------------------------------------------------------------------------- lexical scorer
# Cue weights: a few cues are stronger (a question word that fixes the relation) or weaker (a
# verb that is also used loosely) than the rest.
CUE_WEIGHTS: dict[str, float] = {
    "how often": 2.0,
    "how frequently": 2.0,
    "多久": 2.0,
    "多长时间": 2.0,
    "service": 0.6,
}


def _cue_patterns() -> list[tuple[re.Pattern[str], str, float]]:
    pats: list[tuple[re.Pattern[str], str, float]] = []
    for rel in RELATIONS.values():
        for cue in rel.cues_en:
            pats.append(
                (re.compile(rf"\b{re.escape(cue)}", re.IGNORECASE), rel.name, CUE_WEIGHTS.get(cue, 1.0))
            )
        for cue in rel.cues_zh:
            pats.append((re.compile(re.escape(cue)), rel.name, CUE_WEIGHTS.get(cue, 1.0)))
    return pats


_CUES = _cue_patterns()


@dataclass(frozen=True)
class CueSlot:
    start: int
    end: int
    relations: frozenset[str]
    distance: int
    weight: float = 1.0


def cue_slots(question: str, mention_span: tuple[int, int]) -> list[CueSlot]:
    """Relation cues in the question, longest match wins, ordered by distance from the mention
    (the hop nearest to the entity comes first in both English and Chinese phrasing)."""
    hits: list[tuple[int, int, str]] = []
    weights: dict[tuple[int, int], float] = {}
    for pat, rel, w in _CUES:
        for m in pat.finditer(question):
            if m.start() < mention_span[1] and m.end() > mention_span[0]:
                continue
            hits.append((m.start(), m.end(), rel))
            weights[(m.start(), m.end())] = w
    # keep the longest matches; equal spans merge their relation sets
    hits.sort(key=lambda h: (-(h[1] - h[0]), h[0]))
    spans: list[list[Any]] = []
    for s, e, rel in hits:
        same = next((sp for sp in spans if sp[0] == s and sp[1] == e), None)
        if same is not None:
            same[2].add(rel)
            continue
        if any(s < sp[1] and e > sp[0] for sp in spans):
            continue
        spans.append([s, e, {rel}])
    spans.sort(key=lambda sp: sp[0])
    # merge neighbouring cues with the same relations ("job title", "maintenance technician")
    merged: list[list[Any]] = []
    for sp in spans:
        gap = question[merged[-1][1] : sp[0]] if merged else "x"
        if merged and merged[-1][2] & sp[2] and len(gap) <= 2 and not gap.strip(" -"):
            merged[-1][1] = sp[1]
            merged[-1][2] = merged[-1][2] & sp[2]
            continue
        merged.append(sp)
    mid = (mention_span[0] + mention_span[1]) / 2
    slots = [
        CueSlot(s, e, frozenset(r), int(min(abs(s - mid), abs(e - mid))), weights.get((s, e), 1.0))
        for s, e, r in merged
    ]
    # cues after the mention are the inner hops ("… X works", "X的维护人员的主管"); cues before it
    # wrap everything after them ("the manager of the site where X works", "管理X所在厂区的人")
    return sorted(slots, key=lambda c: (c.start < mention_span[0], c.distance))


# interrogatives that ask for an entity other than the one named ("who …", "where …", 谁, 哪):
# such a question is no request to describe the named entity (the lexical scorer's empty path)
_ASKS_FOR_ANOTHER = re.compile(
    r"\b(?:who|whom|whose|where|which|when|how often|how long)\b|谁|哪|什么时候|多久", re.IGNORECASE
)


def _can_repeat(rel: str) -> bool:
    spec = RELATIONS[rel]
    return spec.tail in spec.head


def _same_tail_relations(rel: str) -> frozenset[str]:
    tail = RELATIONS[rel].tail
    return frozenset(r.name for r in RELATIONS.values() if r.tail == tail and not _can_repeat(r.name))


class LexicalHopScorer:
    """Scores relations by aligning the path so far to the question's cue slots."""

    def __init__(self, hit: float = 0.9, decay: float = 0.5, miss: float = 0.02) -> None:
        self.hit, self.decay, self.miss = hit, decay, miss
        self._cache: dict[tuple[str, tuple[int, int]], list[CueSlot]] = {}

    def __call__(self, state: HopState, candidates: list[str]) -> np.ndarray:
        key = (state.question, state.mention_span)
        slots = self._cache.get(key)
        if slots is None:
            slots = cue_slots(state.question, state.mention_span)
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = slots
        remaining = list(slots)
        for rel in state.path:
            idx = next((i for i, sl in enumerate(remaining) if rel in sl.relations), None)
            if idx is None:
                continue
            remaining.pop(idx)
            # cues that only name the type just reached ("the machine IS-2211 is attached to",
            # "the site where X works") are explained by this hop too
            absorbable = _same_tail_relations(rel)
            remaining = [sl for sl in remaining if not sl.relations <= absorbable]
        scores = []
        for rel in candidates:
            idx = next((i for i, sl in enumerate(remaining) if rel in sl.relations), None)
            scores.append(
                self.miss if idx is None else min(1.0, self.hit * remaining[idx].weight * self.decay**idx)
            )
        # STOP after the first hop: the question is answered once every cue is explained; STOP at
        # hop 0 is the empty path (describe the entity): likely only when no cue names a relation
        if state.path:
            stop = self.hit * self.decay ** len(remaining)
        elif remaining or _ASKS_FOR_ANOTHER.search(state.question):
            stop = self.miss * self.decay ** len(
                remaining
            )  # a cue or "who / where …" asks for another entity
        else:
            stop = self.hit
        # scores, not normalised: an unexplained cue must keep costing the paths that ignore it
        return np.array([*scores, stop], dtype=np.float64)


class CombinedScorer:
    """Product of experts: ``prod(scorer_i ** weight_i)`` renormalised over candidates + STOP —
    e.g. the learned hop scorer with the lexical cue scorer as a prior."""

    def __init__(self, parts: list[tuple[RelationScorer, float]]) -> None:
        if not parts:
            raise ValueError("CombinedScorer needs at least one scorer")
        self.parts = parts

    def __call__(self, state: HopState, candidates: list[str]) -> np.ndarray:
        log = np.zeros(len(candidates) + 1)
        for scorer, weight in self.parts:
            p = np.asarray(scorer(state, candidates), dtype=np.float64)
            p = p / max(float(p.sum()), 1e-12)
            log += weight * np.log(np.maximum(p, 1e-9))
        z = np.exp(log - log.max())
        out: np.ndarray = z / z.sum()
        return out


# --------------------------------------------------------------------------- reasoning
@dataclass(frozen=True)
class HopStep:
    hop: int
    relation: str
    score: float  # the scorer's probability for this relation at this hop
    from_entities: tuple[str, ...]
    to_entities: tuple[str, ...]
    candidates: dict[str, float]  # every candidate relation's probability (incl. STOP)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hop": self.hop,
            "relation": self.relation,
            "score": round(self.score, 4),
            "from": list(self.from_entities),
            "to": list(self.to_entities),
            "candidates": {k: round(v, 4) for k, v in self.candidates.items()},
        }


@dataclass
class KGAnswer:
    question: str
    start: Mention
    path: tuple[str, ...]
    answers: list[str]  # entity ids
    answer_names: list[str]
    score: float  # exp(mean log prob) of the chosen path
    steps: list[HopStep]
    text: str
    from_cache: bool = False
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    # probability of the chosen path among every finished path of the search (softmax of the
    # paths' total log scores); 1.0 for a path-cache hit
    path_probability: float = 1.0

    @property
    def hops(self) -> int:
        return len(self.path)

    def candidate_paths(self, k: int = 3) -> list[dict[str, Any]]:
        """The chosen path and the best alternatives with their probabilities (for asking back)."""
        best = {
            "path": list(self.path),
            "answers": self.answers,
            "answer_names": self.answer_names,
            "p": round(self.path_probability, 4),
            "text": self.text,
        }
        return [best, *self.alternatives[: k - 1]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "start": self.start.to_dict(),
            "path": list(self.path),
            "answers": self.answers,
            "answer_names": self.answer_names,
            "score": round(self.score, 4),
            "steps": [s.to_dict() for s in self.steps],
            "text": self.text,
            "from_cache": self.from_cache,
            "alternatives": self.alternatives,
            "path_probability": round(self.path_probability, 4),
        }


@dataclass
class _Beam:
    frontier: tuple[str, ...]
    path: tuple[str, ...]
    logp: float  # base + the path's feedback prior: what beams are ranked by
    steps: tuple[HopStep, ...]
    done: bool = False
    base: float = 0.0  # the scorer's log-probability of the path alone


_REL_EN = {
    "located_on_line": "is on line",
    "line_of_site": "belongs to site",
    "maintained_by": "is maintained by",
    "operated_by": "is operated by",
    "supervised_by": "is supervised by",
    "supplied_by": "was supplied by",
    "sensor_of": "is mounted on",
    "has_sensor": "has sensor",
    "has_role": "has the role",
    "maintenance_interval": "is maintained",
    "works_at": "works at",
    "based_in": "is based in",
    "managed_by": "is managed by",
}
_REL_ZH = {
    "located_on_line": "所在产线",
    "line_of_site": "所属工厂",
    "maintained_by": "维护人员",
    "operated_by": "操作员",
    "supervised_by": "主管",
    "supplied_by": "供应商",
    "sensor_of": "所在设备",
    "has_sensor": "传感器",
    "has_role": "职位",
    "maintenance_interval": "保养周期",
    "works_at": "工作地点",
    "based_in": "所在国家",
    "managed_by": "负责人",
}


class PathReasoner:
    def __init__(
        self,
        graph: KnowledgeGraph | None = None,
        scorer: RelationScorer | None = None,
        linker: EntityLinker | None = None,
        *,
        beam_width: int = 4,
        min_hop_prob: float = 0.05,
        prior_weight: float = 0.3,
        prior_max: float = 1.0,
        priors: PathPriors | None = None,
        cache_size: int = 512,
    ) -> None:
        self.graph = graph or default_graph()
        self.scorer: RelationScorer = scorer or LexicalHopScorer()
        self.linker = linker or EntityLinker(self.graph)
        self.beam_width = beam_width
        self.min_hop_prob = min_hop_prob
        self.priors = priors if priors is not None else PathPriors(prior_weight, prior_max)
        self._path_cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.cache_hits = 0
        # start entities found by prefetch(), taken by the answer() of the same question
        self._starts: OrderedDict[tuple[str, str | None], Mention] = OrderedDict()

    # ---------------------------------------------------------------- feedback and cache
    def confirm(
        self, start_type: str, path: tuple[str, ...] | list[str], weight: int = 1, *, shared: bool = False
    ) -> None:
        """A path confirmed correct (feedback endpoint, cloud agreement) gains prior weight;
        ``shared``: the feedback may go to the fleet (authenticated). Raises ``BadRequest`` for a
        path the schema does not have."""
        self.priors.record(start_type, path, confirmed=weight, shared=shared)

    def reject(
        self, start_type: str, path: tuple[str, ...] | list[str], weight: int = 1, *, shared: bool = False
    ) -> None:
        """An answer on this path was wrong: the path loses prior weight, and questions whose cached
        path it is are searched again."""
        path = tuple(path)
        self.priors.record(start_type, path, rejected=weight, shared=shared)
        marker = f"<{start_type}>"
        with self._lock:
            for key in [k for k, p in self._path_cache.items() if p == path and marker in k]:
                del self._path_cache[key]

    def prior(self, start_type: str, path: tuple[str, ...]) -> float:
        """Log prior of a finished path from its feedback (bounded by ``priors.max_abs``)."""
        return self.priors.score(start_type, tuple(path))

    @staticmethod
    def shape(question: str, mention: Mention, start_type: str) -> str:
        q = question[: mention.start] + f"<{start_type}>" + question[mention.end :]
        return re.sub(r"\s+", " ", q.strip().lower())

    def _cache_get(self, key: str) -> tuple[str, ...] | None:
        with self._lock:
            path = self._path_cache.get(key)
            if path is not None:
                self._path_cache.move_to_end(key)
            return path

    def _cache_put(self, key: str, path: tuple[str, ...]) -> None:
        with self._lock:
            self._path_cache[key] = path
            self._path_cache.move_to_end(key)
            while len(self._path_cache) > self._cache_size:
                self._path_cache.popitem(last=False)

    # ---------------------------------------------------------------- main entry
    def answer(
        self,
        question: str,
        context_site: str | None = None,
        start: Mention | None = None,
        use_cache: bool = True,
    ) -> KGAnswer:
        norm = to_ascii(question)
        if start is None:
            start = self._start(question, norm, context_site, reuse=True)
            if start is None:
                raise UnknownEntity(f"no knowledge-graph entity found in {question[:80]!r}")
        start_type = self.graph.get(start.entity_id).type
        key = self.shape(norm, start, start_type)
        cached = self._cache_get(key) if use_cache else None
        if cached is not None and self.graph.follow(start.entity_id, cached):
            beam = self._replay(norm, start, start_type, cached)
            if beam is not None:
                self.cache_hits += 1
                return self._finish(question, start, beam, [], from_cache=True)
        beams = self._search(norm, start, start_type)
        if not beams:
            raise UnknownEntity(f"no relation path from {start.surface!r} fits the question")
        best = beams[0]
        top = max(b.logp for b in beams)
        total = sum(math.exp(b.logp - top) for b in beams)
        probs = [math.exp(b.logp - top) / total for b in beams]
        alts = []
        for b, p in zip(beams[1:3], probs[1:3], strict=False):
            alt = self._finish(question, start, b, [])
            alts.append(
                {
                    "path": list(b.path),
                    "answers": list(b.frontier),
                    "answer_names": alt.answer_names,
                    "score": round(math.exp(b.logp / max(len(b.path), 1)), 4),
                    "p": round(p, 4),
                    "text": alt.text,
                }
            )
        if use_cache and probs[0] >= 0.5:
            self._cache_put(key, best.path)
        ans = self._finish(question, start, best, alts)
        ans.path_probability = probs[0]
        return ans

    def prefetch(self, question: str, context_site: str | None = None) -> bool:
        """What :meth:`answer` will ask of a learned scorer, computed ahead — the agent runs it in a
        worker thread while the router encodes: link the question and pick its start entity
        exactly as ``answer`` does (``answer`` reuses that start), then let the scorer cache the
        first hop's state (``scorer.prefetch``: for the bundle's scorers, the one encoder run of
        the masked question). Nothing that ``answer`` returns changes: it computes the same
        values, some of them from caches. False when the scorer has no ``prefetch`` or nothing
        links."""
        warm = getattr(self.scorer, "prefetch", None)
        if warm is None:
            return False
        norm = to_ascii(question)
        start = self._start(question, norm, context_site, reuse=False)
        if start is None:
            return False
        start_type = self.graph.get(start.entity_id).type
        warm(HopState(norm, (start.start, start.end), start_type, start_type, ()))
        return True

    def _start(self, question: str, norm: str, context_site: str | None, *, reuse: bool) -> Mention | None:
        """The question's start entity (None: nothing links). ``reuse``: take (and drop) the one a
        :meth:`prefetch` of the same question and site found, instead of linking again."""
        key = (question, context_site)
        with self._lock:
            found = self._starts.pop(key, None) if reuse else None
        if found is not None:
            return found
        mentions = self.linker.link(question, context_site=context_site)
        mentions = [m for m in mentions if m.score >= 0.5 or m.method == "embedding"]
        start = self._pick_start(norm, mentions) if mentions else None
        if start is not None and not reuse:
            with self._lock:
                self._starts[key] = start
                while len(self._starts) > 64:
                    self._starts.popitem(last=False)
        return start

    def _pick_start(self, question: str, mentions: list[Mention]) -> Mention:
        """The question's topic entity: the mention that has relations to follow, preferring the
        most specific type (sensor > machine > person > line > supplier > site ...)."""
        rank = {"sensor": 0, "machine": 1, "person": 2, "line": 3, "supplier": 4, "site": 5}
        usable = [m for m in mentions if self.graph.relations_from(m.entity_id)] or mentions
        return min(
            usable, key=lambda m: (rank.get(self.graph.entities[m.entity_id].type, 9), -m.score, m.start)
        )

    def _candidates(self, frontier: tuple[str, ...]) -> list[str]:
        rels: list[str] = []
        for e in frontier:
            for r in self.graph.relations_from(e):
                if r not in rels:
                    rels.append(r)
        return sorted(rels)

    def _expand(self, beam: _Beam, rel: str, p: float, hop: int, probs: dict[str, float]) -> _Beam:
        nxt: list[str] = []
        for e in beam.frontier:
            for t in self.graph.neighbors(e, rel):
                if t not in nxt:
                    nxt.append(t)
        step = HopStep(hop, rel, p, beam.frontier, tuple(nxt), probs)
        base = beam.base + math.log(max(p, 1e-9))
        return _Beam(tuple(nxt), (*beam.path, rel), base, (*beam.steps, step), base=base)

    def _finished(self, beam: _Beam, start_type: str, stop_p: float = 1.0) -> _Beam:
        """``beam`` as a final path: the scorer's log-probability (+ STOP) and the path's prior."""
        base = beam.base + math.log(max(stop_p, 1e-9))
        return replace(beam, logp=base + self.priors.score(start_type, beam.path), done=True, base=base)

    def _search(self, question: str, start: Mention, start_type: str) -> list[_Beam]:
        beams = [_Beam((start.entity_id,), (), 0.0, ())]
        finished: list[_Beam] = []
        for hop in range(1, MAX_HOPS + 1):
            grown: list[_Beam] = []
            for beam in beams:
                cands = self._candidates(beam.frontier)
                cur_type = self.graph.entities[beam.frontier[0]].type
                state = HopState(question, (start.start, start.end), start_type, cur_type, beam.path)
                if not cands:  # nothing to follow: the path so far (or the entity itself)
                    finished.append(self._finished(beam, start_type))
                    continue
                probs = np.asarray(self.scorer(state, cands), dtype=np.float64)
                named = {
                    **{c: float(p) for c, p in zip(cands, probs[:-1], strict=True)},
                    STOP: float(probs[-1]),
                }
                stop_p = named[STOP]
                if stop_p >= self.min_hop_prob:  # STOP at hop 0: the empty path, i.e. describe the entity
                    finished.append(self._finished(beam, start_type, stop_p))
                # a first hop where no relation reaches min_hop_prob is not pruned at all: a question
                # about a linked entity always gets paths (with their low probabilities shown) instead of none
                keep_all = hop == 1 and all(named[c] < self.min_hop_prob for c in cands)
                for rel, p in named.items():
                    if rel == STOP or (p < self.min_hop_prob and not keep_all):
                        continue  # pruned
                    child = self._expand(beam, rel, p, hop, named)
                    child.logp = child.base + self.priors.guide(start_type, child.path)
                    grown.append(child)
            grown.sort(key=lambda b: b.logp, reverse=True)
            beams = grown[: self.beam_width]
            if not beams:
                break
        finished.extend(self._finished(b, start_type) for b in beams if b.path)  # reached MAX_HOPS
        finished.sort(key=lambda b: b.logp, reverse=True)
        unique: list[_Beam] = []
        seen: set[tuple[str, ...]] = set()
        for b in finished:
            if b.path not in seen and b.frontier:
                seen.add(b.path)
                unique.append(b)
        return unique

    def _replay(self, question: str, start: Mention, start_type: str, path: tuple[str, ...]) -> _Beam | None:
        beam = _Beam((start.entity_id,), (), 0.0, ())
        for hop, rel in enumerate(path, start=1):
            cands = self._candidates(beam.frontier)
            if rel not in cands:
                return None
            cur_type = self.graph.entities[beam.frontier[0]].type
            probs = np.asarray(
                self.scorer(
                    HopState(question, (start.start, start.end), start_type, cur_type, beam.path), cands
                )
            )
            named = {**{c: float(p) for c, p in zip(cands, probs[:-1], strict=True)}, STOP: float(probs[-1])}
            beam = self._expand(beam, rel, named[rel], hop, named)
        return beam

    def _describe_text(self, entity_id: str, zh: bool) -> str:
        """The empty path's answer: the entity and every relation that leaves it."""
        e = self.graph.entities[entity_id]
        facts = []
        for rel in self.graph.relations_from(entity_id):
            label = ", ".join(
                self.graph.entities[t].label(zh) for t in self.graph.neighbors(entity_id, rel)[:5]
            )
            facts.append(f"{_REL_ZH[rel]}：{label}" if zh else f"{_REL_EN[rel]} {label}")
        return (
            f"{e.label(zh)}：" + "；".join(facts) if zh else f"{e.label(zh)} ({e.type}): " + "; ".join(facts)
        )

    def _finish(
        self, question: str, start: Mention, beam: _Beam, alts: list[dict[str, Any]], from_cache: bool = False
    ) -> KGAnswer:
        zh = has_cjk(question)
        if not beam.path:  # the empty path: describe the entity
            name = self.graph.entities[start.entity_id].label(zh)
            return KGAnswer(
                question,
                start,
                (),
                [start.entity_id],
                [name],
                1.0,
                [],
                self._describe_text(start.entity_id, zh),
                from_cache,
                alts,
            )
        names = [self.graph.entities[e].label(zh) for e in beam.frontier]
        chain = self.graph.entities[start.entity_id].label(zh)
        for step in beam.steps:
            label = ", ".join(self.graph.entities[e].label(zh) for e in step.to_entities[:5])
            chain += f" →{_REL_ZH[step.relation] if zh else _REL_EN[step.relation]}→ {label}"
        answer = "、".join(names) if zh else ", ".join(names)
        text = f"{answer}（{chain}）" if zh else f"{answer} ({chain})"
        n = max(len(beam.path), 1)
        score = math.exp(sum(math.log(max(s.score, 1e-9)) for s in beam.steps) / n)
        return KGAnswer(
            question,
            start,
            beam.path,
            list(beam.frontier),
            names,
            score,
            list(beam.steps),
            text,
            from_cache,
            alts,
        )


_DEFAULT: PathReasoner | None = None


def solve(text: str, context_site: str | None = None) -> KGAnswer:
    """Answer a plant question with the shipped graph and the lexical hop scorer."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PathReasoner()
    return _DEFAULT.answer(text, context_site=context_site)
