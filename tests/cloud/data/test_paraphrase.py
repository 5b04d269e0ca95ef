"""The paraphrase-family reasoning data: the evaluation set is frozen (its bytes are pinned),
held out by family and by entity, and the generator still reproduces it."""

from __future__ import annotations

from collections import Counter

from cloud.data.paraphrase import (
    FROZEN_EVAL,
    FROZEN_EVAL_SHA256,
    FROZEN_EVAL_V1,
    FROZEN_EVAL_V1_SHA256,
    FROZEN_EVAL_V2,
    FROZEN_EVAL_V2_SHA256,
    UNSURE,
    build_split,
    dumps,
    entity_split,
    load_frozen_eval,
    sha256_text,
    train_items,
)
from cloud.data.paraphrase_families import (
    DISTRACTORS,
    FRAMES,
    IMPLICIT_FAMILIES,
    NONSENSE_FAMILIES,
    NP_FAMILIES,
    Q_FAMILIES,
    ROUTE_FAMILIES,
    Family,
)
from skillpack.kg.graph import default_graph


def _all_families() -> dict[str, str]:
    fams = [*DISTRACTORS, *NONSENSE_FAMILIES]
    for group in (NP_FAMILIES, Q_FAMILIES, IMPLICIT_FAMILIES, FRAMES, ROUTE_FAMILIES):
        for lst in group.values():
            fams.extend(lst)
    ids = [f.id for f in fams]
    assert len(ids) == len(set(ids)), "family ids must be unique"
    return {f.id: f.split for f in fams}


def test_frozen_eval_is_pinned_and_reproducible() -> None:
    text = FROZEN_EVAL.read_text(encoding="utf-8")
    assert sha256_text(text) == FROZEN_EVAL_SHA256, "the frozen evaluation set was edited: re-split instead"
    assert dumps(build_split("eval")) == text, "the generator no longer reproduces the frozen evaluation set"
    # the earlier frozen sets stay byte for byte, and the generator still gives v2 back at re-split 2
    v1, v2 = (p.read_text(encoding="utf-8") for p in (FROZEN_EVAL_V1, FROZEN_EVAL_V2))
    assert sha256_text(v1) == FROZEN_EVAL_V1_SHA256 and sha256_text(v2) == FROZEN_EVAL_V2_SHA256
    assert dumps(build_split("eval", resplit=2)) == v2
    # round 4 added training families only: its evaluation set is still v3
    assert dumps(build_split("eval", resplit=3)) == text


def test_training_as_of_a_round_uses_only_that_rounds_families() -> None:
    """``train_items(resplit=N)`` draws from the families that were training at round N — noun
    phrases, questions, implicit paths, frames and distractors alike — so an arm of an earlier
    round is that round's data, not today's."""
    fams = [
        f for g in (NP_FAMILIES, Q_FAMILIES, IMPLICIT_FAMILIES, FRAMES) for lst in g.values() for f in lst
    ]
    fams += DISTRACTORS
    for rnd in (2, 3, 4):
        allowed = {f.id for f in fams if f.split_at(rnd) == "train"}
        used = {
            f
            for i in train_items(seed=0, kg_per_pattern=24, route_per_template=1, resplit=rnd)
            if i.kind == "kg"
            for f in i.families
            if not f.startswith("describe.")
        }
        assert used <= allowed, (rnd, sorted(used - allowed)[:5])
        later = {f.id for f in fams if f.since > rnd}
        assert not used & later
    # re-split 2 changed only the nonsense families of v1
    old, mid = load_frozen_eval(FROZEN_EVAL_V1), load_frozen_eval(FROZEN_EVAL_V2)
    assert [i for i in old if i.kind != "nonsense"] == [i for i in mid if i.kind != "nonsense"]
    old_ns = {f for i in old if i.kind == "nonsense" for f in i.families}
    assert old_ns and not old_ns & {f for i in mid if i.kind == "nonsense" for f in i.families}
    assert old_ns <= {
        f for i in train_items(seed=0, kg_per_pattern=1, route_per_template=1) for f in i.families
    }


def test_resplit_3_changed_only_graph_families() -> None:
    """Re-split 3: new graph evaluation families; v2's graph evaluation families are training
    now; the route and nonsense items are v2's; training as of re-split 2 uses no family that
    re-split 3 wrote or moved."""
    mid, new = load_frozen_eval(FROZEN_EVAL_V2), load_frozen_eval()
    assert [i for i in mid if i.kind != "kg"] == [i for i in new if i.kind != "kg"]
    v2_graph = {f for i in mid if i.kind == "kg" for f in i.families}
    v3_graph = {f for i in new if i.kind == "kg" for f in i.families}
    frames = {f.id for lst in FRAMES.values() for f in lst} | {f.id for f in DISTRACTORS}
    fams: list[Family] = [
        f for g in (NP_FAMILIES, Q_FAMILIES, IMPLICIT_FAMILIES) for lst in g.values() for f in lst
    ]
    split = {f.id: f.split for f in fams}
    assert v2_graph - frames and all(split[f] == "train" for f in v2_graph - frames)
    assert v3_graph - frames and all(split[f] == "eval" for f in v3_graph - frames)
    since3 = {f.id for f in fams if f.since == 3}
    old_train = {
        f for i in train_items(seed=0, kg_per_pattern=4, route_per_template=1, resplit=2) for f in i.families
    }
    assert since3 and not since3 & old_train
    # every relation gained training families and kept one evaluation family
    for rel, lst in NP_FAMILIES.items():
        assert sum(f.split_at(3) == "train" for f in lst) > sum(f.split_at(2) == "train" for f in lst), rel
        assert [f.id for f in lst if f.split == "eval"] == [
            f.id for f in lst if f.since == 3 and f.split == "eval"
        ]


def test_eval_is_held_out_by_family_and_entity() -> None:
    splits = _all_families()
    ev, tr = load_frozen_eval(), train_items(seed=3, kg_per_pattern=6, route_per_template=2)
    assert all(splits[f] == "eval" for it in ev for f in it.families)
    assert all(splits[f] == "train" for it in tr for f in it.families)
    assert all(entity_split(it.start) == "eval" for it in ev if it.kind == "kg")
    assert all(entity_split(it.start) == "train" for it in tr if it.kind == "kg")
    assert not {it.text for it in ev} & {it.text for it in tr}
    # every relation and every route has a held-out family, in both languages
    for rel, fams in NP_FAMILIES.items():
        assert any(f.split == "eval" for f in fams) and any(f.split == "train" for f in fams), rel
    for route, fams in ROUTE_FAMILIES.items():
        assert any(f.split == "eval" for f in fams) and any(f.split == "train" for f in fams), route


def test_eval_covers_hops_languages_implicit_hops_distractors_and_nonsense() -> None:
    ev = load_frozen_eval()
    kg = [it for it in ev if it.kind == "kg"]
    by = Counter((it.lang, it.hops) for it in kg)
    assert all(by[(lang, h)] >= 40 for lang in ("en", "zh") for h in (1, 2, 3))
    assert sum(it.implicit for it in kg) >= 40 and sum(it.distractor for it in kg) >= 40
    g = default_graph()
    for it in kg:  # gold answers are what the graph says
        assert g.follow(it.start, it.path) == [it.answer]
        assert it.mention.lower() in it.text.lower()
    assert {it.route for it in ev if it.kind == "nonsense"} == {UNSURE}
    assert {it.route for it in ev if it.kind == "route"} == set(ROUTE_FAMILIES)
