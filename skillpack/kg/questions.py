"""Generator of 1-, 2- and 3-hop questions over the plant graph, in English and Chinese, with
gold answers and gold relation paths — training data for the hop scorer and the evaluation set
of the reasoning benchmark.

Phrasings are composed from per-relation noun-phrase templates nested inside a question frame
("Who is the supervisor of the technician who maintains PR-111?", "PR-111的维护人员的主管是谁？").
Every template has an id; the LAST template of each relation and of each frame list is held out:
``split="eval"`` questions use only held-out templates and ``split="train"`` questions only the
others, so evaluation phrasings are never seen in training. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from skillpack.kg.graph import Entity, KnowledgeGraph

# relation -> (EN noun phrases, ZH noun phrases); the last of each list is eval-only
NP_TEMPLATES: dict[str, tuple[list[str], list[str]]] = {
    "located_on_line": (
        [
            "the line that {x} is on",
            "the production line of {x}",
            "the line where {x} is installed",
            "the manufacturing line {x} belongs to",
        ],
        ["{x}所在的产线", "{x}所属的生产线", "安装{x}的产线", "{x}所在的那条线"],
    ),
    "line_of_site": (
        [
            "the site of {x}",
            "the plant that {x} belongs to",
            "the factory where {x} is located",
            "the facility that houses {x}",
        ],
        ["{x}所属的工厂", "{x}所在的厂区", "{x}隶属的工厂", "{x}所在的基地"],
    ),
    "maintained_by": (
        [
            "the technician who maintains {x}",
            "the person responsible for maintaining {x}",
            "the maintainer of {x}",
            "the engineer who services {x}",
        ],
        ["{x}的维护人员", "负责维护{x}的人", "{x}的保养负责人", "检修{x}的技术员"],
    ),
    "operated_by": (
        [
            "the operator of {x}",
            "the person who operates {x}",
            "the worker operating {x}",
            "whoever runs {x}",
        ],
        ["{x}的操作员", "操作{x}的人", "负责操作{x}的员工", "{x}的操作工"],
    ),
    "supervised_by": (
        [
            "the supervisor of {x}",
            "the person who supervises {x}",
            "the boss of {x}",
            "the person in charge of {x}",
        ],
        ["{x}的主管", "{x}的上级", "{x}的直属主管", "{x}的领导"],
    ),
    "supplied_by": (
        [
            "the supplier of {x}",
            "the vendor that supplied {x}",
            "the company that supplied {x}",
            "the manufacturer of {x}",
        ],
        ["{x}的供应商", "{x}的生产厂家", "提供{x}的供应商", "{x}的制造商"],
    ),
    "sensor_of": (
        [
            "the machine that {x} is mounted on",
            "the equipment fitted with {x}",
            "the machine carrying {x}",
            "the machine {x} is attached to",
        ],
        ["{x}所在的设备", "安装了{x}的机器", "{x}装在的设备", "配有{x}的机台"],
    ),
    "has_role": (
        ["the role of {x}", "the job title of {x}", "the position of {x}", "the job {x} holds"],
        ["{x}的职位", "{x}的岗位", "{x}的角色", "{x}担任的职务"],
    ),
    "maintenance_interval": (
        [
            "the maintenance interval of {x}",
            "the service schedule for {x}",
            "the maintenance frequency of {x}",
            "how frequently {x} is serviced",
        ],
        ["{x}的保养周期", "{x}的维护频率", "{x}的保养频次", "{x}的检修间隔"],
    ),
    "works_at": (
        [
            "the site where {x} works",
            "the plant {x} works at",
            "the workplace of {x}",
            "the facility employing {x}",
        ],
        ["{x}工作的工厂", "{x}上班的厂区", "{x}任职的工厂", "{x}的工作地点"],
    ),
    "based_in": (
        [
            "the country where {x} is based",
            "the home country of {x}",
            "the country {x} comes from",
            "the nation {x} is headquartered in",
        ],
        ["{x}所在的国家", "{x}的总部所在国家", "{x}来自的国家", "{x}的所属国家"],
    ),
    "managed_by": (
        [
            "the manager of {x}",
            "the person who manages {x}",
            "the head of {x}",
            "the director in charge of {x}",
        ],
        ["{x}的厂长", "{x}的经理", "管理{x}的人", "{x}的负责人"],
    ),
}
FRAMES: dict[str, tuple[list[str], list[str]]] = {
    "person": (
        ["Who is {np}?", "Tell me {np}.", "Name {np}.", "Do you know who {np} is?"],
        ["{np}是谁？", "请问{np}是哪位？", "告诉我{np}。", "你知道{np}是谁吗？"],
    ),
    "other": (
        ["What is {np}?", "Tell me {np}.", "Which is {np}?", "Can you look up {np}?"],
        ["{np}是什么？", "告诉我{np}。", "{np}是哪个？", "帮我查一下{np}。"],
    ),
}
# (start entity type, relation path)
PATTERNS: list[tuple[str, tuple[str, ...]]] = [
    # 1 hop
    ("machine", ("located_on_line",)),
    ("line", ("line_of_site",)),
    ("machine", ("maintained_by",)),
    ("machine", ("operated_by",)),
    ("line", ("supervised_by",)),
    ("person", ("supervised_by",)),
    ("machine", ("supplied_by",)),
    ("sensor", ("sensor_of",)),
    ("person", ("has_role",)),
    ("machine", ("maintenance_interval",)),
    ("person", ("works_at",)),
    ("supplier", ("based_in",)),
    ("site", ("managed_by",)),
    # 2 hops
    ("machine", ("located_on_line", "line_of_site")),
    ("machine", ("located_on_line", "supervised_by")),
    ("machine", ("maintained_by", "supervised_by")),
    ("machine", ("operated_by", "supervised_by")),
    ("machine", ("supplied_by", "based_in")),
    ("sensor", ("sensor_of", "located_on_line")),
    ("sensor", ("sensor_of", "maintained_by")),
    ("sensor", ("sensor_of", "supplied_by")),
    ("sensor", ("sensor_of", "maintenance_interval")),
    ("line", ("line_of_site", "managed_by")),
    ("person", ("supervised_by", "has_role")),
    ("person", ("works_at", "managed_by")),
    ("line", ("supervised_by", "supervised_by")),
    # 3 hops
    ("sensor", ("sensor_of", "located_on_line", "line_of_site")),
    ("sensor", ("sensor_of", "located_on_line", "supervised_by")),
    ("sensor", ("sensor_of", "maintained_by", "supervised_by")),
    ("sensor", ("sensor_of", "supplied_by", "based_in")),
    ("machine", ("located_on_line", "line_of_site", "managed_by")),
    ("machine", ("maintained_by", "supervised_by", "has_role")),
    ("machine", ("operated_by", "supervised_by", "supervised_by")),
    ("sensor", ("sensor_of", "operated_by", "supervised_by")),
]
SPLITS = ("train", "eval")
LANGS = ("en", "zh")


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    lang: str
    split: str
    start: str  # entity id
    mention: str  # how the start entity is written in the text
    path: tuple[str, ...]
    answer: str  # entity id
    answer_name: str
    templates: tuple[str, ...]  # template ids used (np:<rel>:<i>, frame:<kind>:<lang>:<i>)

    @property
    def hops(self) -> int:
        return len(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "qid": self.qid,
            "text": self.text,
            "lang": self.lang,
            "split": self.split,
            "start": self.start,
            "mention": self.mention,
            "path": list(self.path),
            "answer": self.answer,
            "answer_name": self.answer_name,
            "hops": self.hops,
            "templates": list(self.templates),
        }


def _template_ids(n: int, split: str) -> list[int]:
    return [n - 1] if split == "eval" else list(range(n - 1))


def _surface(e: Entity, lang: str, rng: random.Random) -> str:
    code = str(e.attrs.get("code", ""))
    if lang == "zh":
        options = [e.name_zh] + ([code] if code and e.type in ("machine", "sensor") else [])
    else:
        options = [e.name] + ([code] if code else [])
    return rng.choice(options)


def generate_questions(
    graph: KnowledgeGraph, split: str, per_pattern: int = 8, seed: int = 7, langs: tuple[str, ...] = LANGS
) -> list[Question]:
    """``per_pattern`` questions per (pattern, language). Deterministic for a given seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    rng = random.Random(f"{seed}:{split}")
    out: list[Question] = []
    for p_idx, (start_type, path) in enumerate(PATTERNS):
        starts = sorted(e.id for e in graph.of_type(start_type) if len(graph.follow(e.id, path)) == 1)
        if not starts:
            continue
        for lang in langs:
            li = 0 if lang == "en" else 1
            seen: set[str] = set()
            for k in range(per_pattern * 4):
                if len(seen) >= per_pattern:
                    break
                start = graph.entities[rng.choice(starts)]
                mention = _surface(start, lang, rng)
                np_text = mention
                used: list[str] = []
                for rel in path:
                    options = NP_TEMPLATES[rel][li]
                    t = rng.choice(_template_ids(len(options), split))
                    used.append(f"np:{rel}:{lang}:{t}")
                    np_text = options[t].format(x=np_text)
                answer = graph.entities[graph.follow(start.id, path)[0]]
                kind = "person" if answer.type == "person" else "other"
                frames = FRAMES[kind][li]
                f = rng.choice(_template_ids(len(frames), split))
                used.append(f"frame:{kind}:{lang}:{f}")
                text = frames[f].format(np=np_text)
                if lang == "en":
                    text = text[0].upper() + text[1:]
                if text in seen:
                    continue
                seen.add(text)
                out.append(
                    Question(
                        f"{split}-{p_idx}-{lang}-{k}",
                        text,
                        lang,
                        split,
                        start.id,
                        mention,
                        path,
                        answer.id,
                        answer.label(lang == "zh"),
                        tuple(used),
                    )
                )
    return out
