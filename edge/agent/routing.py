"""Encoding + routing of a request.

- :class:`ServiceEncoder` asks the edge :class:`~edge.serving.service.InferenceService` (the
  bundle's encoder and router head): one call gives the sentence embedding (memory, cache) and
  the route probabilities calibrated with the bundle's temperature.
- :class:`KeywordRouter` decides from the skill pack's own extractors; it stands in when no
  bundle is loaded and lets tests pin the route (dependency injection). Its "confidence" is a
  rule score, not a calibrated probability — steps say which router decided.
- :class:`HashingEncoder` gives deterministic character-n-gram embeddings with the keyword
  route, for nodes without a bundle and for tests that must not depend on a random model.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from contracts.errors import AutoGLMError
from contracts.routes import DEFAULT_ROUTES
from skillpack import calculator, climate, units
from skillpack.devices import ACTION_WORDS, READING_NAMES
from skillpack.kg.linking import EntityLinker


@dataclass(frozen=True)
class Encoded:
    embedding: np.ndarray  # float32, L2-normalised
    route: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    router: str  # "model" | "keyword"
    extra: dict[str, Any] = field(default_factory=dict)


class Encoder(Protocol):
    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]: ...


class ServiceEncoder:
    def __init__(self, service: Any) -> None:
        self.service = service

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]:
        results = await self.service.infer(texts, priority=priority)
        active = getattr(self.service.manager, "active", None)
        labels = list(getattr(active, "routes", []) or [])
        out = []
        for r in results:
            probs = r.probabilities
            names = labels if len(labels) == len(probs) else [str(i) for i in range(len(probs))]
            out.append(Encoded(np.asarray(r.embedding, dtype=np.float32), r.route, float(probs[r.route_index]),
                               {n: float(p) for n, p in zip(names, probs, strict=True)},
                               f"{r.model_name}:{r.model_version}/{r.adapter_set}", "model"))
        return out


_DEVICE_CODE = re.compile(r"(?<![A-Za-z])(?:PR|RB|CV|CP|OV|CH|CN)[\s_-]?\d{3}(?!\d)", re.IGNORECASE)
_RECALL = re.compile(r"what did i (?:just )?ask|what was my (?:last|previous) question|what did you (?:just )?(?:say|answer)|"
                     r"repeat (?:that|the last answer)|我刚才问|我上一个问题|你刚才说|刚才的答案|上一个答案", re.IGNORECASE)
_DOC = re.compile(r"\bhow (?:do|to|should)\b|procedure|alarm|\bsafety\b|\bppe\b|lockout|tagout|\bloto\b|calibrat|"
                  r"troubleshoot|what does .* mean|definition|\bdefine\b|\boee\b|mtbf|permit|spill|maintenance of|"
                  r"怎么|如何|程序|报警|安全|校准|定义|规定|故障", re.IGNORECASE)
_CHAT = re.compile(r"^\s*(?:hi|hello|hey|thanks|thank you|good (?:morning|evening|night)|who are you|你好|谢谢|您好|早上好|你是谁)\b",
                   re.IGNORECASE)
_WEATHER = re.compile(r"weather|climate|temperature in|rain|snow|hot|cold|warm|气候|天气|气温|降水|下雨|冷|热", re.IGNORECASE)
_STATUS_WORDS = re.compile(r"status|reading|running|alarm|state|how is|" + "|".join(
    w for _, en, zh in READING_NAMES.values() for w in (*en, *zh)), re.IGNORECASE)


class KeywordRouter:
    """Deterministic route from the skill extractors and keyword patterns."""

    def __init__(self, linker: EntityLinker | None = None) -> None:
        self.linker = linker

    def route(self, text: str) -> tuple[str, float]:
        low = text.lower()
        if _RECALL.search(text):
            return "memory_recall", 0.9
        if _DEVICE_CODE.search(text):
            control = any(re.search(rf"\b{re.escape(w)}\b", low) for w in ACTION_WORDS["start"][0] + ACTION_WORDS["stop"][0]
                          + ACTION_WORDS["set"][0]) or any(w in text for words in ACTION_WORDS.values() for w in words[1])
            if control:
                return "device_control", 0.9
            if _STATUS_WORDS.search(text) and not re.search(r"\bwho\b|谁|which line|哪条|supplier|供应", low):
                return "device_status", 0.85
        try:
            units.solve(text)
            return "unit_convert", 0.9
        except AutoGLMError:
            pass
        if climate.find_city_in_text(text) is not None and _WEATHER.search(text):
            return "climate", 0.9
        try:
            calculator.solve(text)
            return "calculator", 0.9
        except AutoGLMError:
            pass
        if self.linker is not None and [m for m in self.linker.link(text) if m.score >= 0.3]:
            return "kg_query", 0.85
        if _DOC.search(text):
            return "doc_search", 0.8
        if _CHAT.search(text):
            return "chitchat", 0.8
        return "chitchat", 0.3


_NON_WORD = re.compile(r"[^0-9a-z\u4e00-\u9fff%.]+")


def hashing_embedding(text: str, dim: int = 256) -> np.ndarray:
    """Character 3-gram hashing (crc32) → L2-normalised vector; deterministic across processes."""
    words = _NON_WORD.sub(" ", text.lower()).split()
    t = f"  {' '.join(words)}  "
    v = np.zeros(dim, dtype=np.float32)
    for i in range(len(t) - 2):
        v[zlib.crc32(t[i : i + 3].encode("utf-8")) % dim] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n else v


class HashingEncoder:
    def __init__(self, router: KeywordRouter, dim: int = 256, version: str = "hashing-encoder") -> None:
        self.router = router
        self.dim = dim
        self.version = version

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]:
        out = []
        for t in texts:
            route, conf = self.router.route(t)
            rest = (1.0 - conf) / max(len(DEFAULT_ROUTES) - 1, 1)
            probs = {r: (conf if r == route else rest) for r in DEFAULT_ROUTES}
            out.append(Encoded(hashing_embedding(t, self.dim), route, conf, probs, self.version, "keyword"))
        return out
