"""The bundled generator: deterministic, split by template, real variety in both languages."""

from __future__ import annotations

import re
from collections import Counter

from cloud.data import SplitSpec, assign_templates, dataset_sha256, default_splits
from cloud.data.expand import template_slots
from cloud.data.generator import TEMPLATES, examples_for_template
from cloud.data.slots import SLOTS
from contracts.routes import DEFAULT_ROUTES

SMALL = SplitSpec(train_per_template=4, eval_per_template=3)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = default_splits(0, SMALL), default_splits(0, SMALL)
    assert a == b
    assert dataset_sha256(a["train"]) == dataset_sha256(b["train"])
    c = default_splits(1, SMALL)
    assert dataset_sha256(a["train"]) != dataset_sha256(c["train"])


def test_splits_are_disjoint_by_template_and_cover_every_route_and_language() -> None:
    splits = default_splits(0, SMALL)
    tids = {name: {ex.template_id for ex in exs} for name, exs in splits.items()}
    assert not tids["train"] & tids["val"]
    assert not tids["train"] & tids["test"]
    assert not tids["val"] & tids["test"]
    for name, exs in splits.items():
        covered = Counter((ex.lang, ex.route) for ex in exs)
        assert set(covered) == {(lang, r) for lang in ("en", "zh") for r in DEFAULT_ROUTES}, name
    assignment = assign_templates(0)
    for lang in ("en", "zh"):
        for route in DEFAULT_ROUTES:
            n_test = sum(t.startswith(f"{lang}.{route}.") for t in assignment["test"])
            n_val = sum(t.startswith(f"{lang}.{route}.") for t in assignment["val"])
            assert n_test >= 2 and n_val >= 2


def test_test_texts_never_appear_in_training() -> None:
    splits = default_splits(0, SMALL)
    train_texts = {ex.text.lower() for ex in splits["train"]}
    overlap = [ex.text for ex in splits["test"] if ex.text.lower() in train_texts]
    # only very short generic texts could coincide; template-disjointness keeps it tiny
    assert len(overlap) <= len(splits["test"]) * 0.01, overlap[:5]


def test_many_templates_per_route_and_every_slot_is_known() -> None:
    for lang, routes in TEMPLATES.items():
        assert set(routes) == set(DEFAULT_ROUTES)
        for route, templates in routes.items():
            assert len(templates) >= 20, (lang, route)
            assert len(set(templates)) == len(templates), (lang, route)
            for t in templates:
                assert template_slots(t) <= set(SLOTS[lang]) | {"u1", "u2"}, t


def test_generated_text_is_clean_and_varied() -> None:
    splits = default_splits(0, SplitSpec(train_per_template=10, eval_per_template=3))
    train = splits["train"]
    for ex in train:
        assert ex.text.strip() == ex.text and ex.text
        assert "{" not in ex.text and "}" not in ex.text, ex.text
        assert not re.search(r"\([^()]*\|", ex.text), ex.text  # no unexpanded alternatives
    for lang in ("en", "zh"):
        pairs = [(ex.template_id, ex.text) for ex in train if ex.lang == lang]
        assert len(set(pairs)) == len(pairs)  # no duplicates within a template's draw
    en = [ex.text for ex in train if ex.lang == "en"]
    assert any(t.isupper() for t in en) and any(t[:1].isupper() for t in en) and any(t.islower() for t in en)
    assert any(t.endswith("?") for t in en) and any(t[-1].isalnum() for t in en)
    zh = [ex.text for ex in train if ex.lang == "zh"]
    assert any(t.endswith("？") for t in zh) and any(" " in t for t in zh)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in zh)
    # plant entities with ids appear in both languages
    assert any(re.search(r"\b[A-Za-z]{1,2}-?\d+", t) for t in en if "press" in t.lower())
    assert any("号线" in t or "线" in t for t in zh)


def test_one_template_yields_distinct_examples_deterministically() -> None:
    a = examples_for_template("en.device_status.00", 20, seed=5)
    b = examples_for_template("en.device_status.00", 20, seed=5)
    assert a == b and len(a) == 20 and len({ex.text for ex in a}) == 20
    assert all(ex.route == "device_status" and ex.lang == "en" for ex in a)


def test_no_two_templates_can_produce_the_same_text() -> None:
    """Otherwise a held-out template could hand the test split texts seen in training."""
    owner: dict[str, str] = {}
    clashes = []
    for lang, routes in TEMPLATES.items():
        for route, templates in routes.items():
            for i in range(len(templates)):
                tid = f"{lang}.{route}.{i:02d}"
                for ex in examples_for_template(tid, 30, seed=0, noise=False):
                    key = ex.text.lower()
                    if owner.setdefault(key, tid) != tid:
                        clashes.append((owner[key], tid, ex.text))
    assert not clashes, clashes[:5]


def test_augmentation_is_training_only_and_seeded() -> None:
    import random

    from cloud.data.noise import augment

    assert augment("hi there", "en", random.Random(0)) == "hi there"  # too short to perturb
    a = [augment("is press P-12 running right now", "en", random.Random(i)) for i in range(20)]
    b = [augment("is press P-12 running right now", "en", random.Random(i)) for i in range(20)]
    assert a == b and len(set(a)) > 5
    spec = SplitSpec(train_per_template=4, eval_per_template=3, augment=1.0)
    splits = default_splits(0, spec)
    plain = default_splits(0, SplitSpec(train_per_template=4, eval_per_template=3, augment=0.0))
    assert splits["test"] == plain["test"] and splits["val"] == plain["val"]
    assert splits["train"] != plain["train"]
