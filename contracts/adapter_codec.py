"""How adapter tensors are stored in a bundle's adapter file (numpy only; shared by export and edge).

The graph always binds float32 tensors. The file may store them more compactly:

- ``float32``: as they are (bit-exact).
- ``float16``: half precision (half the size).
- ``int8``: 2-D tensors as symmetric int8 with one float32 scale per output column
  (``{name}`` int8 + ``{name}.scale`` float32 ``[columns]``); 1-D tensors (biases) stay float32.
  About a quarter of the size; used for adapter-only updates of int8 bundles.

Decoding returns exactly the float32 tensors (names and shapes) the manifest lists.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

AdapterEncoding = Literal["float32", "float16", "int8"]
SCALE_SUFFIX = ".scale"


def encode_tensors(tensors: dict[str, np.ndarray], encoding: AdapterEncoding) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if encoding == "float32":
            out[name] = arr
        elif encoding == "float16":
            out[name] = arr.astype(np.float16)
        elif encoding == "int8":
            if arr.ndim == 2:
                scale = np.abs(arr).max(axis=0) / 127.0
                scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
                out[name] = np.clip(np.rint(arr / scale[None, :]), -127, 127).astype(np.int8)
                out[name + SCALE_SUFFIX] = scale
            else:
                out[name] = arr
        else:
            raise ValueError(f"unknown adapter encoding {encoding!r}")
    return out


def decode_tensors(stored: dict[str, np.ndarray], encoding: str, names: list[str]) -> dict[str, np.ndarray]:
    """The float32 tensors ``names`` from a file's contents; KeyError/ValueError on a mismatch."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        arr = stored[name]
        if encoding == "int8" and arr.dtype == np.int8:
            scale = stored[name + SCALE_SUFFIX].astype(np.float32)
            out[name] = np.ascontiguousarray(arr.astype(np.float32) * scale[None, :])
        elif encoding == "float32" and arr.dtype != np.float32:
            raise ValueError(f"{name}: stored as {arr.dtype}, encoding says float32")
        elif encoding in ("float16", "int8", "float32"):
            out[name] = np.ascontiguousarray(arr, dtype=np.float32)
        else:
            raise ValueError(f"unknown adapter encoding {encoding!r}")
    return out


def expected_stored_names(names: list[str], shapes: dict[str, list[int]], encoding: str) -> set[str]:
    extra = {n + SCALE_SUFFIX for n in names if encoding == "int8" and len(shapes[n]) == 2}
    return set(names) | extra
