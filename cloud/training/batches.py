"""Tokenised splits and seeded batch orders (identical on every rank and across resumes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cloud.data import Example
from contracts.tokenizer import TextTokenizer


@dataclass
class EncodedSplit:
    ids: list[list[int]]
    labels: np.ndarray  # int64 [n]
    langs: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def batch(
        self, idx: Sequence[int] | np.ndarray, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        input_ids, mask = TextTokenizer.pad([self.ids[i] for i in idx])
        labels = torch.from_numpy(self.labels[np.asarray(idx, dtype=np.int64)])
        return (torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device), labels.to(device))


def encode_split(examples: list[Example], tokenizer: TextTokenizer, routes: list[str]) -> EncodedSplit:
    index = {r: i for i, r in enumerate(routes)}
    return EncodedSplit(
        ids=tokenizer.encode_ids([ex.text for ex in examples]),
        labels=np.array([index[ex.route] for ex in examples], dtype=np.int64),
        langs=[ex.lang for ex in examples],
    )


def epoch_batches(
    n: int,
    batch_size: int,
    seed: int,
    epoch: int,
    min_size: int = 1,
    lengths: Sequence[int] | None = None,
    bucket_batches: int = 16,
) -> Iterator[np.ndarray]:
    """Global batches of a seeded permutation; a last batch smaller than ``min_size`` is dropped.

    With ``lengths``, each run of ``bucket_batches`` batches is sorted by length before it is cut
    (less padding, so faster steps) and the batch order is shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    if lengths is not None:
        lens = np.asarray(lengths)
        span = batch_size * bucket_batches
        order = (
            np.concatenate(
                [
                    chunk[np.argsort(lens[chunk], kind="stable")]
                    for chunk in np.split(order, range(span, n, span))
                ]
            )
            if n
            else order
        )
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    batches = [b for b in batches if len(b) >= min_size]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    yield from batches


def num_batches(n: int, batch_size: int, min_size: int = 1) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= min_size and rest > 0 else 0)
