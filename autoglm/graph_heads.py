"""The graph-head trainer that ``autoglm export --graph-heads`` and the learning loop's exporter
hand to the export pipeline (``export.pipeline.GraphHeads``): ``cloud.training.hop_scorer``'s
path scorer + scope gate, the gate reading the edge keyword router's confidence. It lives here
because it joins three wings (export may not import ``cloud.training``, cloud may not import
``edge``); wings are imported inside the function (the CLI floor rule)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from contracts.logging import get_logger

if TYPE_CHECKING:
    from contracts.memory import FleetPathPrior
    from export.pipeline import GraphHeads

log = get_logger("autoglm.graph_heads")


class PathScorerSize(TypedDict):
    path_per_pattern: int | None
    path_epochs: int | None


def path_scorer_size() -> PathScorerSize:
    """The path scorer's training size from the export settings, as ``train_heads`` keywords
    (``ExportSettings.graph_heads_path_questions`` / ``graph_heads_path_epochs``; None: shipped)."""
    from export.settings import ExportSettings

    settings = ExportSettings()
    return PathScorerSize(
        path_per_pattern=settings.graph_heads_path_questions, path_epochs=settings.graph_heads_path_epochs
    )


def trainer(
    seed: int = 0, max_s: float | None = None, priors: list[FleetPathPrior] | None = None
) -> GraphHeads:
    """A ``GraphHeads`` callable: trains the heads on the staged bundle's encoder (``parent``: the
    full bundle of an adapter update), seeded, failing past ``max_s`` seconds (default:
    ``ExportSettings.graph_heads_max_s``); ``priors``: the fleet's path feedback sums the path
    scorer trains with (``cloud.training.path_priors``). The path scorer's training size:
    ``ExportSettings.graph_heads_path_questions`` / ``graph_heads_path_epochs`` (unset: shipped)."""
    from cloud.training.hop_scorer import train_and_attach
    from edge.agent.routing import KeywordRouter
    from export.settings import ExportSettings
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    limit = ExportSettings().graph_heads_max_s if max_s is None else max_s
    size = path_scorer_size()
    keyword = KeywordRouter(EntityLinker(default_graph()))

    def train(bundle_dir: Path, parent: Path | None) -> dict[str, Any]:
        metrics = train_and_attach(
            bundle_dir,
            parent=parent,
            seed=seed,
            keyword_confidence=lambda text: keyword.route(text)[1],
            max_s=limit,
            priors=priors,
            **size,
        )
        log.info("graph heads trained on %s in %s s", bundle_dir, metrics["seconds"])
        return metrics

    return train
