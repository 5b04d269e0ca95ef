"""cloud.training.maml and new_route on a tiny random encoder: the cached top features give the
full model's logits, adaptation learns a new route and writes a checkpoint whose route list is
one longer (lower adapters untouched), meta-training writes a checkpoint with its new-row
initialisation, and bad labels / examples are refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cloud.data import Example
from cloud.data.generator import examples_for_template
from cloud.data.new_route import NEW_ROUTE, support_set
from cloud.model.checkpoint import CheckpointMeta, load_checkpoint
from cloud.training.maml import (
    AdaptConfig,
    DeepAdaptConfig,
    DeepHead,
    FastHead,
    MamlConfig,
    ParentAnchor,
    adapt,
    adapt_deep,
    checkpoint_tokenizer,
    first_adapted_layer,
    grow,
    kd_loss,
    layer_features,
    meta_train,
    meta_training_examples,
    row_init_of,
    top_features,
)
from cloud.training.new_route import NewRouteConfig, train_new_route
from contracts.errors import BadRequest
from contracts.routes import DEFAULT_ROUTES, check_route_label
from tests.export.helpers import make_checkpoint

FAST = NewRouteConfig(method="top", adapt=AdaptConfig(steps=80, lr=1e-2), threads=1)
DEEP = NewRouteConfig(method="deep", deep=DeepAdaptConfig(steps=60, lr=1e-2), threads=1)
DEEP_KD_AUG = NewRouteConfig(
    method="deep",
    deep=DeepAdaptConfig(steps=60, lr=1e-2, replay_batch=64, kd=1.0, anchor=1e-2),
    augment=2,
    threads=1,
)
REPLAY = [
    e for r in DEFAULT_ROUTES for lang in ("en", "zh") for e in examples_for_template(f"{lang}.{r}.00", 6)
]


@pytest.fixture(scope="module")
def ckpt(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("maml"), routes=list(DEFAULT_ROUTES), base_dir=tiny_base)


def _assert_learns_support_keeps_replay(
    model: torch.nn.Module, meta: CheckpointMeta, parent_ckpt: Path, support: list[Example], routes: list[str]
) -> None:
    """The written checkpoint (full forward) routes its support to the new route, and the replayed
    routes' examples to their own routes, no worse than the parent did."""
    tok = checkpoint_tokenizer(meta)

    def routes_of(m: torch.nn.Module, texts: list[str], names: list[str]) -> list[str]:
        ids, mask = tok(texts)
        with torch.no_grad():
            logits = m(torch.from_numpy(ids), torch.from_numpy(mask)).route_logits
        return [names[i] for i in logits.argmax(-1).tolist()]

    assert routes_of(model, [e.text for e in support], routes).count(NEW_ROUTE) >= 6
    parent, _ = load_checkpoint(parent_ckpt)
    texts, gold = [e.text for e in REPLAY], [e.route for e in REPLAY]
    after = routes_of(model, texts, routes)
    before = routes_of(parent, texts, list(DEFAULT_ROUTES))
    assert after.count(NEW_ROUTE) <= len(texts) // 10
    assert sum(a == g for a, g in zip(after, gold, strict=True)) >= sum(
        b == g for b, g in zip(before, gold, strict=True)
    )


def test_cached_top_features_give_the_full_models_logits(ckpt: Path) -> None:
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    examples = [
        Example(t, "calculator", "en", "t")
        for t in ("what is 2 + 2", "hello there, who are you?", "我下周几点上班")
    ]
    feats = top_features(model, "default", tok, examples)
    fast = FastHead.from_model(model, "default")
    ids, mask = tok([e.text for e in examples])
    with torch.no_grad():
        full = model(torch.from_numpy(ids), torch.from_numpy(mask), "default").route_logits
    assert torch.allclose(fast.logits(feats), full, atol=2e-2)  # the cache is float16


@pytest.mark.parametrize("layers", [0, 1])
def test_cached_layer_features_give_the_full_models_logits(ckpt: Path, layers: int) -> None:
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    texts = ("what is 2 + 2", "hello there, who are you?", "我下周几点上班")
    start = first_adapted_layer(model, layers)
    assert start == (0 if layers == 0 else model.config.num_hidden_layers - layers)
    feats = layer_features(model, "default", tok, [Example(t, "calculator", "en", "t") for t in texts], start)
    ids, mask = tok(list(texts))
    with torch.no_grad():
        full = model(torch.from_numpy(ids), torch.from_numpy(mask), "default").route_logits
    assert torch.allclose(DeepHead.from_model(model, "default", start).logits(feats), full, atol=2e-2)


def test_grow_keeps_old_rows_and_inits_the_new_one(ckpt: Path) -> None:
    model, meta = load_checkpoint(ckpt)
    feats = top_features(model, "default", checkpoint_tokenizer(meta), support_set(4))
    fast = FastHead.from_model(model, "default")
    for init in ("plain", "proto"):
        g = grow(fast, NEW_ROUTE, init=init, support=feats)
        assert g.routes == [*DEFAULT_ROUTES, NEW_ROUTE]
        assert torch.equal(g.head.out.weight[:-1], fast.head.out.weight)
        assert g.head.out.weight[-1].abs().sum() > 0
    proto = grow(fast, NEW_ROUTE, init="proto", support=feats, row_init=(3.0, -1.0))
    assert float(proto.head.out.weight[-1].detach().norm()) == pytest.approx(3.0, rel=1e-4)
    assert float(proto.head.out.bias[-1].detach()) == -1.0
    dropped = grow(fast, "calculator", init="plain", drop="calculator")  # meta-training tasks
    assert dropped.routes == [*DEFAULT_ROUTES[1:], "calculator"]
    with pytest.raises(ValueError, match="already exists"):
        grow(fast, "climate", init="plain")


def test_train_new_route_learns_the_route_and_grows_the_checkpoint(ckpt: Path, tmp_path: Path) -> None:
    support = support_set(8, seed=0)
    res = train_new_route(
        ckpt, NEW_ROUTE, support, tmp_path / "grown", tool_routes=[NEW_ROUTE], config=FAST, replay=REPLAY
    )
    assert res.routes == [*DEFAULT_ROUTES, NEW_ROUTE] and res.support == 8
    model, meta = load_checkpoint(res.checkpoint_dir)
    assert meta.adapter_sets["default"].routes == res.routes
    assert meta.training["new_route"]["route"] == NEW_ROUTE and meta.training["new_route"]["init"] == "proto"
    tok = checkpoint_tokenizer(meta)
    ids, mask = tok([e.text for e in support])
    with torch.no_grad():
        pred = model(torch.from_numpy(ids), torch.from_numpy(mask)).route_logits.argmax(-1)
    assert (pred == len(res.routes) - 1).float().mean() >= 0.75
    # only the last layer's adapter and the router head changed
    old, new = (
        load_file(str(ckpt / "adapters.safetensors")),
        load_file(str(res.checkpoint_dir / "adapters.safetensors")),
    )
    assert set(old) == set(new)
    changed = {k for k in old if old[k].shape != new[k].shape or not torch.equal(old[k], new[k])}
    assert changed and all(k.startswith(("default.adapters.1.", "default.heads.router.")) for k in changed)
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("other."))


def test_meta_train_writes_a_checkpoint_with_its_row_init(ckpt: Path, tmp_path: Path) -> None:
    examples = meta_training_examples(DEFAULT_ROUTES, seed=0, per_template=1)
    cfg = MamlConfig(tasks=8, meta_batch=2, adapt=AdaptConfig(steps=3), replay_size=40, query_old=16)
    res = meta_train(ckpt, tmp_path / "maml", cfg, examples=examples[::3])
    assert len(res.history) == 4 and all(h["query_loss"] > 0 for h in res.history)
    _model, meta = load_checkpoint(res.checkpoint_dir)
    assert meta.adapter_sets["default"].routes == list(DEFAULT_ROUTES)
    assert row_init_of(meta) == pytest.approx(res.row_init) and row_init_of(load_checkpoint(ckpt)[1]) is None
    grown = train_new_route(
        res.checkpoint_dir, NEW_ROUTE, support_set(4), tmp_path / "g", config=FAST, replay=REPLAY
    )
    assert load_checkpoint(grown.checkpoint_dir)[1].training["new_route"]["meta_row_init"] is True


def test_adapt_is_deterministic(ckpt: Path) -> None:
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    sup = top_features(model, "default", tok, support_set(4))
    rep = top_features(
        model,
        "default",
        tok,
        [Example("what is 3 * 4", "calculator", "en", "r"), Example("hello", "chitchat", "en", "r")],
    )
    fast = FastHead.from_model(model, "default")
    a = adapt(grow(fast, NEW_ROUTE, init="plain", seed=1), sup, rep, AdaptConfig(steps=5), seed=2)
    b = adapt(grow(fast, NEW_ROUTE, init="plain", seed=1), sup, rep, AdaptConfig(steps=5), seed=2)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_unknown_route_without_a_tool_is_refused(ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"unknown route 'shift_schedule'.*no registered tool serves it"):
        check_route_label(NEW_ROUTE, DEFAULT_ROUTES, ["climate", "doc_search"])
    assert check_route_label("climate", DEFAULT_ROUTES, []) is False  # a route the model knows
    assert check_route_label(NEW_ROUTE, DEFAULT_ROUTES, [NEW_ROUTE]) is True  # new, bound to a tool
    with pytest.raises(BadRequest, match="lower-case"):
        check_route_label("Shift Schedule", DEFAULT_ROUTES, ["Shift Schedule"])
    with pytest.raises(BadRequest, match="no registered tool serves it"):
        train_new_route(
            ckpt, NEW_ROUTE, ["when is my next shift?"], tmp_path / "x", tool_routes=[], config=FAST
        )
    with pytest.raises(BadRequest, match="already one of the model's routes"):
        train_new_route(ckpt, "climate", ["is it hot"], tmp_path / "x", tool_routes=["climate"], config=FAST)
    with pytest.raises(BadRequest, match="no examples"):
        train_new_route(ckpt, NEW_ROUTE, [], tmp_path / "x", tool_routes=[NEW_ROUTE], config=FAST)
    with pytest.raises(BadRequest, match="empty"):
        train_new_route(ckpt, NEW_ROUTE, ["  "], tmp_path / "x", tool_routes=[NEW_ROUTE], config=FAST)
    assert not (tmp_path / "x").exists()


def test_train_new_route_deep_adapts_every_adapter_and_keeps_the_other_routes(
    ckpt: Path, tmp_path: Path
) -> None:
    support = support_set(8, seed=0)
    res = train_new_route(
        ckpt, NEW_ROUTE, support, tmp_path / "deep", tool_routes=[NEW_ROUTE], config=DEEP, replay=REPLAY
    )
    assert res.routes == [*DEFAULT_ROUTES, NEW_ROUTE] and res.support == 8
    model, meta = load_checkpoint(res.checkpoint_dir)
    info = meta.training["new_route"]
    assert meta.adapter_sets["default"].routes == res.routes
    assert info["method"] == "deep" and info["adapted_layers"] == 0 and info["support_accuracy"] >= 0.75
    _assert_learns_support_keeps_replay(model, meta, ckpt, support, res.routes)
    # every layer's adapter changed (not only the last), the other adapter set did not
    old = load_file(str(ckpt / "adapters.safetensors"))
    new = load_file(str(res.checkpoint_dir / "adapters.safetensors"))
    changed = {k for k in old if old[k].shape != new[k].shape or not torch.equal(old[k], new[k])}
    assert any(k.startswith("default.adapters.0.") for k in changed)
    assert any(k.startswith("default.adapters.1.") for k in changed)
    assert not any(k.startswith("other.") for k in changed)


def test_unknown_new_route_method_is_refused(ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="new-route method must be one of"):
        train_new_route(
            ckpt,
            NEW_ROUTE,
            support_set(4),
            tmp_path / "x",
            config=NewRouteConfig(method="everything"),
            replay=REPLAY,
        )


def test_kd_loss_is_zero_for_the_parent_and_penalises_drift_and_new_route_mass() -> None:
    g = torch.Generator().manual_seed(0)
    parent = torch.randn(6, 9, generator=g) * 3
    assert float(kd_loss(parent, parent, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # a grown student whose new output never fires is still the parent
    grown = torch.cat([parent, torch.full((6, 1), -1e4)], dim=1)
    assert float(kd_loss(grown, parent, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # mass on the new output, or other old-route logits, cost
    assert float(kd_loss(torch.cat([parent, parent.max(1, keepdim=True).values], dim=1), parent, 2.0)) > 0.1
    assert float(kd_loss(parent + torch.randn(6, 9, generator=g), parent, 2.0)) > 0.01


def test_parent_anchor_is_zero_at_the_parent_and_leaves_the_new_row_free(ckpt: Path) -> None:
    model, _meta = load_checkpoint(ckpt)
    deep = DeepHead.from_model(model, "default", 0)
    anchor = ParentAnchor(deep)
    assert float(anchor(deep).detach()) == 0.0
    assert not any(n.startswith("layers.") for n in anchor.ref)  # the frozen encoder is not anchored
    with torch.no_grad():
        deep.head.out.weight[-1] += 1.0  # the last row (the new route's once grown) is free
        deep.head.out.bias[-1] += 1.0
    assert float(anchor(deep).detach()) == 0.0
    with torch.no_grad():
        deep.adapters[0].up.weight += 0.1
    assert float(anchor(deep).detach()) == pytest.approx(0.01 * deep.adapters[0].up.weight.numel(), rel=1e-3)


def test_distillation_and_anchor_keep_the_old_routes_logits_closer_to_the_parent(ckpt: Path) -> None:
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    sup = layer_features(model, "default", tok, support_set(8), 0)
    rep = layer_features(model, "default", tok, REPLAY, 0)
    deep = DeepHead.from_model(model, "default", 0)
    parent = deep.logits(rep)
    drift = {}
    for name, cfg in {
        "ce": DeepAdaptConfig(steps=60, lr=1e-2, replay_batch=64),
        "kd": DeepAdaptConfig(steps=60, lr=1e-2, replay_batch=64, kd=1.0, anchor=1e-2),
    }.items():
        grown = adapt_deep(deep.grown(NEW_ROUTE, init="proto", support=sup), sup, rep, cfg, seed=0)
        drift[name] = float((grown.logits(rep)[:, :-1] - parent).abs().mean())
        assert (grown.logits(sup).argmax(-1) == len(grown.routes) - 1).float().mean() >= 0.75
    assert drift["kd"] < drift["ce"]
    # a precomputed teacher is the same as the one adapt_deep computes itself
    cfg = DeepAdaptConfig(steps=3, lr=1e-2, replay_batch=16, kd=1.0, anchor=1e-2)
    a = adapt_deep(deep.grown(NEW_ROUTE, init="proto", support=sup), sup, rep, cfg, seed=1)
    b = adapt_deep(deep.grown(NEW_ROUTE, init="proto", support=sup), sup, rep, cfg, seed=1, teacher=parent)
    assert all(
        torch.allclose(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_train_new_route_with_distillation_and_augmentation_grows_and_keeps_the_other_routes(
    ckpt: Path, tmp_path: Path
) -> None:
    support = support_set(8, seed=0)
    res = train_new_route(
        ckpt, NEW_ROUTE, support, tmp_path / "kd", tool_routes=[NEW_ROUTE], config=DEEP_KD_AUG, replay=REPLAY
    )
    assert res.routes == [*DEFAULT_ROUTES, NEW_ROUTE] and res.support == 8
    model, meta = load_checkpoint(res.checkpoint_dir)
    info = meta.training["new_route"]
    assert meta.adapter_sets["default"].routes == res.routes
    assert info["kd"] == 1.0 and info["anchor"] == 1e-2 and 8 <= info["augmented"] <= 16
    _assert_learns_support_keeps_replay(model, meta, ckpt, support, res.routes)
