"""New route from k examples: MAML initialisation vs plain fine-tuning from the current adapters.

    python benchmarks/bench_loop.py [--base-checkpoint DIR] [--seeds 0 1 2] [--ks 4 8 16]
        [--deep-ks 16] [--methods gate_proto gate_knn gate_lr plain proto proto_margin maml top_kd deep
        deep_sc deep_kd deep_kd_aug] [--dev]

Side by side in one run, every method with the same adaptation budget (``AdaptConfig``: steps,
learning rate, replay batch) on the same support examples and the same cached features:

- ``plain``: the current adapters, the router head grown by one freshly initialised output;
- ``proto``: the current adapters, the new output initialised from the support examples' mean
  (scale and bias: the mean of the existing outputs) -- the ablation without meta-learning;
- ``maml``: the first-order-MAML checkpoint (``cloud.training.maml.meta_train`` on the current
  adapters; its top adapter, head and new-output scale/bias are meta-learnt);
- ``deep`` / ``deep_sc``: every layer's adapter + the head end to end (``adapt_deep``, its own
  budget ``DeepAdaptConfig``), proto initialisation; ``deep_sc`` adds a supervised-contrastive loss;
- ``top_kd`` / ``deep_kd``: ``proto`` / ``deep`` plus distillation of the parent's old-route logits
  on the replay batch and an L2 anchor to the parent's weights (``deep_kd``: 64 replay/step);
  ``deep_kd_aug``: ``deep_kd`` plus 2 seeded word/character-drop variants of every support example;
- ``gate_proto`` / ``gate_knn`` / ``gate_lr``: every parent weight untouched; a side scorer on the
  parent's centred embedding (cosine to the support mean / to the nearest support example / a
  class-balanced logistic regression) claims a request for the new route when its score is above a
  threshold that claims at most 0.2 % of the replay (``cloud.training.route_gate``);
- ``proto_margin``: ``proto``, then the new output's bias lowered until at most 0.2 % of the replay
  is routed to it.

``--dev`` runs the method-selection protocol instead (docs/EVALUATION.md, "New-route method
selection"): leave one *training* family out, other-route drop on the generator's validation
templates; it never reads the frozen file and writes its record under ``benchmarks/results/dev/``.

Evaluation data (frozen before anything was tuned, ``cloud/data/frozen/new_route_eval.jsonl``):
``shift_schedule``'s held-out paraphrase families (104 EN/ZH items, never support), and the
nine other routes' unseen generator templates (1847 items); the drop on the other routes is
measured against the current checkpoint on the same items. Also reported: the other routes'
held-out paraphrase families of ``reasoning_eval_v2.jsonl`` (72 items; ``_v3`` holds the same ones).

Targets (issue 15): from 16 examples >= 90 % on the held-out families and <= 0.5 pt drop on the
other routes (mean over seeds), <= 120 s of training on 2 CPU cores -- measured end to end by
``train_new_route`` (load, encode, adapt, write the checkpoint) with 2 torch threads.

The default base checkpoint is trained once (``BASE_RECIPE``, seed 0, about 4-10 min on 2 cores)
under ``.autoglm/bench/loop/base`` and reused; the MAML checkpoint is cached next to it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autoglm.bench.records import HeadlineRow, write_record  # noqa: E402
from cloud.data import Example  # noqa: E402
from cloud.training.augment import augment_support  # noqa: E402
from cloud.training.maml import (  # noqa: E402
    AdaptConfig,
    DeepAdaptConfig,
    DeepHead,
    FastHead,
    LayerFeatures,
    MamlConfig,
    TopFeatures,
    adapt,
    adapt_deep,
    grow,
)
from cloud.training.new_route import NewRouteConfig  # noqa: E402
from cloud.training.route_gate import (  # noqa: E402
    BASE_VIEWS,
    GateConfig,
    base_embeddings,
    embeddings,
    fit_gate,
    gate_input,
    lower_new_bias,
    parent_confidence,
    with_altered_copies,
)

WORK = ROOT / ".autoglm" / "bench" / "loop"
BASE_RECIPE: dict[str, Any] = {
    "epochs": 4,
    "lr": 3e-3,
    "train_per_template": 6,
    "eval_per_template": 4,
    "seed": 0,
    "patience": 2,
}
# last adapter + head on cached features (``adapt``); ``top_kd`` adds distillation + anchor.
# Fixed before the dev runs (docs/EVALUATION.md, "New-route method selection"; top_kd and the
# *_kd* deep methods: its second round).
KD, ANCHOR = 1.0, 1e-2
TOP_METHODS: dict[str, AdaptConfig] = {
    "plain": AdaptConfig(),
    "proto": AdaptConfig(),
    "proto_margin": AdaptConfig(),
    "maml": AdaptConfig(),
    "top_kd": AdaptConfig(kd=KD, anchor=ANCHOR),
}
# every layer's adapter + head end to end (``adapt_deep``), proto initialisation; ``deep_sc`` adds a
# supervised-contrastive loss on the pooled states; ``deep_kd`` distillation + anchor, 64 replay/step.
DEEP_METHODS: dict[str, DeepAdaptConfig] = {
    "deep": DeepAdaptConfig(),
    "deep_sc": DeepAdaptConfig(supcon=0.5),
    "deep_kd": DeepAdaptConfig(replay_batch=64, kd=KD, anchor=ANCHOR),
    "deep_kd_aug": DeepAdaptConfig(replay_batch=64, kd=KD, anchor=ANCHOR),
}
AUGMENT = {"deep_kd_aug": 2}  # altered copies of every support example (cloud.training.augment)
# third round (docs/EVALUATION.md, "Third selection round"): parent weights untouched, a gate claims
# at most CLAIM_RATE of the replay; ``proto_margin``: proto's new bias lowered to the same rate
CLAIM_RATE = 0.002
GATE_METHODS: dict[str, GateConfig] = {
    "gate_proto": GateConfig(kind="proto", claim_rate=CLAIM_RATE),
    "gate_knn": GateConfig(kind="knn", claim_rate=CLAIM_RATE),
    "gate_lr": GateConfig(kind="lr", claim_rate=CLAIM_RATE),
    # fourth round (docs/EVALUATION.md, "Fourth selection round"): the lr gate on the adapter-free
    # base encoder's embedding, and on both side by side
    "gate_lr_base": GateConfig(kind="lr", claim_rate=CLAIM_RATE, feature="base"),
    "gate_lr_cat": GateConfig(kind="lr", claim_rate=CLAIM_RATE, feature="cat"),
    # fifth round (docs/EVALUATION.md, "Fifth selection round"): the cat gate's claim rate
    "gate_lr_cat_q03": GateConfig(kind="lr", claim_rate=0.003, feature="cat"),
    "gate_lr_cat_q05": GateConfig(kind="lr", claim_rate=0.005, feature="cat"),
    # sixth round (docs/EVALUATION.md, "Sixth selection round"): the cat gate also reads the
    # parent's largest old-route probability
    "gate_lr_cat_conf": GateConfig(kind="lr", claim_rate=CLAIM_RATE, feature="cat", confidence=True),
    "gate_lr_cat_conf_q03": GateConfig(kind="lr", claim_rate=0.003, feature="cat", confidence=True),
    # seventh round (docs/EVALUATION.md, "Seventh selection round"): fitted and calibrated on the
    # replay and one altered copy of every replay example
    "gate_lr_cat_aug": GateConfig(kind="lr", claim_rate=CLAIM_RATE, feature="cat", replay_variants=1),
    "gate_lr_cat_conf_aug": GateConfig(
        kind="lr", claim_rate=CLAIM_RATE, feature="cat", confidence=True, replay_variants=1
    ),
    # eighth round (docs/EVALUATION.md, "Eighth selection round"): the request's word pieces too
    "gate_lr_cat_tok": GateConfig(kind="lr", claim_rate=CLAIM_RATE, feature="cat", tokens=True),
    "gate_lr_cat_conf_tok": GateConfig(
        kind="lr", claim_rate=CLAIM_RATE, feature="cat", confidence=True, tokens=True
    ),
    # ninth round (docs/EVALUATION.md, "Ninth selection round"): altered replay for the word-piece gates
    "gate_lr_cat_tok_aug": GateConfig(
        kind="lr", claim_rate=CLAIM_RATE, feature="cat", tokens=True, replay_variants=1
    ),
    "gate_lr_cat_conf_tok_aug": GateConfig(
        kind="lr", claim_rate=CLAIM_RATE, feature="cat", confidence=True, tokens=True, replay_variants=1
    ),
    # tenth round (docs/EVALUATION.md, "Tenth selection round"): fewer false claims for the last one
    "gate_lr_cat_conf_tok_aug_q01": GateConfig(
        kind="lr", claim_rate=0.001, feature="cat", confidence=True, tokens=True, replay_variants=1
    ),
    "gate_lr_cat_conf_tok_aug2": GateConfig(
        kind="lr", claim_rate=CLAIM_RATE, feature="cat", confidence=True, tokens=True, replay_variants=2
    ),
    # eleventh round (docs/EVALUATION.md, "Eleventh selection round"): the operator's gate with one
    # more view of the base encoder — its max-pooled token states, or its word pieces' input embeddings
    "gate_lr_catmax_conf_tok_aug_q01": GateConfig(
        kind="lr", claim_rate=0.001, feature="cat_max", confidence=True, tokens=True, replay_variants=1
    ),
    "gate_lr_catpieces_conf_tok_aug_q01": GateConfig(
        kind="lr", claim_rate=0.001, feature="cat_pieces", confidence=True, tokens=True, replay_variants=1
    ),
    # thirteenth round (docs/EVALUATION.md, "Thirteenth selection round"): altered copies of the
    # support among the gate's positives too
    "gate_lr_cat_conf_tok_aug_q01_sup1": GateConfig(
        kind="lr",
        claim_rate=0.001,
        feature="cat",
        confidence=True,
        tokens=True,
        replay_variants=1,
        support_variants=1,
    ),
    "gate_lr_cat_conf_tok_aug_q01_sup2": GateConfig(
        kind="lr",
        claim_rate=0.001,
        feature="cat",
        confidence=True,
        tokens=True,
        replay_variants=1,
        support_variants=2,
    ),
}
MARGIN = {"proto_margin": CLAIM_RATE}
METHODS = (*GATE_METHODS, *TOP_METHODS, *DEEP_METHODS)  # also the tie order of ``select`` (cheaper first)


def new_route_config(method: str, seed: int = 0, threads: int | None = None) -> NewRouteConfig:
    """The ``train_new_route`` settings of a benchmark method (``maml``: its checkpoint's, ``proto``)."""
    if method in GATE_METHODS:
        return NewRouteConfig(method="gate", gate=GATE_METHODS[method], seed=seed, threads=threads)
    if method in DEEP_METHODS:
        return NewRouteConfig(
            method="deep",
            deep=DEEP_METHODS[method],
            augment=AUGMENT.get(method, 0),
            seed=seed,
            threads=threads,
        )
    return NewRouteConfig(
        method="top",
        init="plain" if method == "plain" else "proto",
        adapt=TOP_METHODS[method],
        augment=AUGMENT.get(method, 0),
        margin_rate=MARGIN.get(method),
        seed=seed,
        threads=threads,
    )


def production_method() -> str:
    """The benchmark method ``train_new_route``'s default settings are (``NewRouteConfig()``)."""
    for m in METHODS:
        if m != "maml" and new_route_config(m) == NewRouteConfig():
            return m
    raise AssertionError("NewRouteConfig's default is none of the benchmark's methods")


TARGET_NEW = 0.90
TARGET_DROP_PT = 0.5
TARGET_TRAIN_S = 120.0

AdaptFn = Callable[[FastHead, TopFeatures, TopFeatures, AdaptConfig, int], FastHead]


@dataclass
class Run:
    method: str
    k: int
    seed: int
    new_acc: float
    other_acc: float
    drop_pt: float
    para_acc: float
    false_new: float  # share of other-route items routed to the new route
    adapt_s: float


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    xs = [x for x in xs if x == x]  # NaN: not measured (the dev protocol has no paraphrase set)
    if not xs:
        return float("nan"), 0.0
    return float(statistics.fmean(xs)), float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


def accuracy(pred: Sequence[str], gold: Sequence[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / max(1, len(gold))


def run_one(
    method: str,
    k: int,
    seed: int,
    fast: FastHead,
    row_init: tuple[float, float] | None,
    route: str,
    support: TopFeatures,
    replay: TopFeatures,
    evals: dict[str, TopFeatures],
    base_other_acc: float,
    cfg: AdaptConfig,
    adapt_fn: AdaptFn = adapt,
    margin_rate: float | None = None,
) -> Run:
    """Grow ``fast`` by ``route``, adapt on ``support`` + replay, evaluate on ``evals``
    (``margin_rate``: then lower the new output's bias to claim at most that share of the replay)."""
    t0 = time.perf_counter()
    init = "plain" if method == "plain" else "proto"
    grown = grow(
        fast, route, init=init, support=support, row_init=row_init if method == "maml" else None, seed=seed
    )
    grown = adapt_fn(grown, support, replay, cfg, seed)
    if margin_rate is not None:
        lower_new_bias(grown, replay, margin_rate)
    adapt_s = time.perf_counter() - t0
    new, other, para = evals["new"], evals["other"], evals["para"]
    pred_other = grown.predict(other)
    other_acc = accuracy(pred_other, other.routes)
    return Run(
        method,
        k,
        seed,
        accuracy(grown.predict(new), new.routes),
        other_acc,
        100.0 * (base_other_acc - other_acc),
        accuracy(grown.predict(para), para.routes) if len(para) else float("nan"),
        sum(p == route for p in pred_other) / max(1, len(pred_other)),
        adapt_s,
    )


def run_one_gate(
    method: str,
    k: int,
    seed: int,
    route: str,
    support_emb: tuple[Any, Any, Any, Any],
    replay_emb: tuple[Any, Any, Any, Any],
    evals: dict[str, tuple[Any, Any, Any, Any, list[str], list[str]]],
    base_other_acc: float,
    cfg: GateConfig,
    special: Sequence[int] = (),
) -> Run:
    """:func:`run_one` for the gated methods: the parent's weights untouched, a gate fitted on the
    embeddings of the support and the replay (each ``(parent's, base encoder's or None, the parent's
    largest old-route probability, token ids)``). ``evals``: per set, ``(parent's embeddings, base
    embeddings, the parent's confidence, token ids, the parent's routes, gold routes)``."""
    t0 = time.perf_counter()

    def rows(emb: Any, base: dict[tuple[str, ...], Any] | None) -> Any:
        return gate_input(cfg.feature, emb, base[BASE_VIEWS[cfg.feature]] if base else None)

    sup, rep = rows(*support_emb[:2]), rows(*replay_emb[:2])
    gate = fit_gate(
        route,
        sup,
        rep,
        cfg,
        seed=seed,
        confidence=(support_emb[2], replay_emb[2]),
        tokens=(support_emb[3], replay_emb[3]),
        special=special,
    )
    adapt_s = time.perf_counter() - t0

    def acc(name: str) -> tuple[float, list[str]]:
        emb, base, conf, ids, parent, gold = evals[name]
        pred = gate.routed(rows(emb, base), parent, conf, ids)
        return (accuracy(pred, gold) if gold else float("nan")), pred

    new_acc, _ = acc("new")
    other_acc, pred_other = acc("other")
    para_acc, _ = acc("para")
    return Run(
        method,
        k,
        seed,
        new_acc,
        other_acc,
        100.0 * (base_other_acc - other_acc),
        para_acc,
        sum(p == route for p in pred_other) / max(1, len(pred_other)),
        adapt_s,
    )


def run_one_deep(
    method: str,
    k: int,
    seed: int,
    deep: DeepHead,
    route: str,
    support: LayerFeatures,
    replay: LayerFeatures,
    evals: dict[str, LayerFeatures],
    base_other_acc: float,
    cfg: DeepAdaptConfig,
    augmented: LayerFeatures | None = None,
    teacher: Any = None,
) -> Run:
    """:func:`run_one` for the deep methods: every adapter from ``deep.start`` up + the head.
    ``augmented``: altered support copies, trained on with the support (the new output's
    initialisation reads ``support`` only); ``teacher``: the parent's logits on ``replay``."""
    t0 = time.perf_counter()
    train = LayerFeatures.concat([support, augmented]) if augmented is not None else support
    grown = adapt_deep(
        deep.grown(route, init="proto", support=support, seed=seed),
        train,
        replay,
        cfg,
        seed,
        teacher=teacher,
    )
    adapt_s = time.perf_counter() - t0
    new, other, para = evals["new"], evals["other"], evals.get("para")
    pred_other = grown.predict(other)
    other_acc = accuracy(pred_other, other.routes)
    return Run(
        method,
        k,
        seed,
        accuracy(grown.predict(new), new.routes),
        other_acc,
        100.0 * (base_other_acc - other_acc),
        accuracy(grown.predict(para), para.routes) if para is not None and len(para) else float("nan"),
        sum(p == route for p in pred_other) / max(1, len(pred_other)),
        adapt_s,
    )


def summarise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in sorted({(r.method, r.k) for r in runs}):
        rs = [r for r in runs if (r.method, r.k) == key]
        row: dict[str, Any] = {"n_seeds": len(rs)}
        for field in ("new_acc", "other_acc", "drop_pt", "para_acc", "false_new", "adapt_s"):
            m, s = mean_sd([getattr(r, field) for r in rs])
            row[field] = {"mean": m, "sd": s}
        out[f"{key[0]}@{key[1]}"] = row
    return out


def targets(
    summary: dict[str, dict[str, Any]], train_s: Sequence[float], method: str = "maml", k: int = 16
) -> dict[str, bool]:
    """The issue's targets on the means over seeds (a missing row fails)."""
    row = summary.get(f"{method}@{k}")
    return {
        "new_route": bool(row and row["new_acc"]["mean"] >= TARGET_NEW),
        "other_drop": bool(row and row["drop_pt"]["mean"] <= TARGET_DROP_PT),
        "train_time": bool(train_s) and statistics.fmean(train_s) <= TARGET_TRAIN_S,
    }


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ensure_base(path: Path | None, threads: int) -> Path:
    from cloud.training.config import TrainConfig
    from cloud.training.trainer import train

    if path is not None:
        return path
    out = WORK / "base"
    if (out / "checkpoint.yaml").is_file():
        return out
    print(f"training the base checkpoint once ({BASE_RECIPE}) -> {out}", flush=True)
    train(TrainConfig(out_dir=out, num_threads=threads, **BASE_RECIPE), progress=False)
    return out


def ensure_maml(base: Path, cfg: MamlConfig) -> tuple[Path, bool]:
    from cloud.model.checkpoint import read_checkpoint_meta
    from cloud.training.maml import meta_train

    key = _sha(
        {
            "base": read_checkpoint_meta(base).to_dict()["adapter_sets"],
            "base_path": str(base.resolve()),
            "created": read_checkpoint_meta(base).created_at,
            "cfg": asdict(cfg),
        }
    )
    out = WORK / f"maml-{key}"
    if (out / "checkpoint.yaml").is_file():
        return out, True
    meta_train(base, out, cfg)
    return out, False


# --------------------------------------------------------------------------------------------
# dev protocol (docs/EVALUATION.md, "New-route method selection"): the five *training* families only

DEV_QUERY_SEED = 101  # slot fillings of the held-back training family (never a support seed)
DEV_OTHER_SEED = 0  # the generator's validation templates of seed 0 (not the frozen test templates)


def dev_families() -> list[str]:
    from cloud.data.new_route import NEW_ROUTE, NEW_ROUTE_FAMILIES

    return [f.id for f in NEW_ROUTE_FAMILIES[NEW_ROUTE] if f.split == "train"]


def dev_support(k: int, held: str, seed: int) -> list[Example]:
    """``k`` support examples from the training families other than ``held``: the same
    round-robin over (family, language) as ``support_set``, with ``held`` left out."""
    import random

    from cloud.data.new_route import NEW_ROUTE, support_pool

    by_key: dict[tuple[str, str], list[Example]] = {}
    for ex in support_pool(NEW_ROUTE, seed):
        if ex.template_id != held:
            by_key.setdefault((ex.template_id, ex.lang), []).append(ex)
    keys = sorted(by_key)
    random.Random(f"support-order:{NEW_ROUTE}:{seed}").shuffle(keys)
    out: list[Example] = []
    i = 0
    while len(out) < k and any(by_key.values()):
        bucket = by_key[keys[i % len(keys)]]
        if bucket:
            out.append(bucket.pop(0))
        i += 1
    return out


def dev_queries(held: str) -> list[Example]:
    from cloud.data.new_route import NEW_ROUTE, family_examples

    return [e for e in family_examples(NEW_ROUTE, "train", 6, DEV_QUERY_SEED) if e.template_id == held]


def dev_other(routes: Sequence[str]) -> list[Example]:
    from cloud.data import SplitSpec, default_splits

    return [
        e for e in default_splits(DEV_OTHER_SEED, SplitSpec(eval_per_template=4))["val"] if e.route in routes
    ]


def select(summary: dict[str, dict[str, Any]], k: int = 16) -> str | None:
    """The rule written before the dev run: highest mean held-back-family accuracy among the
    methods whose mean other-route drop is <= the target; a method within 1 pt of the best that
    is cheaper (gates, then last adapter + head, then every adapter: ``METHODS``' order) wins the tie."""
    ok = {
        key.split("@")[0]: row["new_acc"]["mean"]
        for key, row in summary.items()
        if key.endswith(f"@{k}") and row["drop_pt"]["mean"] <= TARGET_DROP_PT
    }
    if not ok:
        return None
    best = max(ok.values())
    near = [m for m in METHODS if m in ok and ok[m] >= best - 0.01]
    cheap = [m for m in near if m in GATE_METHODS or m in TOP_METHODS]
    return (cheap or near)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--base-checkpoint", type=Path, default=None, help="current checkpoint (default: trained once)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument(
        "--deep-ks", type=int, nargs="+", default=[16], help="k values of the deep methods (slower)"
    )
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument(
        "--dev",
        action="store_true",
        help="the method-selection protocol on the training families only (no frozen item is read)",
    )
    ap.add_argument(
        "--time-methods",
        nargs="+",
        choices=[m for m in METHODS if m != "maml"],
        default=None,
        help="methods whose train_new_route is timed besides the production one (default: all of the run)",
    )
    ap.add_argument("--maml-tasks", type=int, default=MamlConfig().tasks)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the 120 s target is for 2 cores)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from cloud.data.new_route import NEW_ROUTE, load_frozen_new_route_eval, support_set
    from cloud.data.paraphrase import load_frozen_eval
    from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint
    from cloud.training.maml import (
        first_adapted_layer,
        layer_features,
        row_init_of,
        top_features,
    )
    from cloud.training.new_route import default_replay, train_new_route

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    base = ensure_base(args.base_checkpoint, args.threads)
    methods = [m for m in METHODS if m in args.methods]
    if args.dev and "maml" in methods:
        methods.remove("maml")  # a meta-trained init is selected on its own tasks, not here
    maml_dir: Path | None = None
    reused = False
    maml_meta = None
    maml_model = None
    if "maml" in methods:
        t0 = time.perf_counter()
        maml_dir, reused = ensure_maml(base, MamlConfig(tasks=args.maml_tasks))
        maml_s = time.perf_counter() - t0
        print(
            f"maml checkpoint: {maml_dir} ({'reused' if reused else f'meta-trained in {maml_s:.0f} s'})",
            flush=True,
        )
        maml_model, maml_meta = load_checkpoint(maml_dir)

    model, meta = load_checkpoint(base)
    set_name = next(iter(meta.adapter_sets))
    routes = list(meta.adapter_sets[set_name].routes)
    if maml_model is not None:
        base_sd = model.adapter_set(set_name).state_dict()
        maml_sd = maml_model.adapter_set(set_name).state_dict()
        last = f"adapters.{model.config.num_hidden_layers - 1}."
        assert all(
            torch.equal(v, maml_sd[k])
            for k, v in base_sd.items()
            if k.startswith("adapters.") and not k.startswith(last)
        ), "the MAML checkpoint must share the lower adapters (the cached features are the same)"
    tok = checkpoint_tokenizer(meta)
    deep_methods = [m for m in methods if m in DEEP_METHODS]
    starts = {first_adapted_layer(model, DEEP_METHODS[m].layers) for m in deep_methods}
    start = min(starts) if starts else 0
    assert len(starts) <= 1, "deep methods of one run share their cached layer"
    rep_ex = default_replay(routes, NewRouteConfig().replay_size, 0)

    # the evaluation data: per "case" (frozen: one; dev: one per held-back training family)
    cases: dict[str, tuple[list[Example], list[Example], list[Example]]]
    if args.dev:
        other_ex = dev_other(routes)
        cases = {f: (dev_queries(f), other_ex, []) for f in dev_families()}
    else:
        frozen = load_frozen_new_route_eval()
        para = [
            Example(it.text, it.route, it.lang, it.families[0])
            for it in load_frozen_eval()
            if it.kind == "route"
        ]
        cases = {
            "frozen": (
                [it.to_example() for it in frozen if it.kind == "new"],
                [it.to_example() for it in frozen if it.kind == "other"],
                para,
            )
        }

    def support_of(case: str, k: int, s: int) -> list[Example]:
        return dev_support(k, case, s) if args.dev else support_set(k, seed=s)

    t0 = time.perf_counter()
    other_t = top_features(model, set_name, tok, next(iter(cases.values()))[1])
    top_evals = {
        c: {
            "new": top_features(model, set_name, tok, new),
            "other": other_t,
            "para": top_features(model, set_name, tok, para) if para else other_t.subset([]),
        }
        for c, (new, _o, para) in cases.items()
    }
    replay_t = top_features(model, set_name, tok, rep_ex)
    deep_evals: dict[str, dict[str, LayerFeatures]] = {}
    replay_l: LayerFeatures | None = None
    if deep_methods:
        other_l = layer_features(model, set_name, tok, next(iter(cases.values()))[1], start)
        deep_evals = {
            c: {
                "new": layer_features(model, set_name, tok, new, start),
                "other": other_l,
                "para": layer_features(model, set_name, tok, para, start) if para else other_l.subset([]),
            }
            for c, (new, _o, para) in cases.items()
        }
        replay_l = layer_features(model, set_name, tok, rep_ex, start)
    encode_s = time.perf_counter() - t0
    fast_base = FastHead.from_model(model, set_name)
    first = next(iter(cases))
    base_other = accuracy(fast_base.predict(top_evals[first]["other"]), top_evals[first]["other"].routes)
    base_para = (
        accuracy(fast_base.predict(top_evals[first]["para"]), top_evals[first]["para"].routes)
        if len(top_evals[first]["para"])
        else float("nan")
    )
    deep_base = DeepHead.from_model(model, set_name, start) if deep_methods else None
    # the gated methods read the parent's embeddings (and its routing) of every set, once
    # (the base encoder's too when a gate reads it)
    gate_evals: dict[str, dict[str, tuple[Any, Any, Any, Any, list[str], list[str]]]] = {}
    gated = [m for m in methods if m in GATE_METHODS]
    # one feature per distinct set of base-encoder views the gates read (cat and base share one)
    base_features = {BASE_VIEWS[GATE_METHODS[m].feature]: GATE_METHODS[m].feature for m in gated}
    base_features.pop((), None)

    def base_of(feats: TopFeatures) -> dict[tuple[str, ...], Any] | None:
        return (
            {v: base_embeddings(model, tok, feats.texts, feature=f) for v, f in base_features.items()}
            if base_features
            else None
        )

    def conf_of(feats: TopFeatures) -> Any:
        return parent_confidence(fast_base.logits(feats))

    def ids_of(feats: TopFeatures) -> list[list[int]]:
        return tok.encode_ids(feats.texts)

    replay_emb = (
        (embeddings(fast_base, replay_t), base_of(replay_t), conf_of(replay_t), ids_of(replay_t))
        if gated
        else None
    )
    # the replay and its altered copies (that many per example, seed 0 as the replay), for the gates
    # that are calibrated on them too
    replay_var_emb: dict[int, tuple[Any, Any, Any, Any]] = {}
    for v in sorted({GATE_METHODS[m].replay_variants for m in gated} - {0}):
        assert replay_emb is not None
        var_t = top_features(model, set_name, tok, with_altered_copies(rep_ex, v, 0)[len(rep_ex) :])
        var_emb = (embeddings(fast_base, var_t), base_of(var_t), conf_of(var_t))
        base_rows = (
            {views: torch.cat([replay_emb[1][views], var_emb[1][views]]) for views in replay_emb[1]}
            if replay_emb[1] is not None and var_emb[1] is not None
            else None
        )
        replay_var_emb[v] = (
            torch.cat([replay_emb[0], var_emb[0]]),
            base_rows,
            torch.cat([replay_emb[2], var_emb[2]]),
            replay_emb[3] + ids_of(var_t),
        )
    if replay_emb is not None:
        seen: dict[int, tuple[Any, Any, Any, Any, list[str], list[str]]] = {}

        def parent_view(feats: TopFeatures) -> tuple[Any, Any, Any, Any, list[str], list[str]]:
            if id(feats) not in seen:
                seen[id(feats)] = (
                    embeddings(fast_base, feats),
                    base_of(feats),
                    conf_of(feats),
                    ids_of(feats),
                    fast_base.predict(feats),
                    feats.routes,
                )
            return seen[id(feats)]

        gate_evals = {c: {n: parent_view(f) for n, f in ev.items()} for c, ev in top_evals.items()}
    # the parent's logits on the replay (the distillation target), once for every run
    deep_teacher = (
        deep_base.logits(replay_l)
        if deep_base is not None and replay_l is not None and any(DEEP_METHODS[m].kd for m in deep_methods)
        else None
    )
    base_other_deep = (
        accuracy(deep_base.predict(deep_evals[first]["other"]), deep_evals[first]["other"].routes)
        if deep_base is not None
        else base_other
    )
    maml_other = float("nan")
    fast_maml = FastHead.from_model(maml_model, set_name) if maml_model is not None else None
    if fast_maml is not None:
        maml_other = accuracy(fast_maml.predict(top_evals[first]["other"]), top_evals[first]["other"].routes)
    print(
        f"{'DEV protocol (training families only)' if args.dev else 'frozen evaluation'}: current "
        f"checkpoint {base}: other routes {base_other:.2%} ({'validation' if args.dev else 'unseen'} "
        f"templates, deep path {base_other_deep:.2%}), {base_para:.2%} (held-out paraphrase families); "
        f"encoding {encode_s:.0f} s; methods {methods}",
        flush=True,
    )

    runs: list[Run] = []
    per_case: list[dict[str, Any]] = []
    for method in methods:
        for case in cases:
            for k in args.deep_ks if method in DEEP_METHODS else args.ks:
                for s in args.seeds:
                    sup = support_of(case, k, s)
                    if method in GATE_METHODS:
                        assert replay_emb is not None
                        rep_gate = replay_var_emb.get(GATE_METHODS[method].replay_variants, replay_emb)
                        assert rep_gate is not None
                        sup_g = with_altered_copies(sup, GATE_METHODS[method].support_variants, s)
                        sup_t = top_features(model, set_name, tok, sup_g)
                        run = run_one_gate(
                            method,
                            k,
                            s,
                            NEW_ROUTE,
                            (embeddings(fast_base, sup_t), base_of(sup_t), conf_of(sup_t), ids_of(sup_t)),
                            rep_gate,
                            gate_evals[case],
                            base_other,
                            GATE_METHODS[method],
                            special=tok.special_ids,
                        )
                    elif method in DEEP_METHODS:
                        assert deep_base is not None and replay_l is not None
                        aug = augment_support(sup, AUGMENT[method], s) if method in AUGMENT else []
                        sup_all = layer_features(model, set_name, tok, sup + aug, start)
                        run = run_one_deep(
                            method,
                            k,
                            s,
                            deep_base,
                            NEW_ROUTE,
                            sup_all.subset(range(len(sup))),
                            replay_l,
                            deep_evals[case],
                            base_other_deep,
                            DEEP_METHODS[method],
                            augmented=sup_all.subset(range(len(sup), len(sup_all))) if aug else None,
                            teacher=deep_teacher if DEEP_METHODS[method].kd else None,
                        )
                    else:
                        fast = fast_maml if method == "maml" and fast_maml is not None else fast_base
                        run = run_one(
                            method,
                            k,
                            s,
                            fast,
                            row_init_of(maml_meta) if method == "maml" and maml_meta is not None else None,
                            NEW_ROUTE,
                            top_features(model, set_name, tok, sup),
                            replay_t,
                            top_evals[case],
                            base_other,
                            TOP_METHODS[method],
                            margin_rate=MARGIN.get(method),
                        )
                    per_case.append({"case": case, **asdict(run)})
                    print(
                        f"  {method}@{k} seed {s} {case}: new {run.new_acc:.1%}, drop {run.drop_pt:+.2f} pt, "
                        f"{run.adapt_s:.1f} s",
                        flush=True,
                    )
                    runs.append(run)
    if args.dev:
        # one number per (method, k, seed): the mean over the held-back families
        merged: list[Run] = []
        for mks in sorted({(r.method, r.k, r.seed) for r in runs}):
            rs = [r for r in runs if (r.method, r.k, r.seed) == mks]
            merged.append(
                Run(
                    mks[0],
                    mks[1],
                    mks[2],
                    *(
                        statistics.fmean(getattr(r, f) for r in rs)
                        for f in ("new_acc", "other_acc", "drop_pt", "para_acc", "false_new", "adapt_s")
                    ),
                )
            )
        runs = merged
    summary = summarise(runs)
    print(
        f"\n{'method@k':<12} {'held-out new route':>20} {'other-route drop (pt)':>22} "
        f"{'paraphrase other':>18} "
        f"{'false new':>10} {'adapt s':>8}"
    )
    for key, row in summary.items():

        def f(name: str, pct: bool = True, row: dict[str, Any] = row) -> str:
            m, s = row[name]["mean"], row[name]["sd"]
            return f"{m:.1%} ± {s:.1%}" if pct else f"{m:+.2f} ± {s:.2f}"

        print(
            f"{key:<12} {f('new_acc'):>20} {f('drop_pt', False):>22} {f('para_acc'):>18} "
            f"{f('false_new'):>10} "
            f"{row['adapt_s']['mean']:>8.2f}"
        )
    load = list(os.getloadavg())
    if args.dev:
        chosen = select(summary)
        print(f"selected on dev (rule in docs/EVALUATION.md): {chosen}; load {load}")
        if not args.no_record:
            write_record(
                "loop",
                {
                    "protocol": "dev",
                    "base_checkpoint": str(base),
                    "methods": methods,
                    "deep": {m: asdict(c) for m, c in DEEP_METHODS.items() if m in methods},
                    "adapt": {m: asdict(c) for m, c in TOP_METHODS.items() if m in methods},
                    "augment": {m: v for m, v in AUGMENT.items() if m in methods},
                    "gate": {m: asdict(c) for m, c in GATE_METHODS.items() if m in methods},
                    "margin": {m: v for m, v in MARGIN.items() if m in methods},
                    "seeds": args.seeds,
                    "ks": args.ks,
                    "deep_ks": args.deep_ks,
                    "families": list(cases),
                    "dev_query_seed": DEV_QUERY_SEED,
                    "dev_other": {"generator_seed": DEV_OTHER_SEED, "split": "val", "n": len(other_t)},
                    "base_other_accuracy": base_other,
                    "summary": summary,
                    "selected": chosen,
                    "runs": per_case,
                    "load_average": load,
                    "wall_s": time.perf_counter() - t_all,
                },
                [],
                out_dir=ROOT / "benchmarks" / "results" / "dev",
            )
        return 0

    # the time target: the public path end to end (load, encode, adapt, write), 2 threads, for the
    # production method (NewRouteConfig's default) and every other method of the run side by side
    prod = production_method()
    timed = [prod] + [m for m in (args.time_methods or methods) if m not in (prod, "maml")]
    train_s: dict[str, list[float]] = {m: [] for m in timed}
    train_cpu_s: dict[str, list[float]] = {m: [] for m in timed}
    for s in args.seeds:
        for m in timed:
            res = train_new_route(
                base,
                NEW_ROUTE,
                support_set(16, seed=s),
                WORK / f"grown-{m}-{s}",
                config=new_route_config(m, s, args.threads),
            )
            train_s[m].append(res.wall_s)
            train_cpu_s[m].append(res.cpu_s)
            print(
                f"  train_new_route {m} seed {s}: {res.wall_s:.1f} s wall, {res.cpu_s:.1f} s CPU", flush=True
            )
    # the written checkpoint (production method, first seed) routes like its fast weights: full forward
    grown_model, _ = load_checkpoint(WORK / f"grown-{prod}-{args.seeds[0]}")
    texts = [e.text for e in cases["frozen"][0]]
    ids, mask = tok(texts)
    with torch.no_grad():
        logits = grown_model(torch.from_numpy(ids), torch.from_numpy(mask)).route_logits
    grown_routes = grown_model.adapter_set(set_name).routes
    written_new_acc = sum(grown_routes[i] == NEW_ROUTE for i in logits.argmax(-1).tolist()) / len(texts)

    prod_method = prod
    met = targets(summary, train_s[prod], method=prod_method)
    tm, tsd = mean_sd(train_s[prod])
    cm, _ = mean_sd(train_cpu_s[prod])
    for m in timed:
        a, b = mean_sd(train_s[m])
        print(f"train_new_route ({m}, k=16, {args.threads} threads): {a:.1f} ± {b:.1f} s wall")
    print(
        f"written checkpoint ({prod}, seed {args.seeds[0]}) full forward: {written_new_acc:.1%} on the "
        f"held-out families"
    )
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    if args.no_record:
        return 0

    def ms(key: str, name: str, pct: bool = True) -> str:
        if key not in summary:
            return "—"
        m, s = summary[key][name]["mean"], summary[key][name]["sd"]
        return f"{m:.1%} ± {s:.1%}" if pct else f"{m:.2f} ± {s:.2f} pt"

    n = len(args.seeds)
    maml_note = "" if "maml" in methods else " (MAML not rerun: see the earlier record)"
    headline = []
    if f"{prod_method}@16" in summary:
        others = [m for m in methods if m not in ("plain", prod_method) and f"{m}@16" in summary]
        headline.append(
            HeadlineRow(
                what="New route `shift_schedule` from 16 examples (`loop`): held-out paraphrase families, "
                f"mean ± sd over {n} seeds (production method: {prod_method})",
                baseline=f"plain {ms('plain@16', 'new_acc')}{maml_note}",
                result=f"{prod_method} {ms(f'{prod_method}@16', 'new_acc')}, drop "
                f"{ms(f'{prod_method}@16', 'drop_pt', False)}"
                + "".join(
                    f"; {m} {ms(f'{m}@16', 'new_acc')}, drop {ms(f'{m}@16', 'drop_pt', False)}"
                    for m in others
                ),
                target=">= 90 %, <= 0.5 pt drop",
                met=met["new_route"] and met["other_drop"],
            )
        )
    old = [m for m in timed if m != prod]
    headline.append(
        HeadlineRow(
            what=f"New route training time (`train_new_route` method {prod}, k=16, {args.threads} threads, "
            f"load {load[0]:.1f})",
            baseline="; ".join(
                f"{m}: {mean_sd(train_s[m])[0]:.1f} ± {mean_sd(train_s[m])[1]:.1f} s" for m in old
            )
            or "—",
            result=f"{tm:.1f} ± {tsd:.1f} s wall, {cm:.1f} s CPU",
            target="<= 120 s",
            met=met["train_time"],
        )
    )
    small = [k for k in args.ks if k != 16 and f"maml@{k}" in summary]
    if small:
        headline.append(
            HeadlineRow(
                what="MAML vs plain fine-tuning, same budget, held-out families at k = "
                + " / ".join(map(str, small)),
                baseline=" / ".join(ms(f"plain@{k}", "new_acc") for k in small),
                result=" / ".join(ms(f"maml@{k}", "new_acc") for k in small),
            )
        )
    metrics = {
        "protocol": "frozen",
        "route": NEW_ROUTE,
        "base_checkpoint": str(base),
        "methods": methods,
        "production_method": prod,
        "maml_checkpoint": str(maml_dir) if maml_dir else None,
        "maml_reused": reused,
        "maml_note": maml_note.strip(" ()") or None,
        "base_training": meta.training.get("config", {}),
        "maml": maml_meta.training.get("maml", {}) if maml_meta is not None else {},
        "adapt": {m: asdict(c) for m, c in TOP_METHODS.items() if m in methods},
        "deep": {m: asdict(c) for m, c in DEEP_METHODS.items() if m in methods},
        "augment": {m: v for m, v in AUGMENT.items() if m in methods},
        "gate": {m: asdict(c) for m, c in GATE_METHODS.items() if m in methods},
        "margin": {m: v for m, v in MARGIN.items() if m in methods},
        "seeds": args.seeds,
        "ks": args.ks,
        "deep_ks": args.deep_ks,
        "threads": args.threads,
        "eval_sizes": {k: len(v) for k, v in top_evals["frozen"].items()},
        "base_other_accuracy": base_other,
        "base_other_accuracy_deep_path": base_other_deep,
        "base_paraphrase_accuracy": base_para,
        "maml_init_other_accuracy": maml_other,
        "summary": summary,
        "runs": [asdict(r) for r in runs],
        "train_new_route_s": train_s,
        "train_new_route_cpu_s": train_cpu_s,
        "load_average": load,
        "written_checkpoint_new_accuracy": written_new_acc,
        "encode_s": encode_s,
        "targets": met,
        "wall_s": time.perf_counter() - t_all,
    }
    write_record("loop", metrics, headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
