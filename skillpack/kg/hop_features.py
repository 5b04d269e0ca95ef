"""What the learned hop scorer sees, defined once for trainer (cloud) and runtime (edge): the
relation vocabulary (output order), the entity-type vocabulary and the masked question text."""

from __future__ import annotations

from skillpack.kg.schema import ENTITY_TYPES, RELATIONS

RELATION_NAMES: tuple[str, ...] = tuple(sorted(RELATIONS))
STOP_INDEX = len(RELATION_NAMES)  # last output column; also "no previous relation" in prev_relation
MAX_HOPS = 3
TYPE_NAMES: tuple[str, ...] = ENTITY_TYPES


def masked_question(question: str, span: tuple[int, int], entity_type: str) -> str:
    """The topic entity replaced by its type word ("Who maintains machine?")."""
    return f"{question[: span[0]]}{entity_type}{question[span[1] :]}"
