"""Add a route from k examples: grow the router head by one output and adapt the fast weights.

``train_new_route(base_checkpoint, route, examples, out_dir, tool_routes=...)`` is what the
learning loop calls when an operator adds a route (docs/arch/model-training.md, "New routes and
MAML"). It refuses a malformed name, a route the checkpoint already has, and — when
``tool_routes`` is given — a route no registered tool serves (:func:`contracts.routes.check_route_label`).
Then: encode the support examples and a replay sample of the checkpoint's own routes once (up
to the last layer's adapter for ``method="top"``, up to the first adapted layer for ``"deep"``),
initialise the new output (``proto``: from the support examples, scaled as the MAML checkpoint
learnt, or ``plain``; ``margin_rate``: afterwards lower its bias until at most that share of the
replay is routed to it), adapt — ``top``: the last adapter + head
(:func:`cloud.training.maml.adapt`); ``deep``: every layer's adapter + head end to end
(:func:`cloud.training.maml.adapt_deep`); either optionally distils the parent's old-route logits
on the replay batch and anchors the weights to the parent's (``kd`` / ``anchor`` of its config),
and ``augment`` adds seeded altered copies of the support (:mod:`cloud.training.augment`);
``gate``: no parent weight changes — the router head gets an inert output for the route and a
calibrated side scorer on the parent's embedding (:mod:`cloud.training.route_gate`, stored under
``training.new_route.gate``) claims requests for it — and write an ordinary checkpoint whose route
list is one longer; ``load_checkpoint`` attaches the gate to the model, so PyTorch and the exported
graph route with it (:mod:`cloud.model.route_gate`). The export pipeline writes that
list into the manifest and the router head's output size; the edge names routes from the
manifest, and a route without a local tool is answered by the cloud's tool service
(``edge.agent.policy.UNKNOWN_ROUTE``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from cloud.data import Example, SplitSpec, default_splits, detect_lang
from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint
from cloud.training.augment import augment_support
from cloud.training.maml import (
    AdaptConfig,
    DeepAdaptConfig,
    DeepHead,
    FastHead,
    adapt,
    adapt_deep,
    first_adapted_layer,
    grow,
    layer_features,
    row_init_of,
    top_features,
    write_fast_checkpoint,
)
from cloud.training.route_gate import (
    BASE_VIEWS,
    GateConfig,
    RouteGate,
    base_embeddings,
    embeddings,
    fit_gate,
    gate_input,
    inert_grown,
    lower_new_bias,
    parent_confidence,
    with_altered_copies,
)
from cloud.training.trainer import default_threads, make_deterministic
from contracts.errors import BadRequest
from contracts.logging import get_logger
from contracts.routes import check_route_label
from contracts.tokenizer import TextTokenizer

log = get_logger("autoglm.cloud.training.new_route")

MAX_SUPPORT = 256
MIN_REPLAY = 100  # a gate's claim rate is calibrated on at least this many other-route examples
NEW_ROUTE_KEY = "new_route"  # checkpoint training.<key>
SUPPORT_TEXTS_KEY = "support_texts"  # training.new_route.<key> of a gated route: its examples (refits)
GATE_CONFIG_KEY = "gate_config"  # training.new_route.<key> of a gated route: its GateConfig


NEW_ROUTE_METHODS = ("top", "deep", "gate")
# the gate an operator grows outside the loop (``autoglm add-route --method gate``, the demo's route
# stage): an lr gate on the parent's and the base encoder's embeddings (round 4's selection), the
# request's word pieces (round 8's) and the parent's confidence, fitted and calibrated on the replay
# and one altered copy of each replay example (round 9's), claiming at most 0.1 % of it (round 10's;
# round 11's ``cat_pieces`` was selected on dev and withdrawn by round 12: its refit after a loop job
# lost 5.7 pt on dev; docs/arch/loop.md)
OPERATOR_GATE = GateConfig(
    kind="lr", claim_rate=0.001, feature="cat", confidence=True, tokens=True, replay_variants=1
)


@dataclass(frozen=True)
class NewRouteConfig:
    # "top": the last layer's adapter + head on cached features (``adapt``); "deep": every
    # layer's adapter + head end to end (``adapt_deep``, budget ``deep``); "gate": parent weights
    # untouched, a calibrated side scorer claims the route (``route_gate``, settings ``gate``)
    method: str = "top"
    init: str = "proto"  # "proto" (meta-learnt scale when the checkpoint is a MAML one) | "plain"
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    deep: DeepAdaptConfig = field(default_factory=DeepAdaptConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    # "top": lower the new output's bias until at most this share of the replay is routed to it
    margin_rate: float | None = None
    replay_size: int = 900  # examples of the checkpoint's routes replayed so they are not forgotten
    augment: int = 0  # altered copies of every support example added to the support (cloud.training.augment)
    seed: int = 0
    threads: int | None = None  # default: all cores (the 120 s target is for 2 cores)


@dataclass
class NewRouteResult:
    checkpoint_dir: Path
    routes: list[str]
    route: str
    support: int
    wall_s: float
    adapt_s: float
    cpu_s: float = 0.0  # CPU time of this process during the call (wall_s includes waiting for a busy CPU)
    gate: dict[str, Any] | None = None  # method "gate": the fitted gate (RouteGate.to_dict), as stored


def default_replay(routes: Sequence[str], size: int, seed: int = 0) -> list[Example]:
    """A seeded sample of the generator's training split for ``routes`` (never its test split)."""
    pool = [
        e
        for e in default_splits(seed, SplitSpec(train_per_template=3, eval_per_template=1))["train"]
        if e.route in set(routes)
    ]
    rng = random.Random(f"replay:{seed}")
    return rng.sample(pool, min(size, len(pool)))


def _support(route: str, examples: Sequence[str | Example]) -> list[Example]:
    out: list[Example] = []
    for i, ex in enumerate(examples):
        text = ex.text if isinstance(ex, Example) else ex
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(f"example {i} of route {route!r} is empty")
        if isinstance(ex, Example) and ex.route != route:
            raise BadRequest(f"example {i} is labelled {ex.route!r}, not {route!r}")
        out.append(Example(text.strip(), route, detect_lang(text), "support"))
    if not out:
        raise BadRequest(f"route {route!r}: no examples (give at least 1, better 8-16)")
    if len(out) > MAX_SUPPORT:
        raise BadRequest(
            f"route {route!r}: {len(out)} examples, at most {MAX_SUPPORT} (a larger set is a training job)"
        )
    return out


def train_new_route(
    base_checkpoint: Path,
    route: str,
    examples: Sequence[str | Example],
    out_dir: Path,
    *,
    tool_routes: Iterable[str] | None = None,
    config: NewRouteConfig | None = None,
    replay: list[Example] | None = None,
) -> NewRouteResult:
    """Write a checkpoint to ``out_dir`` that also routes ``route`` (learnt from ``examples``).

    ``tool_routes``: the routes registered tools serve; given, a route none serves is refused.
    ``replay``: examples of the checkpoint's routes (default: :func:`default_replay`).
    """
    cfg = config or NewRouteConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    make_deterministic(cfg.seed, cfg.threads or default_threads(1))
    model, meta = load_checkpoint(Path(base_checkpoint))
    if model.route_gates:  # the grown checkpoint's training.new_route would replace the gate: its route dies
        gated = next(iter(model.route_gates.values())).route
        raise BadRequest(
            f"{base_checkpoint}: route {gated!r} is gated and a checkpoint holds one gated route; growing "
            "another would drop its gate: grow both from the gate's parent checkpoint, or retrain"
        )
    set_name = next(iter(meta.adapter_sets))
    routes = list(meta.adapter_sets[set_name].routes)
    if tool_routes is not None:
        if not check_route_label(route, routes, tool_routes):
            raise BadRequest(
                f"route {route!r} is already one of the model's routes; label examples for it and run "
                "a training job instead"
            )
    else:
        check_route_label(route, routes, [route])  # the name's shape; an existing route is refused below
        if route in routes:
            raise BadRequest(
                f"route {route!r} is already one of the model's routes; label examples for it and "
                "run a training job instead"
            )
    support = _support(route, examples)
    extra_support = augment_support(support, cfg.augment, cfg.seed) if cfg.augment > 0 else []
    rep = replay if replay is not None else default_replay(routes, cfg.replay_size, cfg.seed)
    rep = [e for e in rep if e.route in routes]
    tokenizer = checkpoint_tokenizer(meta)
    row_init = row_init_of(meta)
    grown: FastHead | DeepHead
    extra_info: dict[str, object] = {}
    if cfg.method == "top":
        train_f = top_features(model, set_name, tokenizer, support + extra_support)
        sup_f = train_f.subset(range(len(support)))
        rep_f = top_features(model, set_name, tokenizer, rep)
        fast = FastHead.from_model(model, set_name)
        t_adapt = time.perf_counter()
        grown = grow(fast, route, init=cfg.init, support=sup_f, row_init=row_init, seed=cfg.seed)
        grown = adapt(grown, train_f, rep_f, cfg.adapt, seed=cfg.seed)
        if cfg.margin_rate is not None:
            extra_info["bias_lowered"] = lower_new_bias(grown, rep_f, cfg.margin_rate)
        adapt_s = time.perf_counter() - t_adapt
        with torch.no_grad():
            support_acc = float((grown.logits(sup_f).argmax(-1) == len(grown.routes) - 1).float().mean())
        steps, lr = cfg.adapt.steps, cfg.adapt.lr
    elif cfg.method == "deep":
        start = first_adapted_layer(model, cfg.deep.layers)
        train_l = layer_features(model, set_name, tokenizer, support + extra_support, start)
        sup_l = train_l.subset(range(len(support)))
        rep_l = layer_features(model, set_name, tokenizer, rep, start)
        t_adapt = time.perf_counter()
        deep = DeepHead.from_model(model, set_name, start)
        grown = deep.grown(route, init=cfg.init, support=sup_l, row_init=row_init, seed=cfg.seed)
        grown = adapt_deep(grown, train_l, rep_l, cfg.deep, seed=cfg.seed)
        adapt_s = time.perf_counter() - t_adapt
        support_acc = float((grown.logits(sup_l).argmax(-1) == len(grown.routes) - 1).float().mean())
        steps, lr = cfg.deep.steps, cfg.deep.lr
    elif cfg.method == "gate":
        t_adapt = time.perf_counter()
        sup_g = with_altered_copies(support + extra_support, cfg.gate.support_variants, cfg.seed)
        sup_e = gate_rows(model, set_name, tokenizer, cfg.gate, sup_g)
        rep_g = with_altered_copies(rep, cfg.gate.replay_variants, cfg.seed)
        rep_e = gate_rows(model, set_name, tokenizer, cfg.gate, rep_g)
        gate = fit_gate_on(route, sup_e, rep_e, cfg.gate, cfg.seed, tokenizer.special_ids)
        grown = inert_grown(FastHead.from_model(model, set_name), route)
        adapt_s = time.perf_counter() - t_adapt
        support_acc = float(gate.claims(*sup_e.first(len(support))).float().mean())
        extra_info["gate"] = gate.to_dict()
        # what a refit needs when the loop's fine-tune moves the embedding the gate reads
        extra_info[GATE_CONFIG_KEY] = asdict(cfg.gate)
        extra_info[SUPPORT_TEXTS_KEY] = [e.text for e in support]
        steps, lr = 0, 0.0
    else:
        raise BadRequest(f"new-route method must be one of {list(NEW_ROUTE_METHODS)}, not {cfg.method!r}")
    wall = time.perf_counter() - t0
    extra = {
        NEW_ROUTE_KEY: {
            "route": route,
            "support": len(support),
            "method": cfg.method,
            "init": cfg.init,
            "adapted_layers": {"deep": cfg.deep.layers, "gate": 0}.get(cfg.method, 1),
            "supcon": cfg.deep.supcon if cfg.method == "deep" else 0.0,
            "kd": cfg.deep.kd if cfg.method == "deep" else cfg.adapt.kd,
            "anchor": cfg.deep.anchor if cfg.method == "deep" else cfg.adapt.anchor,
            "augmented": len(extra_support),
            "meta_row_init": row_init is not None,
            "parent_checkpoint": str(base_checkpoint),
            "replay": len(rep),
            "steps": steps,
            "lr": lr,
            "seed": cfg.seed,
            "support_accuracy": support_acc,
            "wall_s": round(wall, 2),
            **({"margin_rate": cfg.margin_rate} if cfg.margin_rate is not None else {}),
            **extra_info,
        }
    }
    write_fast_checkpoint(model, meta, set_name, grown, Path(out_dir), training_extra=extra)
    wall = time.perf_counter() - t0
    log.info("new route trained", extra={"route": route, "support": len(support), "wall_s": round(wall, 2)})
    gate_doc = extra_info.get("gate")
    return NewRouteResult(
        Path(out_dir),
        grown.routes,
        route,
        len(support),
        wall,
        adapt_s,
        time.process_time() - c0,
        gate=gate_doc if isinstance(gate_doc, dict) else None,
    )


class GateRows(NamedTuple):
    """What a gate reads for some examples, in :meth:`RouteGate.claims`' argument order."""

    rows: torch.Tensor  # what the gate's feature reads (:func:`gate_input`)
    confidence: torch.Tensor | None  # the parent's largest old-route probability (when the gate reads it)
    token_ids: list[list[int]] | None  # each example's tokenizer ids (when the gate reads word pieces)

    def first(self, n: int) -> GateRows:
        return GateRows(
            self.rows[:n],
            None if self.confidence is None else self.confidence[:n],
            None if self.token_ids is None else self.token_ids[:n],
        )


def gate_rows(
    model: AutoGLMModel,
    set_name: str,
    tokenizer: TextTokenizer,
    cfg: GateConfig,
    examples: Sequence[Example],
    old_routes: int | None = None,
) -> GateRows:
    """The rows a gate of ``cfg.feature`` reads for ``examples``: the model's embedding output (from
    the cached top features), the base encoder's, or both (:func:`gate_input`); with
    ``cfg.confidence`` also the parent's largest probability over its first ``old_routes`` router
    outputs (all of them by default; a gated model's last output is its inert row), and with
    ``cfg.tokens`` each example's tokenizer ids."""
    feats = top_features(model, set_name, tokenizer, examples)
    fast = FastHead.from_model(model, set_name)
    base = (
        base_embeddings(model, tokenizer, feats.texts, feature=cfg.feature)
        if BASE_VIEWS[cfg.feature]
        else None
    )
    rows = gate_input(cfg.feature, embeddings(fast, feats) if cfg.feature != "base" else None, base)
    conf = parent_confidence(fast.logits(feats)[:, :old_routes]) if cfg.confidence else None
    return GateRows(rows, conf, tokenizer.encode_ids(feats.texts) if cfg.tokens else None)


def fit_gate_on(
    route: str, support: GateRows, replay: GateRows, cfg: GateConfig, seed: int, special: Sequence[int]
) -> RouteGate:
    """:func:`fit_gate` on what :func:`gate_rows` computed for the support and the replay."""
    return fit_gate(
        route,
        support.rows,
        replay.rows,
        cfg,
        seed=seed,
        confidence=(support.confidence, replay.confidence),
        tokens=(support.token_ids, replay.token_ids),
        special=special,
    )


def stored_gate_support(training: dict[str, Any], route: str) -> list[str]:
    """The examples gated ``route`` was grown from (``training.new_route.support_texts``): what a
    refit needs. A checkpoint grown before they were stored is refused in one line."""
    stored = (training.get(NEW_ROUTE_KEY) or {}).get(SUPPORT_TEXTS_KEY)
    if not isinstance(stored, list) or not stored:
        raise BadRequest(
            f"the checkpoint routes {route!r} with a gate, but does not keep the examples it was grown "
            "from, so the gate cannot follow a fine-tune: grow the route again with `autoglm add-route "
            "--method gate` and register that before running the loop on it"
        )
    return [str(t) for t in stored]


@dataclass
class GateRefit:
    info: dict[str, Any]  # the checkpoint's new ``training.new_route`` (gate and support replaced)
    gate: RouteGate
    support: int
    added: int  # labelled examples of the route added to the stored support


def refit_route_gate(
    model: AutoGLMModel,
    training: dict[str, Any],
    set_name: str,
    tokenizer: TextTokenizer,
    labelled: Sequence[str] = (),
    *,
    seed: int = 0,
    fallback_replay: Sequence[Example] = (),
    negatives: Sequence[Example] = (),
) -> GateRefit:
    """Fit the gated route's gate again on ``model`` (whose adapters a fine-tune moved, so the
    embedding the old gate was calibrated on is gone), from the support stored at growth plus
    ``labelled`` examples of the route (the loop's labelled hard examples; at most
    :data:`MAX_SUPPORT` in all, the stored ones first), with the same kind, feature and claim
    rate, calibrated on a fresh replay of the other routes (the generator's, as at growth; a model
    whose routes the generator does not know uses ``fallback_replay``, e.g. its own run's training
    data) and on ``negatives`` (labelled examples of the other routes: the loop's hard examples,
    with ``loop_gate_hard_negatives``). Attaches the gate to ``model``."""
    info = dict(training.get(NEW_ROUTE_KEY) or {})
    old = RouteGate.from_dict(info["gate"])
    stored = stored_gate_support(training, old.route)
    texts = list(dict.fromkeys([*stored, *(t.strip() for t in labelled if t.strip())]))[:MAX_SUPPORT]
    fields = GateConfig.__dataclass_fields__
    saved = info.get(GATE_CONFIG_KEY)
    cfg = (
        GateConfig(**{k: v for k, v in saved.items() if k in fields})
        if isinstance(saved, dict)
        else GateConfig(kind=old.kind, claim_rate=old.claim_rate, feature=old.feature)
    )
    routes = [r for r in model.adapter_set(set_name).routes if r != old.route]
    rep = default_replay(routes, int(info.get("replay") or 900), seed)
    if len(rep) < MIN_REPLAY:
        rep = [e for e in fallback_replay if e.route in set(routes)]
    if len(rep) < MIN_REPLAY:
        raise BadRequest(
            f"route {old.route!r}: {len(rep)} examples of the other routes to calibrate its gate on, "
            f"at least {MIN_REPLAY}"
        )
    support = [Example(t, old.route, detect_lang(t), "support") for t in texts]
    n_old = len(model.adapter_set(set_name).routes) - 1  # the gated route's output is the last, inert
    sup_g = with_altered_copies(support, cfg.support_variants, seed)
    sup_e = gate_rows(model, set_name, tokenizer, cfg, sup_g, n_old)
    wrong = [e.route for e in negatives if e.route == old.route or e.route not in set(routes)]
    if wrong:
        raise BadRequest(
            f"route {old.route!r}: a negative for its gate must name another of the model's routes, "
            f"not {wrong[0]!r}"
        )
    rep_g = with_altered_copies([*rep, *negatives], cfg.replay_variants, seed)
    rep_e = gate_rows(model, set_name, tokenizer, cfg, rep_g, n_old)
    gate = fit_gate_on(old.route, sup_e, rep_e, cfg, seed, tokenizer.special_ids)
    model.route_gates[set_name] = gate
    info.update(
        {
            "gate": gate.to_dict(),
            GATE_CONFIG_KEY: asdict(cfg),
            SUPPORT_TEXTS_KEY: texts,
            "support": len(texts),
            "support_accuracy": float(gate.claims(*sup_e.first(len(support))).float().mean()),
            "refits": int(info.get("refits") or 0) + 1,
        }
    )
    known = set(stored)
    return GateRefit(info, gate, len(texts), sum(t not in known for t in texts))
