"""Search over the shipped document collection (``skillpack/docs/*.md``): BM25 over words (EN)
and character bigrams (ZH), optionally fused with embedding cosine similarity from an
``embed`` callable the caller supplies (the edge passes its ONNX encoder, the cloud its
PyTorch one) by reciprocal-rank fusion.

``search(query, k=3, embed=None) -> list[DocHit]``; each hit carries the document, its score and
a snippet. An empty query is a :class:`SkillError` (400).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from skillpack.errors import SkillError

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    lang: str
    tags: tuple[str, ...]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "lang": self.lang,
            "tags": list(self.tags),
            "text": self.text,
        }


@dataclass(frozen=True)
class DocHit:
    doc: Document
    score: float
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.doc.id,
            "title": self.doc.title,
            "lang": self.doc.lang,
            "score": round(self.score, 4),
            "snippet": self.snippet,
        }


def _parse(name: str, raw: str) -> Document:
    m = re.match(r"---\n(.*?)\n---\n(.*)", raw, re.S)
    if not m:
        raise ValueError(f"{name}: missing front matter")
    meta: dict[str, str] = {}
    for line in m.group(1).splitlines():
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    tags = tuple(t.strip() for t in meta.get("tags", "").strip("[]").split(",") if t.strip())
    return Document(meta["id"], meta["title"], meta.get("lang", "en"), tags, m.group(2).strip())


@lru_cache(maxsize=1)
def load_documents() -> tuple[Document, ...]:
    root = resources.files("skillpack").joinpath("docs")
    docs = [_parse(p.name, p.read_text(encoding="utf-8")) for p in root.iterdir() if p.name.endswith(".md")]
    return tuple(sorted(docs, key=lambda d: d.id))


_STOP = {
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "for",
    "is",
    "are",
    "and",
    "or",
    "what",
    "how",
    "do",
    "i",
    "we",
    "it",
    "be",
    "with",
    "at",
    "by",
    "my",
    "our",
    "does",
    "should",
    "when",
    "which",
    "that",
    "this",
    "can",
    "about",
    "from",
    "tell",
    "me",
    "please",
    "you",
    "there",
    "any",
    "if",
    "as",
    "than",
    "not",
    "no",
}


def _stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def tokens(text: str) -> list[str]:
    low = text.lower()
    out = [_stem(w) for w in re.findall(r"[a-z]+\d*|\d+(?:\.\d+)?", low) if w not in _STOP]
    for run in re.findall(r"[\u4e00-\u9fff]+", low):
        out.extend(run)  # unigrams
        out.extend(run[i : i + 2] for i in range(len(run) - 1))  # bigrams
    return out


class DocIndex:
    """BM25 (k1=1.5, b=0.75) over title + tags + text, with optional embedding fusion."""

    def __init__(self, docs: Sequence[Document], embed: Embed | None = None) -> None:
        if not docs:
            raise ValueError("empty document collection")
        self.docs = list(docs)
        self._tf = [Counter(tokens(f"{d.title} {d.title} {' '.join(d.tags)} {d.text}")) for d in self.docs]
        self._len = np.array([sum(tf.values()) for tf in self._tf], dtype=np.float64)
        self._avg = float(self._len.mean())
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(self.docs)
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.embed = embed
        self._emb: np.ndarray | None = None

    def _doc_embeddings(self) -> np.ndarray:
        if self._emb is None:
            assert self.embed is not None
            emb = np.asarray(self.embed([f"{d.title}. {d.text[:400]}" for d in self.docs]), dtype=np.float32)
            self._emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        return self._emb

    def bm25(self, query: str) -> np.ndarray:
        q = tokens(query)
        scores = np.zeros(len(self.docs))
        for i, tf in enumerate(self._tf):
            s = 0.0
            for t in q:
                f = tf.get(t, 0)
                if f:
                    s += self._idf[t] * f * 2.5 / (f + 1.5 * (0.25 + 0.75 * self._len[i] / self._avg))
            scores[i] = s
        return scores

    def search(self, query: str, k: int = 3, lang: str | None = None) -> list[DocHit]:
        if not query or not query.strip():
            raise SkillError("empty search query")
        if k < 1:
            raise SkillError("k must be at least 1")
        lexical = self.bm25(query)
        if self.embed is not None:
            qv = np.asarray(self.embed([query]), dtype=np.float32)[0]
            qv = qv / max(float(np.linalg.norm(qv)), 1e-9)
            dense = self._doc_embeddings() @ qv
            # reciprocal-rank fusion of the two rankings
            # (documents without any lexical match take part in the dense ranking only)
            fused = np.zeros(len(self.docs))
            lexical_ranking = [i for i in np.argsort(-lexical, kind="stable") if lexical[i] > 0]
            for ranking in (lexical_ranking, list(np.argsort(-dense, kind="stable"))):
                for rank, i in enumerate(ranking):
                    fused[i] += 1.0 / (60 + rank)
            scores = fused
        else:
            scores = lexical
        order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]
        if lang:
            order = [i for i in order if self.docs[i].lang == lang] + [
                i for i in order if self.docs[i].lang != lang
            ]
        return [DocHit(self.docs[i], float(scores[i]), _snippet(self.docs[i].text, query)) for i in order[:k]]


def _snippet(text: str, query: str, width: int = 220) -> str:
    sentences = re.split(r"(?<=[.。；;])\s*", text)
    q = set(tokens(query))
    best = max(sentences, key=lambda s: len(q & set(tokens(s))))
    return best if len(best) <= width else best[: width - 1] + "…"


@lru_cache(maxsize=1)
def default_index() -> DocIndex:
    return DocIndex(load_documents())


def search(query: str, k: int = 3, embed: Embed | None = None, lang: str | None = None) -> list[DocHit]:
    """Search the shipped collection (lexical only unless ``embed`` is given)."""
    index = default_index() if embed is None else DocIndex(load_documents(), embed)
    return index.search(query, k, lang)
