"""cloud.training.augment: the support variants are the same for the same seed, differ across
seeds, keep route and language, and are language-aware: Chinese text only loses characters (in
order), other text only loses words (variant 2 may also swap one adjacent pair)."""

from __future__ import annotations

from collections import Counter

from cloud.data import Example
from cloud.data.new_route import NEW_ROUTE, support_set
from cloud.training.augment import AUG_TEMPLATE_SUFFIX, augment_support, augment_text


def _is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def test_augmentation_is_deterministic_and_seeded() -> None:
    sup = support_set(16, seed=0)
    a, b = augment_support(sup, 2, seed=3), augment_support(sup, 2, seed=3)
    assert a == b and a
    assert augment_support(sup, 2, seed=4) != a
    assert augment_support(sup, 0, seed=3) == []


def test_augmentation_is_language_aware_and_keeps_the_label() -> None:
    sup = support_set(16, seed=0)
    originals = {e.template_id: e for e in sup}
    out = augment_support(sup, 2, seed=0)
    per_original: Counter[str] = Counter()
    for ex, orig_index in _owners(sup, out):
        orig = sup[orig_index]
        per_original[orig.text] += 1
        assert ex.route == NEW_ROUTE and ex.lang == orig.lang and ex.text != orig.text
        assert ex.template_id.split(AUG_TEMPLATE_SUFFIX)[0] in originals
        if orig.lang == "zh":  # characters dropped, never reordered, none added
            assert _is_subsequence(list(ex.text.replace(" ", "")), list(orig.text.replace(" ", "")))
            assert len(ex.text.replace(" ", "")) >= 2
        else:  # words dropped (variant 2: one adjacent pair may be swapped)
            words, orig_words = ex.text.split(), orig.text.split()
            assert words and not Counter(words) - Counter(orig_words)
            if ex.template_id.endswith("1"):
                assert _is_subsequence(words, orig_words)
    assert max(per_original.values()) <= 2
    assert {e.lang for e, _ in _owners(sup, out)} == {"en", "zh"}


def test_chinese_text_drops_characters_not_words() -> None:
    text = "请问我周四的白班来不了，把我从排班里去掉"
    variants = {augment_text(text, seed=s, index=0, variant=1) for s in range(20)}
    assert len(variants) > 5  # characters go, not the whole (space-free) "word"
    assert all(_is_subsequence(list(v), list(text)) and len(v) >= 2 for v in variants)
    en = "Quick question, request a shift change for Wednesday"
    assert all(
        not Counter(augment_text(en, seed=s, index=0, variant=2).split()) - Counter(en.split())
        for s in range(20)
    )


def _owners(sup: list[Example], out: list[Example]) -> list[tuple[Example, int]]:
    """Each variant with the index of its original (variants follow their original in order)."""
    res: list[tuple[Example, int]] = []
    i = 0
    for ex in out:
        while not _derived(ex, sup[i]):
            i += 1
        res.append((ex, i))
    return res


def _derived(ex: Example, orig: Example) -> bool:
    if ex.template_id.split(AUG_TEMPLATE_SUFFIX)[0] != orig.template_id or ex.lang != orig.lang:
        return False
    if orig.lang == "zh":
        return _is_subsequence(list(ex.text.replace(" ", "")), list(orig.text.replace(" ", "")))
    return not Counter(ex.text.split()) - Counter(orig.text.split())
