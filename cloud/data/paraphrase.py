"""Reasoning data from paraphrase families (``cloud.data.paraphrase_families``): graph questions
(1–3 hops, explicit and implicit first hops, distractor numbers), questions of the other routes
and nonsense labelled ``unsure`` — EN and ZH.

Held out by **family** and by **entity**: an evaluation item uses only evaluation families
(noun phrases, questions, frames, distractors) and starts from an evaluation entity; a training
item uses only training families and training entities. The evaluation set is frozen in
``cloud/data/frozen/reasoning_eval_v2.jsonl`` (sha256 :data:`FROZEN_EVAL_SHA256`, written by
``python -m cloud.data.paraphrase --freeze`` once, before any tuning; ``reasoning_eval.jsonl`` is
the first frozen set, whose nonsense families were moved into training by re-split 2). The rule
(docs/EVALUATION.md, "Reasoning evaluation"): never edit families, cues or data after looking at
evaluation errors — re-split instead (new families for evaluation, a new frozen file).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloud.data.paraphrase_families import (
    DISTRACTORS,
    FRAMES,
    IMPLICIT_FAMILIES,
    NONSENSE_FAMILIES,
    NP_FAMILIES,
    Q_FAMILIES,
    RESPLIT,
    ROUTE_FAMILIES,
    Family,
)
from skillpack.kg.graph import Entity, KnowledgeGraph, default_graph
from skillpack.kg.questions import PATTERNS

UNSURE = "unsure"
SPLITS = ("train", "eval")
LANGS = ("en", "zh")
FROZEN_DIR = Path(__file__).with_name("frozen")
# the first frozen set (superseded by re-split 2 for nonsense; kept, byte for byte, for its records)
FROZEN_EVAL_V1 = FROZEN_DIR / "reasoning_eval.jsonl"
FROZEN_EVAL_V1_SHA256 = "131bb362583b180a52b09658cdf7cacee20e4430df9a3f5661acc20b967091b0"
# re-split 2: the same graph and route items, new nonsense families (the old ones moved to training)
FROZEN_EVAL_V2 = FROZEN_DIR / "reasoning_eval_v2.jsonl"
FROZEN_EVAL_V2_SHA256 = "a4c942f43f5d16aa82deb0e11a7ad1419f2133f7a2e5191062377f9be4a11ff5"
# re-split 3: new graph families (v2's graph families moved to training); route and nonsense items
# are v2's, byte for byte
FROZEN_EVAL = FROZEN_DIR / "reasoning_eval_v3.jsonl"
FROZEN_EVAL_SHA256 = "a354f6824a368d9f6d00b839c825ff1354300f295d1ae3c39c22609a233156b9"
EVAL_SEED = 20261204


@dataclass(frozen=True)
class ParaItem:
    id: str
    kind: str  # "kg" | "route" | "nonsense"
    lang: str
    split: str
    text: str
    route: str  # the gold route; "unsure" for nonsense
    families: tuple[str, ...]
    start: str = ""  # kg: start entity id
    mention: str = ""  # kg: how the start entity is written in the text
    path: tuple[str, ...] = ()
    answer: str = ""  # kg: answer entity id
    implicit: bool = False  # kg: the question skips a hop
    distractor: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hops(self) -> int:
        return len(self.path)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["families"], d["path"] = list(self.families), list(self.path)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParaItem:
        return cls(**{**d, "families": tuple(d["families"]), "path": tuple(d["path"])})


def entity_split(entity_id: str) -> str:
    """About 30 % of the entities of every type are evaluation-only (crc32 of the id)."""
    return "eval" if zlib.crc32(entity_id.encode("utf-8")) % 10 < 3 else "train"


def _pick(families: list[Family], split: str, resplit: int = RESPLIT) -> list[Family]:
    return [f for f in families if f.split_at(resplit) == split]


def _surface(e: Entity, lang: str, rng: random.Random) -> str:
    code = str(e.attrs.get("code", ""))
    if lang == "zh":
        options = [e.name_zh] + ([code] if code and e.type in ("machine", "sensor") else [])
    else:
        options = [e.name] + ([code] if code and e.type in ("machine", "sensor", "line") else [])
    return rng.choice(options)


def _tmpl(fam: Family, lang: str, rng: random.Random) -> str:
    return rng.choice(fam.en if lang == "en" else fam.zh)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def kg_items(
    graph: KnowledgeGraph, split: str, per_pattern: int, seed: int, resplit: int = RESPLIT
) -> list[ParaItem]:
    """Graph questions of ``split`` from the families as of re-split ``resplit``."""
    rng = random.Random(f"kg:{seed}:{split}")
    out: list[ParaItem] = []
    for p_idx, (start_type, path) in enumerate(PATTERNS):
        starts = sorted(
            e.id
            for e in graph.of_type(start_type)
            if entity_split(e.id) == split and len(graph.follow(e.id, path)) == 1
        )
        implicit = _pick(IMPLICIT_FAMILIES.get((start_type, path), []), split, resplit)
        for lang in LANGS:
            seen: set[str] = set()
            for k in range(per_pattern * 6):
                if len(seen) >= per_pattern or not starts:
                    break
                start = graph.entities[rng.choice(starts)]
                mention = _surface(start, lang, rng)
                used: list[str] = []
                is_implicit = bool(implicit) and rng.random() < 0.5
                if is_implicit:
                    fam = rng.choice(implicit)
                    used.append(fam.id)
                    text = _tmpl(fam, lang, rng).format(x=mention)
                else:
                    np_text = mention
                    for rel in path[:-1]:
                        fam = rng.choice(_pick(NP_FAMILIES[rel], split, resplit))
                        used.append(fam.id)
                        np_text = _tmpl(fam, lang, rng).format(x=np_text)
                    last = path[-1]
                    answer_type = graph.entities[graph.follow(start.id, path)[0]].type
                    if rng.random() < 0.5:
                        fam = rng.choice(_pick(Q_FAMILIES[last], split, resplit))
                        used.append(fam.id)
                        text = _tmpl(fam, lang, rng).format(x=np_text)
                    else:
                        fam = rng.choice(_pick(NP_FAMILIES[last], split, resplit))
                        frame = rng.choice(
                            _pick(FRAMES["person" if answer_type == "person" else "other"], split, resplit)
                        )
                        used += [fam.id, frame.id]
                        text = _tmpl(frame, lang, rng).format(np=_tmpl(fam, lang, rng).format(x=np_text))
                distracted = rng.random() < 0.3
                if distracted:
                    dis = rng.choice(_pick(DISTRACTORS, split, resplit))
                    used.append(dis.id)
                    text = _tmpl(dis, lang, rng).format(q=text)
                if lang == "en":
                    text = _cap(text)
                if text in seen:
                    continue
                seen.add(text)
                answer = graph.follow(start.id, path)[0]
                out.append(
                    ParaItem(
                        f"{split}-kg-{p_idx}-{lang}-{k}",
                        "kg",
                        lang,
                        split,
                        text,
                        "kg_query",
                        tuple(used),
                        start.id,
                        mention,
                        path,
                        answer,
                        is_implicit,
                        distracted,
                    )
                )
    return out


_MONTHS = {
    "en": ["January", "March", "May", "July", "September", "December"],
    "zh": ["一月", "三月", "五月", "七月", "九月", "十二月"],
}
_CITIES = {
    "en": ["Beijing", "Tokyo", "London", "Berlin", "Paris", "Shanghai", "Madrid", "Seoul"],
    "zh": ["北京", "东京", "伦敦", "柏林", "巴黎", "上海", "马德里", "首尔"],
}
_SLOT = re.compile(r"<(a|b|v|code|city|month)>")


def route_items(graph: KnowledgeGraph, split: str, per_template: int, seed: int) -> list[ParaItem]:
    rng = random.Random(f"route:{seed}:{split}")
    codes = sorted(str(e.attrs["code"]) for e in graph.of_type("machine") if entity_split(e.id) == split)
    out: list[ParaItem] = []
    for route, fams in ROUTE_FAMILIES.items():
        for fam in _pick(fams, split):
            for lang in LANGS:
                for t_idx, tmpl in enumerate(fam.en if lang == "en" else fam.zh):
                    seen: set[str] = set()
                    for k in range(per_template * 4):
                        if len(seen) >= per_template:
                            break
                        values = {
                            "a": str(rng.randint(2, 250)),
                            "b": str(rng.randint(2, 99)),
                            "v": str(rng.randint(1, 400)),
                            "code": rng.choice(codes),
                            "city": rng.choice(_CITIES[lang]),
                            "month": rng.choice(_MONTHS[lang]),
                        }
                        text = _SLOT.sub(lambda m: values[m.group(1)], tmpl)  # noqa: B023 - used at once
                        text = _cap(text) if lang == "en" else text
                        if text in seen:
                            continue
                        seen.add(text)
                        out.append(
                            ParaItem(
                                f"{split}-route-{fam.id}-{lang}-{t_idx}-{k}",
                                "route",
                                lang,
                                split,
                                text,
                                route,
                                (fam.id,),
                            )
                        )
    return out


_WRAP = {"en": ["{t}", "hey, {t}", "please, {t}", "{t} thanks"], "zh": ["{t}", "请问{t}", "{t}吧", "麻烦{t}"]}


def nonsense_items(split: str) -> list[ParaItem]:
    out: list[ParaItem] = []
    for fam in _pick(NONSENSE_FAMILIES, split):
        for lang in LANGS:
            for t_idx, tmpl in enumerate(fam.en if lang == "en" else fam.zh):
                for w_idx, wrap in enumerate(_WRAP[lang]):
                    out.append(
                        ParaItem(
                            f"{split}-nonsense-{fam.id}-{lang}-{t_idx}-{w_idx}",
                            "nonsense",
                            lang,
                            split,
                            wrap.format(t=tmpl),
                            UNSURE,
                            (fam.id,),
                        )
                    )
    return out


def build_split(
    split: str,
    *,
    graph: KnowledgeGraph | None = None,
    kg_per_pattern: int = 8,
    route_per_template: int = 3,
    seed: int = EVAL_SEED,
    resplit: int = RESPLIT,
) -> list[ParaItem]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    graph = graph or default_graph()
    return (
        kg_items(graph, split, kg_per_pattern, seed, resplit)
        + route_items(graph, split, route_per_template, seed)
        + nonsense_items(split)
    )


def train_items(
    seed: int = 0, kg_per_pattern: int = 24, route_per_template: int = 6, resplit: int = RESPLIT
) -> list[ParaItem]:
    """Training items (training families and entities only); any seed. ``resplit``: the
    training families as of that re-split (2: those of ``reasoning_eval_v2.jsonl``)."""
    return build_split(
        "train",
        kg_per_pattern=kg_per_pattern,
        route_per_template=route_per_template,
        seed=seed,
        resplit=resplit,
    )


def dumps(items: list[ParaItem]) -> str:
    return "".join(json.dumps(it.to_dict(), ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def load_frozen_eval(path: Path = FROZEN_EVAL) -> list[ParaItem]:
    """The frozen evaluation set (read-only: regenerate only by re-splitting)."""
    return [
        ParaItem.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line
    ]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    text = dumps(build_split("eval"))
    if "--freeze" in args:
        if FROZEN_EVAL.exists():
            print(f"{FROZEN_EVAL} exists: the evaluation set is frozen (re-split with new families instead)")
            return 1
        FROZEN_DIR.mkdir(parents=True, exist_ok=True)
        FROZEN_EVAL.write_text(text, encoding="utf-8")
    print(f"{len(text.splitlines())} evaluation items, sha256 {sha256_text(text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
