"""IOBinding in ``BundleSession`` (issue 17 item 4): bit-identical outputs on the CPU provider.

Real ONNX Runtime on a really exported bundle (``bundles`` fixture). On a GPU the binding keeps the
outputs device-side until one copy back; that path needs CUDA and is run by ``scripts/gpu_check.py``
(rows ``serving_io_binding``), not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.bundle import open_bundle
from contracts.tokenizer import TextTokenizer
from edge.runtime.bundle_session import BundleSession, output_device, use_io_binding
from edge.serving.bundle_loader import BundleModelLoader
from edge.settings import ServeSettings

TEXTS = ["turn off pump 3", "你好", "what is 12 times 7", "", "a much longer question " * 6]


@pytest.mark.parametrize("adapter_set", ["default", "other"])
def test_io_binding_is_bit_identical_on_cpu(bundles: Any, adapter_set: str) -> None:
    bundle = open_bundle(bundles.v1)
    ids, mask = TextTokenizer(bundle.tokenizer_file())(TEXTS)
    plain = BundleSession(bundle, adapter_set=adapter_set, io_binding="off")
    bound = BundleSession(bundle, adapter_set=adapter_set, io_binding="on")
    assert not plain.io_binding and bound.io_binding and bound.output_device == "cpu"
    for rows in (slice(0, 1), slice(0, len(TEXTS))):  # batch 1 and a padded batch
        a = plain.run(ids[rows], mask[rows])
        b = bound.run(ids[rows], mask[rows])
        assert a[0].dtype == b[0].dtype == np.float32 and a[0].shape == b[0].shape
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_auto_binds_only_on_gpu_providers() -> None:
    assert use_io_binding("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert use_io_binding("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert not use_io_binding("auto", ["CPUExecutionProvider"])
    assert use_io_binding("on", ["CPUExecutionProvider"]) and not use_io_binding(
        "off", ["CUDAExecutionProvider"]
    )
    assert (
        output_device(["CUDAExecutionProvider"]) == "cuda"
        and output_device(["CPUExecutionProvider"]) == "cpu"
    )


def test_loader_passes_the_setting_and_reports_it(bundles: Any, tmp_path: Path) -> None:
    on = ServeSettings(
        model_cache_dir=tmp_path, providers=["cpu"], ort_intra_op_threads=1, ort_io_binding="on"
    )
    model = BundleModelLoader(on)(bundles.v1)
    assert model.extra["io_binding"] == "on"
    auto = BundleModelLoader(on.model_copy(update={"ort_io_binding": "auto"}))(bundles.v1)
    assert auto.extra["io_binding"] == "off"  # providers=["cpu"]: auto stays off
