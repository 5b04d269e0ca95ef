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
    "located_on_line": "设备安装在哪条生产线上", "line_of_site": "生产线属于哪个工厂", "maintained_by": "负责设备维护保养的技术员",
    "operated_by": "操作设备的员工", "supervised_by": "某人或某条产线的主管上级", "supplied_by": "提供设备的供应商厂家",
    "sensor_of": "传感器安装在哪台设备上", "has_sensor": "设备上安装的传感器", "has_role": "某人的职位岗位",
    "maintenance_interval": "设备多久做一次预防性保养", "works_at": "某人在哪个工厂工作", "based_in": "供应商总部所在的国家",
    "managed_by": "工厂的负责人厂长",
}
STOP_DESCRIPTION = "the answer has been reached 已经得到答案"


def relation_descriptions() -> list[str]:
    """One text per output column (relations in :data:`RELATION_NAMES` order, then STOP)."""
    return [f"{RELATIONS[r].description}. {RELATION_DESCRIPTIONS_ZH[r]}" for r in RELATION_NAMES] + [STOP_DESCRIPTION]


def masked_question(question: str, span: tuple[int, int], entity_type: str) -> str:
    """The topic entity replaced by its type word ("Who maintains machine?")."""
    return f"{question[: span[0]]}{entity_type}{question[span[1] :]}"


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z]+")


def char_grams(text: str, dim: int = CHAR_DIM) -> np.ndarray:
    """Hashed character n-grams (crc32, deterministic across processes), L2-normalised:
    Chinese characters and character pairs, and character 3-grams of English words."""
    v = np.zeros(dim, dtype=np.float32)
    low = text.lower()
    for run in _CJK.findall(low):
        for i, ch in enumerate(run):
            v[zlib.crc32(("c:" + ch).encode("utf-8")) % dim] += 1.0
            if i + 1 < len(run):
                v[zlib.crc32(("b:" + run[i : i + 2]).encode("utf-8")) % dim] += 1.0
    for word in _WORD.findall(low):
        w = f"<{word}>"
        for i in range(max(len(w) - 2, 1)):
            v[zlib.crc32(("w:" + w[i : i + 3]).encode("utf-8")) % dim] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n else v
