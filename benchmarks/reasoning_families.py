"""More ways of saying each relation: graph hits@1 of the shipped path scorer trained on the
families of successive rounds, on the re-split 3 evaluation families (issue 13, item 4).

``python benchmarks/reasoning_families.py --bundle DIR [--seeds 0,1,2] [--break-labels]``
(``autoglm bench run reasoning_families -- --bundle DIR``). Protocol written before the first run:
docs/EVALUATION.md, "Re-split 3".

Every arm trains the path scorer as ``cloud.training.hop_scorer.train_heads`` does (variant
``path``, no phrase windows, length prior ``DEFAULT_LENGTH_PRIOR``): ``before`` as it shipped
before re-split 3 (re-split 2 families, 24 questions per pattern, 60 epochs); ``resplitN`` at
the shipped size (``PATH_TRAIN_PER_PATTERN`` x ``PATH_TRAIN_EPOCHS``, chosen on validation
families by ``--select``) on the training families as of round N (``train_items(resplit=N)``:
2 = two training families per relation, 3 = five to six, 4 = seven to eight and more frames;
``--arms``, default ``before``, the round before the shipped one and the shipped one; a
run with other arms or ``--break-labels`` writes a dev record). All are scored through the
exported ONNX graph the edge runs, on the graph questions of ``reasoning_eval_v3.jsonl``, whose
families no arm saw; the lexical cue scorer is the untrained baseline of the same run.
``--break-labels`` (a deliberately broken component, to show the benchmark can fail): the
last arm's training questions get the gold path of another question.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reasoning_ablation import BundleEncoder, graph_hits  # noqa: E402
from benchmarks.reasoning_priors import mean_sd  # noqa: E402
from cloud.data.paraphrase import FROZEN_EVAL, ParaItem, load_frozen_eval, train_items  # noqa: E402
from cloud.data.paraphrase_families import RESPLIT  # noqa: E402
from skillpack.kg.graph import default_graph  # noqa: E402
from skillpack.kg.reasoner import PathReasoner  # noqa: E402

ARMS = ("before", f"resplit{RESPLIT - 1}", f"resplit{RESPLIT}")  # as shipped before / now
KEYS = ("1hop_en", "2hop_en", "3hop_en", "1hop_zh", "2hop_zh", "3hop_zh", "all")
TARGETS = {"1hop": 0.95, "2hop": 0.92, "3hop": 0.88}


def broken(items: list[ParaItem], seed: int) -> list[ParaItem]:
    """Every kg question keeps its entity and gets the path (and answer) of a question about
    another relation from an entity of the same type; questions with no such path are dropped."""
    graph = default_graph()
    rng = random.Random(f"break:{seed}")
    kg = [it for it in items if it.kind == "kg"]
    paths: dict[str, set[tuple[str, ...]]] = {}
    for it in kg:
        paths.setdefault(graph.entities[it.start].type, set()).add(it.path)
    moved = []
    for q in kg:
        other = sorted(
            p
            for p in paths[graph.entities[q.start].type]
            if p != q.path and len(graph.follow(q.start, p)) == 1
        )
        if other:
            p = rng.choice(other)
            moved.append(replace(q, path=p, answer=graph.follow(q.start, p)[0]))
    return [it for it in items if it.kind != "kg"] + moved


def arm_config(arm: str) -> tuple[int, int, int]:
    """(re-split, questions per pattern, epochs) of an arm (``resplitN+MODE``: with the
    character granularity of that ``PathScorer`` char mode, :func:`arm_chars`)."""
    from cloud.training.hop_scorer import PATH_TRAIN_EPOCHS, PATH_TRAIN_PER_PATTERN

    if arm == "before":
        return 2, 24, 60
    base = arm.split("+", 1)[0]
    if not base.startswith("resplit") or not base[7:].isdigit():
        raise ValueError(f"arm {arm!r}: 'before', 'resplitN' or 'resplitN+MODE'")
    arm_chars(arm)
    return int(base[7:]), PATH_TRAIN_PER_PATTERN, PATH_TRAIN_EPOCHS


def arm_chars(arm: str) -> str:
    """The arm's character granularity ("" = off)."""
    from cloud.model.hop_scorer import CHAR_MODES

    mode = arm.split("+", 1)[1] if "+" in arm else ""
    if mode and mode not in CHAR_MODES:
        raise ValueError(f"arm {arm!r}: character mode {mode!r} is not one of {CHAR_MODES}")
    return mode


def scorer_of(enc: Any, items: list[ParaItem], seed: int, out: Path, epochs: int, chars: str = "") -> Any:
    from cloud.training.hop_scorer import DEFAULT_LENGTH_PRIOR, export_path_scorer, train_path_scorer
    from edge.agent.hop_scorer import OnnxPathScorer

    model, metrics = train_path_scorer(enc, items=items, seed=seed, phrases=False, epochs=epochs, chars=chars)
    onnx_path, meta_path = export_path_scorer(model, out, metrics, length_bias=DEFAULT_LENGTH_PRIOR["path"])
    return OnnxPathScorer(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")), enc)


# the training-size grid of --select (questions per pattern and language; epochs of the path scorer)
SELECT_GRID = [(24, 60), (48, 60), (96, 60), (24, 150), (96, 150), (192, 150), (96, 300), (192, 300)]


def select(bundle: Path, seed: int = 0) -> dict[str, Any]:
    """Choose the training size on the *validation* families (the last training family of each
    relation / implicit path, held out of the fit; ``validation_families``), never on the
    evaluation set: the current families, seed 0, hits@1 on every third validation question."""
    from benchmarks.reasoning_ablation import validation_families

    graph = default_graph()
    enc = BundleEncoder(bundle, ROOT / ".autoglm" / "bench" / "reasoning")
    val_fams = validation_families()
    curve: dict[str, Any] = {}
    # one validation set for every grid point (the largest draw's validation-family questions)
    largest = max(n for n, _ in SELECT_GRID)
    pool = [it for it in train_items(seed=seed, kg_per_pattern=largest) if it.kind == "kg"]
    val = [it for it in pool if set(it.families) & val_fams][::3]
    for per_pattern, epochs in SELECT_GRID:
        kg = [it for it in train_items(seed=seed, kg_per_pattern=per_pattern) if it.kind == "kg"]
        fit = [it for it in kg if not set(it.families) & val_fams]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="reasoning-families-select-") as tmp:
            scorer = scorer_of(enc, fit, seed, Path(tmp), epochs)
            hits = graph_hits(PathReasoner(graph, scorer=scorer), val)
        enc.save()
        key = f"{per_pattern}x{epochs}"
        curve[key] = {
            "fit": len(fit),
            "validation": len(val),
            "hits": {k: hits[k] for k in ("1hop", "2hop", "3hop", "all")},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"validation {key}: {curve[key]}", flush=True)
    best = max(curve, key=lambda k: curve[k]["hits"]["all"])
    return {
        "bundle": str(bundle),
        "seed": seed,
        "validation_families": sorted(val_fams),
        "curve": curve,
        "best": best,
    }


def select_granularity(bundle: Path, seeds: list[int], modes: tuple[str, ...] = ("gated",)) -> dict[str, Any]:
    """The character granularity off or in one of ``modes``, chosen like the training size: at
    the shipped size, on the validation families (held out of the fit), each seed its own draw;
    every validation question, per hop and language. Rule (docs/EVALUATION.md, "Character
    granularity"): the mode with the highest mean gain on all, if that gain is more than 1 pt and
    neither language's mean per-hop change is negative; else off."""
    from benchmarks.reasoning_ablation import validation_families
    from cloud.training.hop_scorer import PATH_TRAIN_EPOCHS, PATH_TRAIN_PER_PATTERN

    graph = default_graph()
    enc = BundleEncoder(bundle, ROOT / ".autoglm" / "bench" / "reasoning")
    val_fams = validation_families()
    variants = ("off", *modes)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        kg = [it for it in train_items(seed=seed, kg_per_pattern=PATH_TRAIN_PER_PATTERN) if it.kind == "kg"]
        fit = [it for it in kg if not set(it.families) & val_fams]
        val = [it for it in kg if set(it.families) & val_fams]
        row: dict[str, Any] = {"seed": seed, "fit": len(fit), "validation": len(val)}
        for name in variants:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="reasoning-families-chars-") as tmp:
                chars = "" if name == "off" else name
                scorer = scorer_of(enc, fit, seed, Path(tmp), PATH_TRAIN_EPOCHS, chars=chars)
                hits = graph_hits(PathReasoner(graph, scorer=scorer), val)
            enc.save()
            row[name] = {k: hits[k] for k in KEYS}
            row[name + "_seconds"] = round(time.perf_counter() - t0, 1)
            print(f"validation seed {seed} {name}: {row[name]}", flush=True)
        rows.append(row)
    summary = {v: {k: mean_sd([r[v][k] for r in rows]) for k in KEYS} for v in variants}
    gains: dict[str, Any] = {}
    for mode in modes:
        gains[mode] = {
            "all_pt": mean_sd([100 * (r[mode]["all"] - r["off"]["all"]) for r in rows]),
            "by_language_pt": {
                lang: mean_sd(
                    [
                        100
                        * sum(r[mode][f"{h}hop_{lang}"] - r["off"][f"{h}hop_{lang}"] for h in (1, 2, 3))
                        / 3
                        for r in rows
                    ]
                )
                for lang in ("en", "zh")
            },
        }
    ok = [
        m
        for m in modes
        if gains[m]["all_pt"]["mean"] > 1.0
        and all(g["mean"] >= 0.0 for g in gains[m]["by_language_pt"].values())
    ]
    return {
        "bundle": str(bundle),
        "seeds": seeds,
        "per_pattern": PATH_TRAIN_PER_PATTERN,
        "epochs": PATH_TRAIN_EPOCHS,
        "validation_families": sorted(val_fams),
        "modes": list(modes),
        "per_seed": rows,
        "summary": summary,
        "gains": gains,
        "chosen": max(ok, key=lambda m: gains[m]["all_pt"]["mean"]) if ok else "off",
    }


def run(
    bundle: Path, seeds: list[int], break_labels: bool = False, arms: tuple[str, ...] = ARMS
) -> dict[str, Any]:
    """Every arm, every seed; ``gain``: the last arm over the one before it (the last round's
    families at the same size), ``gain_over_before``: the last arm over ``arms[0]``."""
    graph = default_graph()
    enc = BundleEncoder(bundle, ROOT / ".autoglm" / "bench" / "reasoning")
    kg_eval = [it for it in load_frozen_eval() if it.kind == "kg"]
    t_all = time.perf_counter()
    lexical = graph_hits(PathReasoner(graph), kg_eval)
    print("lexical:", {k: lexical[k] for k in KEYS}, flush=True)
    per_seed: list[dict[str, Any]] = []
    families: dict[str, int] = {}
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for arm in arms:
            resplit, per_pattern, epochs = arm_config(arm)
            items = train_items(seed=seed, resplit=resplit, kg_per_pattern=per_pattern)
            if break_labels and arm == arms[-1]:
                items = broken(items, seed)
            kg = [it for it in items if it.kind == "kg"]
            families[arm] = len({f for it in kg for f in it.families})
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="reasoning-families-") as tmp:
                scorer = scorer_of(enc, items, seed, Path(tmp), epochs, chars=arm_chars(arm))
                row[arm] = graph_hits(PathReasoner(graph, scorer=scorer), kg_eval)
            row[arm + "_train_questions"] = len(kg)
            row[arm + "_seconds"] = round(time.perf_counter() - t0, 1)
            enc.save()
            print(f"seed {seed} {arm}: " + ", ".join(f"{k} {row[arm][k]:.3f}" for k in KEYS), flush=True)
        per_seed.append(row)
    summary = {arm: {k: mean_sd([r[arm][k] for r in per_seed]) for k in KEYS} for arm in arms}
    last, prev, first = arms[-1], arms[-2], arms[0]
    gain = mean_sd([100 * (r[last]["all"] - r[prev]["all"]) for r in per_seed])
    shipped_gain = mean_sd([100 * (r[last]["all"] - r[first]["all"]) for r in per_seed])
    return {
        "arms": {
            arm: dict(zip(("resplit", "per_pattern", "epochs"), arm_config(arm), strict=True)) for arm in arms
        },
        "arm_order": list(arms),
        "bundle": str(bundle),
        "eval_file": FROZEN_EVAL.name,
        "eval_items": len(kg_eval),
        "seeds": seeds,
        "break_labels": break_labels,
        "families_in_training": families,
        "lexical": {k: lexical[k] for k in KEYS},
        "per_seed": per_seed,
        "summary": summary,
        "gain_all_pt": gain,
        "gain_over_before_pt": shipped_gain,
        "wall_s": round(time.perf_counter() - t_all, 1),
    }


def _pct(v: dict[str, float]) -> str:
    return f"{100 * v['mean']:.1f} ± {100 * v['sd']:.1f}"


def headline(rec: dict[str, Any]) -> list[Any]:
    from autoglm.bench.records import HeadlineRow

    s, lex, gain, over = rec["summary"], rec["lexical"], rec["gain_all_pt"], rec["gain_over_before_pt"]
    order = rec.get("arm_order") or ["before", "resplit2", "resplit3"]  # records before round 4
    last, prev, first = order[-1], order[-2], order[0]

    def arm_name(arm: str) -> str:
        if arm == "before":
            return "as shipped before (re-split 2 families, 24 per pattern, 60 epochs)"
        mode = arm_chars(arm)
        return f"round {arm_config(arm)[0]} families" + (f" + character granularity ({mode})" if mode else "")

    note = " (--break-labels: the last arm's labels shuffled)" if rec["break_labels"] else ""
    rows = [
        HeadlineRow(
            what=f"Graph hits@1 %, all {rec['eval_items']} questions of {rec['eval_file']} "
            f"(held-out families), shipped path scorer trained on {arm_name(last)} vs {arm_name(prev)}, "
            f"same training size, mean ± sd over {len(rec['seeds'])} seeds{note}",
            baseline=f"{arm_name(prev)} {_pct(s[prev]['all'])}; lexical {100 * lex['all']:.1f}",
            result=f"{_pct(s[last]['all'])} ({gain['mean']:+.1f} ± {gain['sd']:.1f} pt)",
            target="gain beyond the seeds' spread",
            met=gain["mean"] > max(gain["sd"], 0.0),
        ),
        HeadlineRow(
            what=f"Graph hits@1 %, all {rec['eval_items']} questions of {rec['eval_file']}: the path scorer "
            f"as shipped now ({arm_name(last)}, larger training size) vs {arm_name(first)}{note}",
            baseline=f"{_pct(s[first]['all'])}",
            result=f"{_pct(s[last]['all'])} ({over['mean']:+.1f} ± {over['sd']:.1f} pt)",
            target="gain beyond the seeds' spread",
            met=over["mean"] > max(over["sd"], 0.0),
        ),
    ]
    for lang in ("en", "zh"):
        now = " / ".join(_pct(s[last][f"{h}hop_{lang}"]) for h in (1, 2, 3))
        then = " / ".join(_pct(s[first][f"{h}hop_{lang}"]) for h in (1, 2, 3))
        rows.append(
            HeadlineRow(
                what=f"Graph hits@1 %, {lang.upper()}, 1 / 2 / 3 hops, {rec['eval_file']}, "
                f"shipped path scorer on {arm_name(last)}{note}",
                baseline=f"{first} {then}",
                result=now,
                target="≥ 95 / 92 / 88",
                met=all(s[last][f"{h}hop_{lang}"]["mean"] >= TARGETS[f"{h}hop"] for h in (1, 2, 3)),
            )
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated: before, resplitN …")
    ap.add_argument("--break-labels", action="store_true", help="wrong paths for the last arm's questions")
    ap.add_argument("--select", action="store_true", help="choose the training size on validation families")
    ap.add_argument(
        "--select-granularity",
        action="store_true",
        help="character granularity on/off (validation)",
    )
    ap.add_argument("--char-modes", default="gated", help="with --select-granularity: modes to try")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.select:
        sel = select(args.bundle)
        if not args.no_record:
            from autoglm.bench.records import write_record

            write_record("reasoning_families_select", sel, out_dir=ROOT / "benchmarks" / "results" / "dev")
        print(json.dumps({"best": sel["best"]}))
        return 0
    if args.select_granularity:
        modes = tuple(args.char_modes.split(","))
        gran = select_granularity(args.bundle, [int(s) for s in args.seeds.split(",")], modes)
        if not args.no_record:
            from autoglm.bench.records import write_record

            write_record(
                "reasoning_granularity_select", gran, out_dir=ROOT / "benchmarks" / "results" / "dev"
            )
        print(json.dumps({k: gran[k] for k in ("gains", "chosen")}))
        return 0
    arms = tuple(args.arms.split(","))
    for arm in arms:
        arm_config(arm)  # a bad name fails here, before any training
    rec = run(args.bundle, [int(s) for s in args.seeds.split(",")], args.break_labels, arms)
    if not args.no_record:
        from autoglm.bench.records import write_record

        dev = args.break_labels or arms != ARMS
        out = ROOT / "benchmarks" / "results" / ("dev" if dev else "")
        write_record("reasoning_families", rec, headline(rec), out_dir=out)
    print(json.dumps({"summary": rec["summary"], "gain_all_pt": rec["gain_all_pt"]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
