"""Input normalisation (the cache key and what is encoded) and token-length bucketing."""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def normalise_text(text: str, lowercase: bool) -> str:
    """Collapse whitespace runs and trim; lower-case when the tokenizer does so anyway.

    The server encodes the *normalised* text, so a cached result always equals what that text
    gives when computed (BERT's pre-tokenizer splits on whitespace, so collapsing it changes no ids).
    """
    out = " ".join(text.split())
    return out.lower() if lowercase else out


def bucket_groups(lengths: Sequence[int], edges: Sequence[int]) -> list[list[int]]:
    """Indices grouped by the first bucket edge ≥ their length (beyond the last edge: one group).

    Groups come out shortest bucket first; order within a group is input order.
    """
    sorted_edges = sorted(set(edges))
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(bisect.bisect_left(sorted_edges, n), []).append(i)
    return [groups[k] for k in sorted(groups)]
