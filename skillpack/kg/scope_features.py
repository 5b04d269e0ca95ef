"""Text features of the scope gate ``autoglm.scope_head/3`` (numpy + the skill pack only, so the
cloud trainer and the edge compute the same numbers from the same text).

- ``keyword``: the keyword router's confidence (the caller's callable: the edge's
  ``KeywordRouter.route(text)[1]``; the cloud wing cannot import it);
- ``link``: 1 if the entity linker (names, aliases, codes, line numbers; no embedding linking)
  finds a mention with score ≥ 0.3; ``code``: 1 if the text holds an equipment-code-like token
  (two letters, optional separator, 3–4 digits), known to the graph or not;
- ``en_vocab``: share of the English words (``[a-z]+`` runs of the NFKC-folded, lower-cased text)
  that are whole tokens of the encoder's WordPiece vocabulary (1 when there are none);
  ``cjk_vocab``: share of the CJK ideographs that are in it (1 when none);
- ``length``: log(1 + English words + CJK ideographs).

The features computed from the embedding (bank and route-centroid cosines) live in the ONNX graph.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from skillpack.kg.linking import EntityLinker

TEXT_FEATURES = ("keyword", "link", "code", "en_vocab", "cjk_vocab", "length")
EMBEDDING_FEATURES = ("top1", "top5", "centroid")
_WORD = re.compile(r"[a-z]+")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CODE_LIKE = re.compile(r"(?<![A-Za-z])[A-Za-z]{2}[\s_-]?\d{3,4}(?!\d)")
LINK_MIN_SCORE = 0.3


@dataclass
class Vocabulary:
    """The encoder vocabulary's whole English words and single CJK ideographs."""

    words: frozenset[str] = field(default_factory=frozenset)
    cjk: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_tokens(cls, tokens: list[str] | set[str] | dict[str, int]) -> Vocabulary:
        return cls(
            frozenset(t for t in tokens if _WORD.fullmatch(t)),
            frozenset(t for t in tokens if len(t) == 1 and _CJK.fullmatch(t)),
        )

    def to_meta(self) -> dict[str, str]:
        return {"en": "\n".join(sorted(self.words)), "cjk": "".join(sorted(self.cjk))}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Vocabulary:
        return cls(frozenset(w for w in meta.get("en", "").split("\n") if w), frozenset(meta.get("cjk", "")))


class TextFeatures:
    """``__call__(text)`` → float32 vector of the named text features, in ``names`` order."""

    def __init__(
        self,
        names: list[str] | tuple[str, ...],
        keyword: Callable[[str], float] | None = None,
        vocabulary: Vocabulary | None = None,
        linker: EntityLinker | None = None,
    ) -> None:
        unknown = set(names) - set(TEXT_FEATURES)
        if unknown:
            raise ValueError(f"unknown scope-gate text features {sorted(unknown)}")
        if "keyword" in names and keyword is None:
            raise ValueError("the keyword feature needs the keyword router's confidence")
        self.names = list(names)
        self.keyword = keyword
        self.vocabulary = vocabulary or Vocabulary()
        if "link" in names and linker is None:
            from skillpack.kg.graph import default_graph

            linker = EntityLinker(default_graph())
        self.linker = linker

    def __call__(self, text: str) -> np.ndarray:
        folded = unicodedata.normalize("NFKC", text)
        words = _WORD.findall(folded.lower())
        cjk = _CJK.findall(folded)
        out = []
        for name in self.names:
            if name == "keyword":
                assert self.keyword is not None
                out.append(float(self.keyword(text)))
            elif name == "link":
                assert self.linker is not None
                out.append(float(any(m.score >= LINK_MIN_SCORE for m in self.linker.link(text))))
            elif name == "code":
                out.append(float(_CODE_LIKE.search(folded) is not None))
            elif name == "en_vocab":
                out.append(sum(w in self.vocabulary.words for w in words) / len(words) if words else 1.0)
            elif name == "cjk_vocab":
                out.append(sum(c in self.vocabulary.cjk for c in cjk) / len(cjk) if cjk else 1.0)
            else:  # length
                out.append(math.log1p(len(words) + len(cjk)))
        return np.asarray(out, dtype=np.float32)

    def many(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.names)), dtype=np.float32)
        return np.stack([self(t) for t in texts])
