"""Where a run's examples come from: the bundled generator or the user's JSONL files."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cloud.data import Example, SplitSpec, dataset_sha256, default_splits, load_jsonl
from cloud.training.config import TrainConfig
from contracts.errors import DataError
from contracts.routes import DEFAULT_ROUTES


@dataclass
class RunData:
    splits: dict[str, list[Example]]
    routes: list[str]
    source: str
    hashes: dict[str, str] = field(default_factory=dict)


def load_run_data(cfg: TrainConfig) -> RunData:
    if cfg.data_train is None:
        if cfg.data_val is not None or cfg.data_test is not None:
            raise DataError("--data-val/--data-test need --data-train")
        spec = SplitSpec(train_per_template=cfg.train_per_template, eval_per_template=cfg.eval_per_template)
        if cfg.tiny:
            spec = SplitSpec(
                train_per_template=min(cfg.train_per_template, 3),
                eval_per_template=min(cfg.eval_per_template, 2),
            )
        splits = default_splits(cfg.seed, spec)
        routes = list(DEFAULT_ROUTES)
        source = "generator"
    else:
        train = load_jsonl(cfg.data_train)
        routes = sorted({ex.route for ex in train})
        if len(routes) < 2:
            raise DataError(f"{cfg.data_train}: need at least 2 distinct routes, found {routes}")
        if cfg.data_val is not None:
            val = load_jsonl(cfg.data_val, routes)
        else:  # hold out 10% of the training file (seeded)
            shuffled = list(train)
            random.Random(f"holdout:{cfg.seed}").shuffle(shuffled)
            k = max(1, len(shuffled) // 10)
            val, train = shuffled[:k], shuffled[k:]
        test = load_jsonl(cfg.data_test, routes) if cfg.data_test is not None else val
        splits = {"train": train, "val": val, "test": test}
        source = f"jsonl:{cfg.data_train}"
    for name, examples in splits.items():
        if not examples:
            raise DataError(f"{name} split is empty")
    return RunData(splits, routes, source, {k: dataset_sha256(v) for k, v in splits.items()})
