from __future__ import annotations

import numpy as np
import pytest

from skillpack import docsearch
from skillpack.errors import SkillError


def test_collection_is_shipped_and_well_formed() -> None:
    docs = docsearch.load_documents()
    assert len(docs) >= 30
    assert len({d.id for d in docs}) == len(docs)
    assert sum(d.lang == "zh" for d in docs) >= 4
    assert all(d.title and d.text and d.tags for d in docs)


@pytest.mark.parametrize(
    ("query", "doc_id"),
    [
        ("how do I calibrate the oven", "oven-calibration"),
        ("what does alarm P201 mean", "alarm-p201"),
        ("烘箱校准多久一次", "oven-calibration-zh"),
        ("上锁挂牌", "loto-zh"),
        ("hydraulic oil change interval", "press-oil-change"),
        ("light curtain keeps tripping", "alarm-s601"),
        ("conveyor jammed", "alarm-c301"),
        ("what is OEE", "def-oee"),
    ],
)
def test_lexical_search_finds_the_right_document(query: str, doc_id: str) -> None:
    hits = docsearch.search(query, k=3)
    assert hits[0].doc.id == doc_id
    assert hits[0].snippet


def test_embedding_hook_is_used_and_fused() -> None:
    calls: list[int] = []
    docs = docsearch.load_documents()
    target = next(i for i, d in enumerate(docs) if d.id == "def-mtbf")

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        out = np.zeros((len(texts), 8), dtype=np.float32)
        out[:, 0] = 1.0
        if len(texts) == len(docs):  # documents: make def-mtbf point elsewhere
            out[target] = [0, 1, 0, 0, 0, 0, 0, 0]
        else:  # the query points at def-mtbf
            out[:] = [0, 1, 0, 0, 0, 0, 0, 0]
        return out

    # the query has no lexical overlap with any document; only the embedding can find it
    hits = docsearch.search("zzz qqq", k=1, embed=embed)
    assert sorted(calls) == [1, len(docs)]
    assert hits[0].doc.id == "def-mtbf"


def test_empty_query_is_bad_request() -> None:
    with pytest.raises(SkillError):
        docsearch.search("   ")
