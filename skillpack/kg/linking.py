"""Entity linking: find knowledge-graph entities mentioned in a question by name, alias, code
pattern (``PR-111``, ``pr111``, ``line 3``, ``3号线``) and — when an ``embed`` callable is
supplied — by embedding similarity of the question's word n-grams to entity names."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from skillpack.kg.graph import KnowledgeGraph
from skillpack.text import DIGIT_WORDS, to_ascii

Embed = Callable[[list[str]], np.ndarray]
_CODE_RE = re.compile(r"(?<![A-Za-z])([A-Za-z]{2})[\s_-]?(\d{3,4})(?!\d)")
# line numbers said as a word: text.py's one-digit words without zero (there is no line 0)
_NUM_WORDS = {w: n for w, n in DIGIT_WORDS.items() if n > 0}
_EN_NUM = "|".join(w for w in _NUM_WORDS if w.isascii())
_ZH_NUM = "".join(w for w in _NUM_WORDS if not w.isascii())
_LINE_EN = re.compile(rf"\bline\s*(?:no\.?\s*|number\s*|#\s*)?(\d|{_EN_NUM})\b", re.IGNORECASE)
_LINE_ZH = re.compile(rf"(\d|[{_ZH_NUM}])\s*号(?:产|生产)?线|(\d)\s*(?:产|生产)?线")


@dataclass(frozen=True)
class Mention:
    entity_id: str
    start: int
    end: int
    surface: str
    score: float
    method: str  # alias | code | line_number | embedding

    def to_dict(self) -> dict[str, object]:
        return {
            "entity_id": self.entity_id,
            "surface": self.surface,
            "score": round(self.score, 4),
            "method": self.method,
            "span": [self.start, self.end],
        }


class EntityLinker:
    def __init__(
        self, graph: KnowledgeGraph, embed: Embed | None = None, embed_threshold: float = 0.82
    ) -> None:
        self.graph = graph
        self.embed = embed
        self.embed_threshold = embed_threshold
        self._aliases: list[tuple[str, str]] = []
        for e in graph.entities.values():
            names = {e.name, e.name_zh, *e.aliases}
            if e.type == "person":
                names |= {n.replace("ü", "ue") for n in names}
            for n in names:
                if len(n) >= 2:
                    self._aliases.append((n.lower(), e.id))
        self._aliases.sort(key=lambda a: len(a[0]), reverse=True)
        self._codes = {
            str(e.attrs["code"]).upper(): e.id for e in graph.entities.values() if "code" in e.attrs
        }
        self._name_emb: np.ndarray | None = None
        self._name_ids: list[str] = []

    def link(self, text: str, context_site: str | None = None) -> list[Mention]:
        """Mentions in text order. ``context_site`` (an entity id) resolves "line 3" when the text
        names no site; without it the first site in the graph is not guessed — all candidates
        come back and the caller asks."""
        norm = to_ascii(text)  # spans index this text (numerals are read by the patterns)
        low = norm.lower()
        taken = [False] * len(low)
        found: list[Mention] = []

        def take(i: int, j: int) -> bool:
            if any(taken[i:j]):
                return False
            for k in range(i, j):
                taken[k] = True
            return True

        for alias, eid in self._aliases:
            start = 0
            while (i := low.find(alias, start)) >= 0:
                start = i + 1
                j = i + len(alias)
                if alias.isascii():
                    before = low[i - 1] if i else " "
                    after = low[j] if j < len(low) else " "
                    if (before.isascii() and before.isalnum()) or (after.isascii() and after.isalnum()):
                        continue
                if take(i, j):
                    found.append(Mention(eid, i, j, norm[i:j], 1.0, "alias"))
        for m in _CODE_RE.finditer(norm):
            code = f"{m.group(1).upper()}-{m.group(2)}"
            if code in self._codes and take(m.start(), m.end()):
                found.append(Mention(self._codes[code], m.start(), m.end(), m.group(0), 1.0, "code"))
        site = context_site
        for mention in found:
            ent = self.graph.entities[mention.entity_id]
            if ent.type == "site":
                site = ent.id
                break
            if ent.type in ("line", "machine", "person", "sensor") and site is None:
                site = self.site_of(ent.id)
        for rx in (_LINE_EN, _LINE_ZH):
            for m in rx.finditer(norm):
                if any(taken[m.start() : m.end()]):
                    continue
                raw = next(g for g in m.groups() if g)
                number = int(raw) if raw.isdigit() else _NUM_WORDS[raw.lower()]
                lines = [e for e in self.graph.of_type("line") if e.attrs.get("number") == number]
                if site is not None:
                    lines = [e for e in lines if self.graph.neighbors(e.id, "line_of_site") == [site]]
                if lines and take(m.start(), m.end()):
                    score = 1.0 if len(lines) == 1 else 1.0 / len(lines)
                    found.extend(
                        Mention(e.id, m.start(), m.end(), m.group(0), score, "line_number") for e in lines
                    )
        if not found and self.embed is not None:
            found.extend(self._embedding_mentions(norm))
        return sorted(found, key=lambda m: (m.start, -m.score))

    def site_of(self, eid: str) -> str | None:
        ent = self.graph.entities[eid]
        path = {
            "line": ["line_of_site"],
            "machine": ["located_on_line", "line_of_site"],
            "person": ["works_at"],
            "sensor": ["sensor_of", "located_on_line", "line_of_site"],
        }.get(ent.type)
        if path is None:
            return None
        sites = self.graph.follow(eid, path)
        return sites[0] if sites else None

    def _embedding_mentions(self, text: str) -> list[Mention]:
        assert self.embed is not None
        if self._name_emb is None:
            ents = list(self.graph.entities.values())
            self._name_ids = [e.id for e in ents]
            emb = np.asarray(self.embed([e.name for e in ents]), dtype=np.float32)
            self._name_emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        words = re.findall(r"[\w'-]+", text)
        spans: list[str] = []
        for n in (3, 2, 1):
            spans.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        spans = [s for s in dict.fromkeys(spans) if len(s) >= 3][:64]
        if not spans:
            return []
        q = np.asarray(self.embed(spans), dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)
        sims = q @ self._name_emb.T
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        score = float(sims[i, j])
        if score < self.embed_threshold:
            return []
        start = max(text.find(spans[i]), 0)
        return [Mention(self._name_ids[j], start, start + len(spans[i]), spans[i], score, "embedding")]
