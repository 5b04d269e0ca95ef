"""Co-training of the adapters with the hop scorer and the router (tiny base): only adapters and
heads move, the base stays the recorded one, and the result is an ordinary checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import make_tiny_base
from cloud.model.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from cloud.training.cotrain import CoHopHead, cotrain, relation_adjacency
from contracts.routes import DEFAULT_ROUTES
from skillpack.kg.hop_features import RELATION_NAMES, STOP_INDEX


def test_relation_graph_is_row_normalised_and_links_following_relations() -> None:
    a = relation_adjacency()
    assert a.shape == (len(RELATION_NAMES) + 1,) * 2 and torch.allclose(a.sum(1), torch.ones(a.shape[0]))
    i, j = RELATION_NAMES.index("maintained_by"), RELATION_NAMES.index("supervised_by")
    assert a[i, j] > 0 and a[i, STOP_INDEX] > 0  # a person's supervisor can follow a machine's maintainer
    assert a[RELATION_NAMES.index("based_in"), RELATION_NAMES.index("has_role")] == 0


def _tiny_checkpoint(tmp_path: Path) -> Path:
    base = make_tiny_base(tmp_path / "base", seed=0)
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    return save_checkpoint(model, tmp_path / "ckpt", base_path=base, temperatures={"default": 1.3})


def test_cotrain_moves_adapters_and_router_only(tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint(tmp_path)
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


def test_entity_term_adds_to_the_score_and_is_required_when_built() -> None:
    torch.manual_seed(0)
    n = len(RELATION_NAMES) + 1
    q, desc = torch.randn(3, 16), torch.randn(n, 16)
    hop, prev, etype = torch.tensor([0, 1, 2]), torch.tensor([STOP_INDEX, 0, 1]), torch.tensor([0, 1, 2])
    plain = CoHopHead(16, hidden=8)
    assert not any(name.startswith("entity") for name, _ in plain.named_parameters())
    head = CoHopHead(16, hidden=8, entity_dim=4)
    head.load_state_dict({**plain.state_dict(), "entity.weight": torch.zeros(8, 4)})
    ent = torch.randn(3, 4)
    assert torch.allclose(head(q, hop, prev, etype, desc, ent), plain(q, hop, prev, etype, desc))
    with torch.no_grad():
        head.entity.weight.normal_()  # type: ignore[union-attr]
    logits = head(q, hop, prev, etype, desc, ent)
    assert not torch.allclose(logits, plain(q, hop, prev, etype, desc))
    logits.sum().backward()
    assert head.entity.weight.grad is not None  # type: ignore[union-attr]
    try:
        head(q, hop, prev, etype, desc)
        raise AssertionError("missing entity embedding accepted")
    except ValueError:
        pass


def test_entity_gnn_is_an_option_and_the_default_path_is_reproducible(tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint(tmp_path)
    kw = {"epochs": 1, "kg_per_pattern": 2, "router_sample": 40, "batch_size": 16}
    plain = cotrain(ckpt, tmp_path / "plain", **kw)  # type: ignore[arg-type]
    again = cotrain(ckpt, tmp_path / "again", entity_gnn=False, **kw)  # type: ignore[arg-type]
    gnn = cotrain(ckpt, tmp_path / "gnn", entity_gnn=True, **kw)  # type: ignore[arg-type]
    assert "entity_gnn" not in plain and plain["final_loss"] == again["final_loss"]
    assert gnn["steps"] == plain["steps"] and gnn["final_loss"] != plain["final_loss"]
    info = gnn["entity_gnn"]
    assert info["layers"] == 2 and info["types"] == 2 * len(RELATION_NAMES) and info["edges"] > 0
    p, a, g = (load_checkpoint(tmp_path / d)[0].adapter_set() for d in ("plain", "again", "gnn"))
    pairs = list(zip(p.named_parameters(), a.named_parameters(), g.named_parameters(), strict=True))
    assert all(torch.equal(x, y) for (_, x), (_, y), _ in pairs)  # default: bit for bit reproducible
    assert any(not torch.equal(x, z) for (_, x), _, (_, z) in pairs)  # the option changes the adapters
    assert read_checkpoint_meta(tmp_path / "gnn").training["cotrain"]["entity_gnn"]["entities"] > 0
