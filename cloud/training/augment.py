"""Support augmentation for a new route: cheap, seeded, language-aware surface variants.

``augment_support(examples, variants, seed)`` returns up to ``variants`` altered copies of every
support example (docs/EVALUATION.md, "New-route method selection", second round). Text with a CJK
ideograph drops each non-space character with probability 0.15 (every variant its own draw);
other text drops each word with probability 0.2 and its second variant also swaps one random pair
of adjacent words. At least 1 word / 2 characters are kept; a variant equal to its original or to
an earlier variant of it is left out. The draws depend only on (seed, example index, variant), so
the same call gives the same variants.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from cloud.data import Example, detect_lang

WORD_DROP = 0.2
CHAR_DROP = 0.15
AUG_TEMPLATE_SUFFIX = "#aug"  # template_id of a variant: the original's + this + the variant number


def _words(text: str, rng: random.Random, swap: bool) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= WORD_DROP]
    if not kept:
        kept = [words[rng.randrange(len(words))]]
    if swap and len(kept) >= 2:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def _chars(text: str, rng: random.Random) -> str:
    chars = list(text)
    keep = [ch.isspace() or rng.random() >= CHAR_DROP for ch in chars]
    if sum(1 for ch, k in zip(chars, keep, strict=True) if k and not ch.isspace()) < 2:
        return text
    return "".join(ch for ch, k in zip(chars, keep, strict=True) if k).strip()


def augment_text(text: str, seed: int, index: int, variant: int) -> str:
    """Variant ``variant`` (1, 2, ...) of ``text``, the ``index``-th support example."""
    rng = random.Random(f"augment:{seed}:{index}:{variant}")
    if detect_lang(text) == "zh":
        return _chars(text, rng)
    return _words(text, rng, swap=variant >= 2)


def augment_support(examples: Sequence[Example], variants: int, seed: int) -> list[Example]:
    """Up to ``variants`` distinct altered copies of every example (same route and language)."""
    out: list[Example] = []
    for i, ex in enumerate(examples):
        seen = {ex.text}
        for v in range(1, variants + 1):
            text = augment_text(ex.text, seed, i, v)
            if not text or text in seen:
                continue
            seen.add(text)
            out.append(Example(text, ex.route, ex.lang, f"{ex.template_id}{AUG_TEMPLATE_SUFFIX}{v}"))
    return out
