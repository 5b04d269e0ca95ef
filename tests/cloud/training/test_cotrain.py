"""Co-training of the adapters with the hop scorer and the router (tiny base): only adapters and
heads move, the base stays the recorded one, and the result is an ordinary checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import make_tiny_base
from cloud.model.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from cloud.training.cotrain import cotrain, relation_adjacency
from contracts.routes import DEFAULT_ROUTES
from skillpack.kg.hop_features import RELATION_NAMES, STOP_INDEX


def test_relation_graph_is_row_normalised_and_links_following_relations() -> None:
    a = relation_adjacency()
    assert a.shape == (len(RELATION_NAMES) + 1,) * 2 and torch.allclose(a.sum(1), torch.ones(a.shape[0]))
    i, j = RELATION_NAMES.index("maintained_by"), RELATION_NAMES.index("supervised_by")
    assert a[i, j] > 0 and a[i, STOP_INDEX] > 0  # a person's supervisor can follow a machine's maintainer
    assert a[RELATION_NAMES.index("based_in"), RELATION_NAMES.index("has_role")] == 0


def test_cotrain_moves_adapters_and_router_only(tmp_path: Path) -> None:
    base = make_tiny_base(tmp_path / "base", seed=0)
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    ckpt = save_checkpoint(model, tmp_path / "ckpt", base_path=base, temperatures={"default": 1.3})
    before, _ = load_checkpoint(ckpt)
    metrics = cotrain(ckpt, tmp_path / "co", epochs=1, kg_per_pattern=2, router_sample=40, batch_size=16)
    assert (
        metrics["steps"] > 0
        and metrics["hop_states"] > 0
        and torch.isfinite(torch.tensor(metrics["final_loss"]))
    )
    after, meta = load_checkpoint(tmp_path / "co")  # verifies the base hash: the encoder itself did not move
    moved = [
        n
        for (n, p), (_, q) in zip(
            before.adapter_set().named_parameters(), after.adapter_set().named_parameters(), strict=True
        )
        if not torch.equal(p, q)
    ]
    assert any("heads.router" in n for n in moved) and any("heads" not in n for n in moved)
    assert meta.adapter_sets["default"].temperature == 1.3
    assert read_checkpoint_meta(tmp_path / "co").training["cotrain"]["epochs"] == 1
