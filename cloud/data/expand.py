"""Template expansion: ``(a|b|)`` alternatives and ``{slot}`` values.

A parenthesised group is an alternative only when it contains ``|``; other parentheses are
literal text (``({a} + {b}) / {n}``). Groups do not nest.
"""

from __future__ import annotations

import random
import re

from cloud.data.slots import SLOTS, UNIT_PAIRS

_ALT_RE = re.compile(r"\(([^()]*\|[^()]*)\)")
_SLOT_RE = re.compile(r"\{([a-z0-9_]+)\}")


def template_slots(template: str) -> set[str]:
    return set(_SLOT_RE.findall(template))


def expand(template: str, lang: str, rng: random.Random) -> str:
    """One concrete text for ``template``; unknown slot names raise ``KeyError``."""
    text = _ALT_RE.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    slots = SLOTS[lang]
    fixed: dict[str, str] = {}
    if "{u1}" in text or "{u2}" in text:
        u1, u2 = rng.choice(UNIT_PAIRS[lang])
        if rng.random() < 0.5:
            u1, u2 = u2, u1
        fixed = {"u1": u1, "u2": u2}

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in fixed:
            return fixed[name]
        if name not in slots:
            raise KeyError(f"template {template!r}: unknown slot {{{name}}}")
        return slots[name](rng)

    text = _SLOT_RE.sub(fill, text)
    return re.sub(r"\s+", " ", text).strip()
