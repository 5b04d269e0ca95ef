"""Seeded, deterministic generator of the default route data, split by template.

Every (language, route) has its own list of templates. Templates are shuffled with the seed
and dealt into test / validation / train, so the test split only holds phrasings the model
never trained on; examples are then drawn from each template with its own seeded RNG (same
seed, same data, on every machine).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass

from cloud.data.example import LANGS, Example
from cloud.data.expand import expand
from cloud.data.noise import add_noise, augment
from cloud.data.templates_en import TEMPLATES_EN
from cloud.data.templates_zh import TEMPLATES_ZH
from contracts.routes import DEFAULT_ROUTES

TEMPLATES: dict[str, dict[str, list[str]]] = {"en": TEMPLATES_EN, "zh": TEMPLATES_ZH}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSpec:
    """How many templates go to the held-out splits and how many examples each template yields."""

    test_fraction: float = 0.15
    val_fraction: float = 0.12
    train_per_template: int = 30
    eval_per_template: int = 12
    augment: float = 0.3  # share of training examples that get one extra perturbation (train only)


def template_ids(lang: str, route: str) -> list[str]:
    return [f"{lang}.{route}.{i:02d}" for i in range(len(TEMPLATES[lang][route]))]


def assign_templates(seed: int = 0, spec: SplitSpec | None = None) -> dict[str, list[str]]:
    """Template ids per split; every (language, route) has >= 2 templates in val and test."""
    spec = spec or SplitSpec()
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for lang in LANGS:
        for route in DEFAULT_ROUTES:
            ids = template_ids(lang, route)
            random.Random(f"split:{seed}:{lang}:{route}").shuffle(ids)
            n_test = max(2, round(spec.test_fraction * len(ids)))
            n_val = max(2, round(spec.val_fraction * len(ids)))
            out["test"] += ids[:n_test]
            out["val"] += ids[n_test : n_test + n_val]
            out["train"] += ids[n_test + n_val :]
    return out


def examples_for_template(
    template_id: str, count: int, seed: int = 0, noise: bool = True, augment_rate: float = 0.0
) -> list[Example]:
    """Up to ``count`` distinct examples from one template (fewer when it has few variants)."""
    lang, route, idx = template_id.split(".")
    template = TEMPLATES[lang][route][int(idx)]
    rng = random.Random(f"gen:{seed}:{template_id}")
    seen: set[str] = set()
    out: list[Example] = []
    for _ in range(count * 4):
        text = expand(template, lang, rng)
        if noise:
            text = add_noise(text, lang, rng)
        if augment_rate and rng.random() < augment_rate:
            text = augment(text, lang, rng)
        text = text.strip()
        if text and text not in seen:
            seen.add(text)
            out.append(Example(text=text, route=route, lang=lang, template_id=template_id))
            if len(out) >= count:
                break
    return out


def default_splits(seed: int = 0, spec: SplitSpec | None = None) -> dict[str, list[Example]]:
    """``{"train", "val", "test"}`` lists of examples, disjoint by template, deterministic in ``seed``."""
    spec = spec or SplitSpec()
    assignment = assign_templates(seed, spec)
    out: dict[str, list[Example]] = {}
    for split, ids in assignment.items():
        per = spec.train_per_template if split == "train" else spec.eval_per_template
        rate = spec.augment if split == "train" else 0.0
        examples = [
            ex for tid in sorted(ids) for ex in examples_for_template(tid, per, seed, augment_rate=rate)
        ]
        random.Random(f"order:{seed}:{split}").shuffle(examples)
        out[split] = examples
    return out


def dataset_sha256(examples: Iterable[Example]) -> str:
    """A stable hash of a list of examples (order matters)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.text, ex.route, ex.lang, ex.template_id], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
