"""The plant knowledge graph: typed entities with EN/ZH names and aliases, typed relations,
and query functions. Loaded from the shipped ``plant_graph.json`` (or any file of the same
schema, e.g. one synced from the cloud)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from skillpack.errors import SkillError, UnknownEntity
from skillpack.kg.schema import RELATIONS

SHIPPED_GRAPH = Path(__file__).with_name("plant_graph.json")


@dataclass(frozen=True)
class Entity:
    id: str
    type: str
    name: str
    name_zh: str
    aliases: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def label(self, zh: bool = False) -> str:
        return self.name_zh if zh else self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "name_zh": self.name_zh,
            "aliases": list(self.aliases),
            "attrs": dict(self.attrs),
        }


class KnowledgeGraph:
    def __init__(
        self, entities: list[Entity], triples: list[tuple[str, str, str]], *, version: str = ""
    ) -> None:
        self.entities: dict[str, Entity] = {}
        for e in entities:
            if e.id in self.entities:
                raise ValueError(f"duplicate entity id {e.id}")
            self.entities[e.id] = e
        self._out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self._in: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.triples: list[tuple[str, str, str]] = []
        for h, r, t in triples:
            if h not in self.entities or t not in self.entities:
                raise ValueError(f"triple ({h}, {r}, {t}) names an unknown entity")
            if r not in RELATIONS:
                raise ValueError(f"triple ({h}, {r}, {t}) has an unknown relation")
            self._out[h][r].append(t)
            self._in[t][r].append(h)
            self.triples.append((h, r, t))
        self.version = version

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> KnowledgeGraph:
        ents = [
            Entity(
                e["id"],
                e["type"],
                e["name"],
                e["name_zh"],
                tuple(e.get("aliases", ())),
                dict(e.get("attrs", {})),
            )
            for e in doc["entities"]
        ]
        return cls(
            ents, [tuple(t) for t in doc["triples"]], version=f"{doc.get('schema', '')}@{doc.get('seed', '')}"
        )  # type: ignore[misc]

    @classmethod
    def load(cls, path: Path | str | None = None) -> KnowledgeGraph:
        p = Path(path) if path else SHIPPED_GRAPH
        return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))

    # ------------------------------------------------------------------ queries
    def get(self, entity_id: str) -> Entity:
        try:
            return self.entities[entity_id]
        except KeyError:
            raise UnknownEntity(f"no entity {entity_id!r} in the knowledge graph") from None

    def of_type(self, etype: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.type == etype]

    def relations_from(self, entity_id: str) -> list[str]:
        """Relation types that leave this entity (its candidate next hops)."""
        return sorted(self._out.get(entity_id, {}).keys())

    def neighbors(self, entity_id: str, relation: str) -> list[str]:
        if relation not in RELATIONS:
            raise SkillError(f"unknown relation {relation!r}; known: {', '.join(sorted(RELATIONS))}")
        return list(self._out.get(entity_id, {}).get(relation, []))

    def incoming(self, entity_id: str, relation: str) -> list[str]:
        return list(self._in.get(entity_id, {}).get(relation, []))

    def follow(self, entity_id: str, path: list[str] | tuple[str, ...]) -> list[str]:
        """All entities reached from ``entity_id`` along the relation path (set semantics, ordered)."""
        frontier = [self.get(entity_id).id]
        for relation in path:
            nxt: list[str] = []
            for e in frontier:
                for t in self.neighbors(e, relation):
                    if t not in nxt:
                        nxt.append(t)
            frontier = nxt
        return frontier

    def query(self, entity: str, path: list[str] | tuple[str, ...]) -> list[Entity]:
        """Structured query: ``entity`` is an id or a name/alias; returns the entities at the end."""
        eid = entity if entity in self.entities else self.find(entity).id
        return [self.entities[t] for t in self.follow(eid, path)]

    def find(self, name: str) -> Entity:
        """Exact (case-insensitive) name/alias lookup."""
        hits = self._name_index().get(name.strip().lower())
        if not hits:
            raise UnknownEntity(f"no entity named {name!r} in the knowledge graph")
        return self.entities[hits[0]]

    @lru_cache(maxsize=1)  # noqa: B019 - one graph object lives for the process
    def _name_index(self) -> dict[str, list[str]]:
        idx: dict[str, list[str]] = defaultdict(list)
        for e in self.entities.values():
            for n in (e.name, e.name_zh, *e.aliases):
                idx[n.lower()].append(e.id)
        return dict(idx)

    def describe(self, entity_id: str, zh: bool = False) -> dict[str, Any]:
        e = self.get(entity_id)
        facts = {
            r: [self.entities[t].label(zh) for t in ts] for r, ts in self._out.get(entity_id, {}).items()
        }
        return {**e.to_dict(), "facts": facts}

    def stats(self) -> dict[str, Any]:
        by_type: dict[str, int] = defaultdict(int)
        for e in self.entities.values():
            by_type[e.type] += 1
        by_rel: dict[str, int] = defaultdict(int)
        for _, r, _ in self.triples:
            by_rel[r] += 1
        return {
            "entities": len(self.entities),
            "triples": len(self.triples),
            "by_type": dict(by_type),
            "by_relation": dict(by_rel),
            "version": self.version,
        }


@lru_cache(maxsize=1)
def default_graph() -> KnowledgeGraph:
    """The shipped plant graph (cached)."""
    return KnowledgeGraph.load()
