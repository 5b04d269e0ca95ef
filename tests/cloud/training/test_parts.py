"""Metrics, temperature scaling and batch orders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloud.training.batches import epoch_batches, num_batches
from cloud.training.calibration import fit_temperature, nll
from cloud.training.metrics import evaluate_predictions


def test_report_counts_and_scores() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    rep = evaluate_predictions(labels, preds, ["en", "en", "zh", "zh", "en", "zh"], ["a", "b", "c"])
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"b": 2}, "c": {"a": 1, "c": 1}}
    assert rep["per_route"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    f1s = [rep["per_route"][r]["f1"] for r in "abc"]
    assert rep["macro_f1"] == pytest.approx(sum(f1s) / 3)
    assert rep["by_lang"] == {
        "en": {"n": 3, "accuracy": pytest.approx(2 / 3)},
        "zh": {"n": 3, "accuracy": pytest.approx(2 / 3)},
    }


def test_temperature_recovers_the_true_scale() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(torch.softmax(z, -1), 1, generator=g).squeeze(1)
    over_confident = z * 3.0  # the calibrated temperature is 3
    t = fit_temperature(over_confident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(over_confident, labels, t) < nll(over_confident, labels)


def test_epoch_batches_are_seeded_complete_and_length_bucketed() -> None:
    lengths = list(np.random.default_rng(0).integers(3, 40, size=103))
    a = list(epoch_batches(103, 8, seed=1, epoch=0, lengths=lengths))
    b = list(epoch_batches(103, 8, seed=1, epoch=0, lengths=lengths))
    c = list(epoch_batches(103, 8, seed=1, epoch=1, lengths=lengths))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert sorted(np.concatenate(a).tolist()) == list(range(103))
    spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in a])
    assert spread < 20  # sorted within buckets: far less than the 37 of random batches
    assert len(list(epoch_batches(103, 8, 1, 0, min_size=8))) == num_batches(103, 8, min_size=8) == 12
