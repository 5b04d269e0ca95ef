"""The plant knowledge graph: shipped data (``plant_graph.json``, generated deterministically by
``skillpack.kg.generate``), entity linking, query functions, multi-hop path reasoning and the
question generator for the hop scorer."""

from __future__ import annotations

from skillpack.kg.graph import Entity, KnowledgeGraph, default_graph
from skillpack.kg.linking import EntityLinker, Mention
from skillpack.kg.reasoner import KGAnswer, LexicalHopScorer, PathReasoner, solve

__all__ = [
    "Entity",
    "EntityLinker",
    "KGAnswer",
    "KnowledgeGraph",
    "LexicalHopScorer",
    "Mention",
    "PathReasoner",
    "default_graph",
    "solve",
]
