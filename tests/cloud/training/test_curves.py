"""Training writes its loss / accuracy curves as a PNG beside checkpoint.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.training.curves import CURVES_FILE, write_training_curves

PNG = b"\x89PNG\r\n\x1a\n"


def _size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_curves_png_from_a_history(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "val_loss": 2.2 / e,
            "val_accuracy": 0.5 + e / 20,
            "val_accuracy_en": 0.55 + e / 20,
            "val_accuracy_zh": 0.45 + e / 20,
            "val_macro_f1": 0.5,
        }
        for e in range(1, 6)
    ]
    out = write_training_curves(history, tmp_path / CURVES_FILE, best_epoch=5)
    assert out == tmp_path / CURVES_FILE
    w, h = _size(out)
    assert w > 1000 and h > 300
    assert write_training_curves([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_training_writes_curves_beside_the_checkpoint(tiny_base: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from cloud.training import TrainConfig, train

    cfg = TrainConfig(base_path=tiny_base, out_dir=tmp_path / "run", tiny=True, epochs=2, num_threads=1)
    result = train(cfg, progress=False)
    assert (result.checkpoint_dir / "checkpoint.yaml").exists()
    assert _size(result.checkpoint_dir / CURVES_FILE)[0] > 1000
