"""Input normalisation (the cache key and what is encoded) and token-length bucketing."""

from __future__ import annotations

from collections.abc import Sequence


def normalise_text(text: str, lowercase: bool) -> str:
    """Collapse whitespace runs and trim; lower-case when the tokenizer does so anyway.

    The server encodes the *normalised* text, so a cached result always equals what that text
    gives when computed (BERT's pre-tokenizer splits on whitespace, so collapsing it changes no ids).
    """
    out = " ".join(text.split())
    return out.lower() if lowercase else out


def length_groups(lengths: Sequence[int], overhead_tokens: int = 32) -> list[list[int]]:
    """Split a batch into groups of similar token length (length bucketing with adaptive edges).

    Each group is padded to its own longest text, so a long text does not pad the short ones.
    Cost model of one forward: padded tokens (``size × longest``) plus ``overhead_tokens`` per
    extra call (fixed per-run cost and the lower efficiency of small matrices). Over the texts
    sorted by length, the contiguous split with the least total cost is found by dynamic
    programming over the distinct lengths (≤ a few dozen), so it costs microseconds.
    Returns index groups (into ``lengths``), shortest group first.
    """
    n = len(lengths)
    if n <= 1:
        return [list(range(n))]
    order = sorted(range(n), key=lengths.__getitem__)
    sorted_len = [lengths[i] for i in order]
    # candidate group ends: the last position of each distinct length
    ends = [j for j in range(n) if j == n - 1 or sorted_len[j + 1] != sorted_len[j]]
    best = [0.0] * (len(ends) + 1)  # best[k]: cost of covering sorted positions up to ends[k-1]
    cut = [0] * (len(ends) + 1)
    for k in range(1, len(ends) + 1):
        end = ends[k - 1]
        best[k] = float("inf")
        for m in range(k):  # the group starts after ends[m-1]
            start = ends[m - 1] + 1 if m else 0
            cost = best[m] + (end - start + 1) * sorted_len[end] + overhead_tokens
            if cost < best[k]:
                best[k], cut[k] = cost, m
    groups: list[list[int]] = []
    k = len(ends)
    while k > 0:
        m = cut[k]
        start = ends[m - 1] + 1 if m else 0
        groups.append([order[j] for j in range(start, ends[k - 1] + 1)])
        k = m
    groups.reverse()
    return groups
