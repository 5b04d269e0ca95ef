"""Adapter file encodings decode to the float32 tensors the graph binds."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.adapter_codec import decode_tensors, encode_tensors, expected_stored_names


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (32, 64)).astype(np.float32)
    w[:, 5] = 0.0  # an all-zero column must not divide by zero
    return {"adapters.0.down.weight": w, "adapters.0.down.bias": rng.normal(0, 0.05, 64).astype(np.float32)}


def test_float32_is_exact(tensors: dict[str, np.ndarray]) -> None:
    out = decode_tensors(encode_tensors(tensors, "float32"), "float32", sorted(tensors))
    for k, v in tensors.items():
        assert np.array_equal(out[k], v) and out[k].dtype == np.float32


@pytest.mark.parametrize(("encoding", "tol", "ratio"), [("float16", 1e-4, 0.5), ("int8", 2e-3, 0.3)])
def test_compact_encodings(tensors: dict[str, np.ndarray], encoding: str, tol: float, ratio: float) -> None:
    stored = encode_tensors(tensors, encoding)  # type: ignore[arg-type]
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    assert set(stored) == expected_stored_names(sorted(tensors), shapes, encoding)
    w = "adapters.0.down.weight"
    assert stored[w].nbytes <= ratio * tensors[w].nbytes
    out = decode_tensors(stored, encoding, sorted(tensors))
    for k, v in tensors.items():
        assert out[k].dtype == np.float32 and out[k].shape == v.shape
        assert np.abs(out[k] - v).max() <= tol
    assert np.all(out[w][:, 5] == 0.0)


def test_float32_encoding_rejects_other_dtypes(tensors: dict[str, np.ndarray]) -> None:
    stored = encode_tensors(tensors, "float16")
    with pytest.raises(ValueError, match="encoding says float32"):
        decode_tensors(stored, "float32", sorted(tensors))
