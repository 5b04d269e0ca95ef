"""What the learned hop scorer and the scope head see, defined once for trainer (cloud) and
runtime (edge): the relation vocabulary (output order), the entity-type vocabulary, the masked
question text, the relation descriptions the encoder embeds, and the character granularity
(hashed character n-grams; Chinese characters one by one and in pairs, because the bundled
MiniLM vocabulary holds only a few hundred CJK characters and hashes the rest)."""

from __future__ import annotations

import re
import zlib

import numpy as np

from skillpack.kg.schema import ENTITY_TYPES, RELATIONS

RELATION_NAMES: tuple[str, ...] = tuple(sorted(RELATIONS))
STOP_INDEX = len(RELATION_NAMES)  # last output column; also "no previous relation" in prev_relation
MAX_HOPS = 3
TYPE_NAMES: tuple[str, ...] = ENTITY_TYPES
CHAR_DIM = 512

# what the encoder embeds for each relation (EN + ZH); the learned scorer compares questions with these
RELATION_DESCRIPTIONS_ZH: dict[str, str] = {
    "located_on_line": "设备安装在哪条生产线上",
    "line_of_site": "生产线属于哪个工厂",
    "maintained_by": "负责设备维护保养的技术员",
    "operated_by": "操作设备的员工",
    "supervised_by": "某人或某条产线的主管上级",
    "supplied_by": "提供设备的供应商厂家",
    "sensor_of": "传感器安装在哪台设备上",
    "has_sensor": "设备上安装的传感器",
    "has_role": "某人的职位岗位",
    "maintenance_interval": "设备多久做一次预防性保养",
    "works_at": "某人在哪个工厂工作",
    "based_in": "供应商总部所在的国家",
    "managed_by": "工厂的负责人厂长",
}
STOP_DESCRIPTION = "the answer has been reached 已经得到答案"


def relation_descriptions() -> list[str]:
    """One text per output column (relations in :data:`RELATION_NAMES` order, then STOP)."""
    return [f"{RELATIONS[r].description}. {RELATION_DESCRIPTIONS_ZH[r]}" for r in RELATION_NAMES] + [
        STOP_DESCRIPTION
    ]


def masked_question(question: str, span: tuple[int, int], entity_type: str) -> str:
    """The topic entity replaced by its type word ("Who maintains machine?")."""
    return f"{question[: span[0]]}{entity_type}{question[span[1] :]}"


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z]+")


def char_grams(text: str, dim: int = CHAR_DIM, words: bool = True) -> np.ndarray:
    """Hashed character n-grams (crc32, deterministic across processes), L2-normalised:
    Chinese characters and character pairs, and (``words``) character 3-grams of English words."""
    v = np.zeros(dim, dtype=np.float32)
    low = text.lower()
    for run in _CJK.findall(low):
        for i, ch in enumerate(run):
            v[zlib.crc32(("c:" + ch).encode("utf-8")) % dim] += 1.0
            if i + 1 < len(run):
                v[zlib.crc32(("b:" + run[i : i + 2]).encode("utf-8")) % dim] += 1.0
    for word in _WORD.findall(low) if words else []:
        w = f"<{word}>"
        for i in range(max(len(w) - 2, 1)):
            v[zlib.crc32(("w:" + w[i : i + 3]).encode("utf-8")) % dim] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n else v


# --------------------------------------------------------------------------- relation paths
# The path scorer (schema ``autoglm.hop_scorer/3``) scores whole relation paths against the
# question. Its candidates are every path the *schema* allows from the start entity's type, up
# to MAX_HOPS relations (a relation followed at once by its inverse is no path), plus the empty
# path: "describe the entity". Each path is verbalised by nesting one noun phrase per relation,
# written from the relation's schema description (EN + ZH), never from a paraphrase family.
DESCRIBE = ()
INVERSES = {("has_sensor", "sensor_of"), ("sensor_of", "has_sensor")}
PATH_NP_EN: dict[str, str] = {
    "located_on_line": "the production line of {x}",
    "line_of_site": "the site that {x} belongs to",
    "maintained_by": "the maintenance technician of {x}",
    "operated_by": "the operator of {x}",
    "supervised_by": "the supervisor of {x}",
    "supplied_by": "the supplier of {x}",
    "sensor_of": "the machine that {x} is mounted on",
    "has_sensor": "the sensors of {x}",
    "has_role": "the job role of {x}",
    "maintenance_interval": "the maintenance interval of {x}",
    "works_at": "the site where {x} works",
    "based_in": "the country where {x} is based",
    "managed_by": "the manager of {x}",
}
PATH_NP_ZH: dict[str, str] = {
    "located_on_line": "{x}所在的生产线",
    "line_of_site": "{x}所属的工厂",
    "maintained_by": "{x}的维护技术员",
    "operated_by": "{x}的操作员",
    "supervised_by": "{x}的主管",
    "supplied_by": "{x}的供应商",
    "sensor_of": "{x}安装在的设备",
    "has_sensor": "{x}的传感器",
    "has_role": "{x}的职位",
    "maintenance_interval": "{x}的保养周期",
    "works_at": "{x}工作的工厂",
    "based_in": "{x}所在的国家",
    "managed_by": "{x}的负责人",
}
DESCRIBE_EN = "information about {x}"
DESCRIBE_ZH = "{x}的信息"


def schema_paths(start_type: str, max_hops: int = MAX_HOPS) -> list[tuple[str, ...]]:
    """Every relation path the schema allows from ``start_type`` (the empty path first)."""
    out: list[tuple[str, ...]] = [DESCRIBE]
    frontier: list[tuple[tuple[str, ...], str]] = [((), start_type)]
    for _ in range(max_hops):
        nxt: list[tuple[tuple[str, ...], str]] = []
        for path, etype in frontier:
            for r in RELATION_NAMES:
                if etype not in RELATIONS[r].head or (path and (path[-1], r) in INVERSES):
                    continue
                nxt.append(((*path, r), RELATIONS[r].tail))
        out.extend(p for p, _ in nxt)
        frontier = nxt
    return out


def all_schema_paths() -> list[tuple[str, tuple[str, ...]]]:
    """(start type, path) for every start type that has relations: the path scorer's output order."""
    return [
        (t, p) for t in TYPE_NAMES for p in schema_paths(t) if any(t in r.head for r in RELATIONS.values())
    ]


def path_texts(start_type: str, path: tuple[str, ...]) -> list[str]:
    """The path verbalised in English and Chinese, the start entity written as its type word."""
    en, zh = start_type, start_type
    if not path:
        return [DESCRIBE_EN.format(x=en), DESCRIBE_ZH.format(x=zh)]
    for r in path:
        en, zh = PATH_NP_EN[r].format(x=en), PATH_NP_ZH[r].format(x=zh)
    return [en, zh]


# --------------------------------------------------------------------------- phrase granularity
# A multi-hop question names each hop in its own phrase; one sentence embedding loses the outer
# ones ("the person the maintainer of X reports to" looks like "the maintainer of X"). The path
# scorer therefore also reads short windows of the question (4 units: English words, Chinese
# characters; stride 2), embedded by the same encoder in the same call as the question, and
# compares each window with a key phrase per relation.
WINDOW = 4
WINDOW_STRIDE = 2
MAX_WINDOWS = 10
_UNIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+")


def question_windows(text: str) -> list[str]:
    """Overlapping windows of the (masked) question, at most :data:`MAX_WINDOWS`."""
    units = _UNIT.findall(text)
    if len(units) <= WINDOW:
        return ["".join(_join(units))] if units else [text]
    starts = list(range(0, len(units) - WINDOW + 1, WINDOW_STRIDE))
    if starts[-1] != len(units) - WINDOW:
        starts.append(len(units) - WINDOW)
    if len(starts) > MAX_WINDOWS:  # evenly spaced, first and last kept
        starts = [starts[round(i * (len(starts) - 1) / (MAX_WINDOWS - 1))] for i in range(MAX_WINDOWS)]
    return ["".join(_join(units[s : s + WINDOW])) for s in starts]


def _join(units: list[str]) -> list[str]:
    out: list[str] = []
    for u in units:
        cjk = bool(_CJK.match(u))
        if out and not cjk and not _CJK.match(out[-1][-1]):
            out.append(" ")
        out.append(u)
    return out


def relation_key_phrases() -> list[str]:
    """Per relation (``RELATION_NAMES`` order) an English and a Chinese key phrase: the schema
    noun phrase about a pronoun."""
    return [t for r in RELATION_NAMES for t in (PATH_NP_EN[r].format(x="it"), PATH_NP_ZH[r].format(x="它"))]
