"""The new-route data: the evaluation set is frozen (its bytes are pinned), the generator still
reproduces it, held-out families never reach the support pool, and shift_schedule is not a
default route."""

from __future__ import annotations

from collections import Counter

from cloud.data.new_route import (
    FROZEN_NEW_ROUTE,
    FROZEN_NEW_ROUTE_SHA256,
    NEW_ROUTE,
    NEW_ROUTE_FAMILIES,
    build_eval,
    dumps,
    load_frozen_new_route_eval,
    sha256_text,
    support_pool,
    support_set,
)
from contracts.routes import DEFAULT_ROUTES


def test_frozen_file_is_pinned_and_reproduced() -> None:
    text = FROZEN_NEW_ROUTE.read_text(encoding="utf-8")
    assert sha256_text(text) == FROZEN_NEW_ROUTE_SHA256
    assert dumps(build_eval()) == text
    items = load_frozen_new_route_eval()
    kinds = Counter((it.kind, it.lang) for it in items)
    assert kinds[("new", "en")] >= 40 and kinds[("new", "zh")] >= 40
    assert kinds[("other", "en")] > 800 and kinds[("other", "zh")] > 800
    assert {it.route for it in items if it.kind == "other"} == set(DEFAULT_ROUTES)


def test_support_comes_from_training_families_only_and_shares_no_text() -> None:
    assert NEW_ROUTE not in DEFAULT_ROUTES
    eval_fams = {f.id for f in NEW_ROUTE_FAMILIES[NEW_ROUTE] if f.split == "eval"}
    assert eval_fams
    held_out = {it.text for it in load_frozen_new_route_eval() if it.kind == "new"}
    for seed in range(3):
        pool = support_pool(seed=seed)
        assert not {ex.template_id for ex in pool} & eval_fams
        assert not {ex.text for ex in pool} & held_out
        sup = support_set(16, seed=seed)
        assert len(sup) == 16 and len({ex.text for ex in sup}) == 16
        assert {ex.lang for ex in sup} == {"en", "zh"} and len({ex.template_id for ex in sup}) >= 4
    assert [e.text for e in support_set(8, seed=1)] == [e.text for e in support_set(8, seed=1)]
