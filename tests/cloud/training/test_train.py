"""End-to-end training on the tiny encoder: checkpoint, metrics, reproducibility, resume, user data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cloud.model.checkpoint import load_checkpoint, read_checkpoint_meta
from cloud.training import TrainConfig, train
from contracts.errors import BadRequest, DataError
from contracts.routes import DEFAULT_ROUTES


def _cfg(tiny_base: Path, out: Path, **kw: object) -> TrainConfig:
    args: dict[str, object] = {
        "base_path": tiny_base,
        "out_dir": out,
        "tiny": True,
        "epochs": 2,
        "num_threads": 1,
    }
    args.update(kw)
    return TrainConfig(**args)  # type: ignore[arg-type]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapters.safetensors"))


def test_train_end_to_end_writes_a_loadable_checkpoint(tiny_base: Path, tmp_path: Path) -> None:
    result = train(_cfg(tiny_base, tmp_path / "run"), progress=False)
    assert result.finished and result.epochs_run == 2 and result.routes == list(DEFAULT_ROUTES)
    model, meta = load_checkpoint(result.checkpoint_dir)
    assert meta.adapter_sets["default"].routes == list(DEFAULT_ROUTES)
    assert meta.adapter_sets["default"].temperature == pytest.approx(result.metrics["temperature"])
    m = meta.metrics
    for key in ("accuracy", "macro_f1", "accuracy_en", "accuracy_zh", "temperature"):
        assert key in m
    assert 0.0 <= m["accuracy"] <= 1.0 and m["temperature"] > 0
    assert set(m["test"]["per_route"]) == set(DEFAULT_ROUTES)
    total = sum(sum(row.values()) for row in m["test"]["confusion"].values())
    assert total == m["test"]["n"] == meta.training["dataset_sizes"]["test"]
    assert m["test"]["by_lang"]["en"]["n"] + m["test"]["by_lang"]["zh"]["n"] == m["test"]["n"]
    tr = meta.training
    assert tr["finished"] and tr["data_source"] == "generator" and tr["world_size"] == 1
    assert set(tr["dataset_sha256"]) == {"train", "val", "test"} and len(tr["dataset_sha256"]["train"]) == 64
    assert tr["config"]["epochs"] == 2 and "out_dir" not in tr["config"]
    assert meta.tokenizer["max_length"] == 64
    assert model.adapter_set("default").adapters[0].up.weight.abs().sum() > 0  # it did train


def test_same_seed_reproduces_weights(tiny_base: Path, tmp_path: Path) -> None:
    train(_cfg(tiny_base, tmp_path / "a", epochs=1), progress=False)
    train(_cfg(tiny_base, tmp_path / "b", epochs=1), progress=False)
    train(_cfg(tiny_base, tmp_path / "c", epochs=1, seed=1), progress=False)
    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_default_threads_do_not_depend_on_machine_load(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed on the same machine gives the same checkpoint whether or not the machine is busy
    (the trainer used to drop to one thread when the load average exceeded the core count)."""
    train(_cfg(tiny_base, tmp_path / "quiet", epochs=1, num_threads=None), progress=False)
    monkeypatch.setattr("os.getloadavg", lambda: (1e6, 1e6, 1e6))
    train(_cfg(tiny_base, tmp_path / "busy", epochs=1, num_threads=None), progress=False)
    a, b = _weights(tmp_path / "quiet"), _weights(tmp_path / "busy")
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = read_checkpoint_meta(tmp_path / "busy")
    assert meta.training["deterministic"] is True
    assert meta.training["threads_per_rank"] == max(1, os.cpu_count() or 1)


def test_resume_after_interruption_equals_uninterrupted_run(tiny_base: Path, tmp_path: Path) -> None:
    full = train(_cfg(tiny_base, tmp_path / "full", epochs=3, patience=5), progress=False)
    part = train(
        _cfg(tiny_base, tmp_path / "part", epochs=3, patience=5, stop_after_epochs=1), progress=False
    )
    assert not part.finished and part.epochs_run == 1
    assert not (tmp_path / "part" / "checkpoint.yaml").exists()
    resumed = train(_cfg(tiny_base, tmp_path / "part", epochs=3, patience=5, resume=True), progress=False)
    assert resumed.finished and resumed.epochs_run == 3
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in full.history]
    )
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_needs_a_matching_interrupted_run(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="nothing to resume"):
        train(_cfg(tiny_base, tmp_path / "none", resume=True), progress=False)
    train(_cfg(tiny_base, tmp_path / "x", stop_after_epochs=1), progress=False)
    with pytest.raises(BadRequest, match="another configuration"):
        train(_cfg(tiny_base, tmp_path / "x", resume=True, lr=0.5), progress=False)


def _user_file(path: Path, n: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        k = int(torch.randint(0, 1000, (1,), generator=g))
        if i % 2:
            rows.append({"text": f"please order {k} bottles of water", "route": "order"})
        else:
            rows.append({"text": f"good morning number {k} how are you", "route": "greet"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_user_jsonl_with_own_routes_learns(tiny_base: Path, tmp_path: Path) -> None:
    train_f = _user_file(tmp_path / "train.jsonl", 200, 0)
    val_f = _user_file(tmp_path / "val.jsonl", 40, 1)
    cfg = _cfg(tiny_base, tmp_path / "user", data_train=train_f, data_val=val_f, epochs=4, lr=5e-3)
    result = train(cfg, progress=False)
    meta = read_checkpoint_meta(result.checkpoint_dir)
    assert meta.adapter_sets["default"].routes == ["greet", "order"]
    assert meta.training["data_source"].startswith("jsonl:")
    assert result.metrics["accuracy"] >= 0.95  # trivially separable: labels must line up with texts


def test_user_jsonl_errors_surface_before_training(tiny_base: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "route": "greet"}\n{"text": "", "route": "greet"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: empty text"):
        train(_cfg(tiny_base, tmp_path / "o", data_train=bad), progress=False)
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "hi", "route": "greet"}\n' * 20, encoding="utf-8")
    with pytest.raises(DataError, match="at least 2 distinct routes"):
        train(_cfg(tiny_base, tmp_path / "o", data_train=one), progress=False)
