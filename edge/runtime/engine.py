"""The engine interface the serving layer depends on.

An engine maps int64 ``input_ids`` / ``attention_mask`` of shape ``[batch, seq]`` to
``(embedding [batch, hidden] float32, route_logits [batch, routes] float32)``. A
``BundleSession`` (ONNX Runtime), the native TensorRT runtime and test doubles all fit.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...
