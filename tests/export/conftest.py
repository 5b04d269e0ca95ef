from __future__ import annotations

from pathlib import Path

import pytest

from export.pipeline import export_checkpoint
from tests.export.helpers import make_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"), sets={"default": 1, "other": 2})


@pytest.fixture(scope="session")
def fp32_bundle(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_checkpoint(tiny_ckpt, tmp_path_factory.mktemp("b") / "bundle", version="1.2.3")
