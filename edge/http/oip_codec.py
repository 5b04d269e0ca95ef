"""Open Inference Protocol v2 (KServe / Triton) request and response codec.

JSON tensors are ``{"name", "shape", "datatype", "data"}`` with ``data`` flattened in row-major
order; BYTES elements are JSON strings. Triton's *binary tensor data extension* is supported
both ways: a request whose ``Inference-Header-Content-Length`` header is set carries that many
bytes of JSON followed by the raw tensors of the inputs that have a ``binary_data_size``
parameter (BYTES elements as a 4-byte little-endian length followed by the bytes; numbers
little-endian, no padding). Outputs are returned in binary when the request asks for it per
output (``"parameters": {"binary_data": true}``) or for all of them (request parameter
``binary_data_output``, which tritonclient sets when no outputs are named); the response then
carries the same header and a ``binary_data_size`` parameter on each binary output.

The model's interface: one BYTES input ``text`` of shape ``[n]`` (``[n, 1]`` is accepted too),
outputs ``embedding`` FP32 ``[n, hidden]``, ``route_logits`` FP32 ``[n, routes]``,
``route_index`` INT64 ``[n]``, ``route_probabilities`` FP32 ``[n, routes]`` (softmax with the
bundle's temperature) and ``route_label`` BYTES ``[n]``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from contracts.body_limits import json_too_deep
from contracts.errors import BadRequest
from edge.serving.service import InferenceResult

HEADER_LENGTH = "inference-header-content-length"
INPUT_NAME = "text"
OUTPUT_DTYPES: dict[str, str] = {
    "embedding": "FP32",
    "route_logits": "FP32",
    "route_index": "INT64",
    "route_probabilities": "FP32",
    "route_label": "BYTES",
}
_U32 = struct.Struct("<I")
# The input's shape is [n] or [n, 1]; a little slack for clients that wrap rows once more.
MAX_DATA_DEPTH = 4
MAX_JSON_DEPTH = 32


@dataclass
class InferRequest:
    texts: list[str]
    request_id: str | None = None
    outputs: dict[str, bool] = field(default_factory=dict)  # output name -> binary?
    priority: int = 0
    deadline_s: float | None = None
    shape: list[int] = field(default_factory=list)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{what} must be an integer, got {value!r}")
    return value


def _flatten_strings(data: list[Any], out: list[str], max_depth: int = MAX_DATA_DEPTH) -> None:
    """Row-major flattening of nested string lists, without recursion, at most ``max_depth`` deep."""
    stack: list[tuple[Any, int]] = [(iter(data), 1)]
    while stack:
        it, depth = stack[-1]
        for x in it:
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, list):
                if depth + 1 > max_depth:
                    raise BadRequest(f"input {INPUT_NAME!r}: 'data' is nested deeper than {max_depth} levels")
                stack.append((iter(x), depth + 1))
                break
            else:
                raise BadRequest(
                    f"input {INPUT_NAME!r}: BYTES elements must be strings, got {type(x).__name__}"
                )
        else:
            stack.pop()


def decode_bytes_tensor(raw: memoryview, count: int) -> list[str]:
    """``count`` elements of 4-byte little-endian length + UTF-8 bytes, exactly filling ``raw``."""
    out: list[str] = []
    pos, end = 0, len(raw)
    for i in range(count):
        if pos + 4 > end:
            raise BadRequest(f"input {INPUT_NAME!r}: binary data ends inside the length of element {i}")
        (n,) = _U32.unpack_from(raw, pos)
        pos += 4
        if pos + n > end:
            raise BadRequest(f"input {INPUT_NAME!r}: element {i} says {n} bytes but only {end - pos} remain")
        try:
            out.append(str(raw[pos : pos + n], "utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequest(f"input {INPUT_NAME!r}: element {i} is not valid UTF-8") from exc
        pos += n
    if pos != end:
        raise BadRequest(
            f"input {INPUT_NAME!r}: {end - pos} bytes of binary data left after {count} elements"
        )
    return out


def encode_bytes_tensor(values: list[str]) -> bytes:
    parts = []
    for v in values:
        b = v.encode("utf-8")
        parts.append(_U32.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Validate and decode an inference request body (JSON or JSON + binary)."""
    if header_length is not None:
        try:
            json_len = int(header_length)
        except ValueError:
            raise BadRequest(
                f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
            ) from None
        if not 0 < json_len <= len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length {json_len} does not fit a body of {len(body)} bytes"
            )
    else:
        json_len = len(body)
    if json_len == 0:
        raise BadRequest("empty request body; expected an inference request JSON object")
    if json_too_deep(body if json_len == len(body) else body[:json_len], MAX_JSON_DEPTH):
        raise BadRequest(f"inference request JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = orjson.loads(memoryview(body)[:json_len])
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("inference request must be a JSON object")
    binary = memoryview(body)[json_len:]

    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    if len(inputs) != 1:
        names = [i.get("name") if isinstance(i, dict) else i for i in inputs]
        raise BadRequest(f"expected exactly one input {INPUT_NAME!r}, got {names}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    if tensor.get("name") != INPUT_NAME:
        raise BadRequest(f"unknown input {tensor.get('name')!r}; the model's input is {INPUT_NAME!r}")
    if tensor.get("datatype") != "BYTES":
        raise BadRequest(f"input {INPUT_NAME!r} must have datatype BYTES, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape)
    ):
        raise BadRequest(
            f"input {INPUT_NAME!r}: shape must be a list of non-negative integers, got {shape!r}"
        )
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"input {INPUT_NAME!r}: shape must be [n] or [n, 1], got {shape}")
    count = shape[0]
    if count == 0:
        raise BadRequest(f"input {INPUT_NAME!r}: shape {shape} holds no texts")
    tparams = tensor.get("parameters") or {}
    if not isinstance(tparams, dict):
        raise BadRequest(f"input {INPUT_NAME!r}: 'parameters' must be an object")
    if "binary_data_size" in tparams:
        size = _as_int(tparams["binary_data_size"], "binary_data_size")
        if header_length is None:
            raise BadRequest(
                "input has binary_data_size but the Inference-Header-Content-Length header is missing"
            )
        if size != len(binary):
            raise BadRequest(
                f"input {INPUT_NAME!r}: binary_data_size {size} but {len(binary)} bytes "
                "follow the JSON header"
            )
        if "data" in tensor:
            raise BadRequest(f"input {INPUT_NAME!r} has both 'data' and binary_data_size")
        texts = decode_bytes_tensor(binary, count)
    else:
        if len(binary):
            raise BadRequest(
                f"{len(binary)} bytes follow the JSON header but no input declares binary_data_size"
            )
        data = tensor.get("data")
        if not isinstance(data, list):
            raise BadRequest(f"input {INPUT_NAME!r}: 'data' must be a list of strings")
        texts = []
        _flatten_strings(data, texts)
        if len(texts) != count:
            raise BadRequest(
                f"input {INPUT_NAME!r}: shape {shape} needs {count} elements, data has {len(texts)}"
            )

    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise BadRequest("parameter binary_data_output must be a boolean")
    outputs: dict[str, bool] = {}
    requested = doc.get("outputs")
    if requested is None:
        outputs = dict.fromkeys(OUTPUT_DTYPES, default_binary)
    else:
        if not isinstance(requested, list):
            raise BadRequest("'outputs' must be a list")
        for out in requested:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise BadRequest("each requested output must be an object with a name")
            name = out["name"]
            if name not in OUTPUT_DTYPES:
                raise BadRequest(f"unknown output {name!r}; outputs are {list(OUTPUT_DTYPES)}")
            oparams = out.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise BadRequest(f"output {name!r}: 'parameters' must be an object")
            flag = oparams.get("binary_data", default_binary)
            if not isinstance(flag, bool):
                raise BadRequest(f"output {name!r}: binary_data must be a boolean")
            outputs[name] = flag
        if not outputs:
            outputs = dict.fromkeys(OUTPUT_DTYPES, default_binary)

    priority = _as_int(params.get("priority", 0), "parameter priority")
    deadline_s: float | None = None
    if "timeout" in params:  # Triton: microseconds; 0 means none
        timeout_us = _as_int(params["timeout"], "parameter timeout")
        if timeout_us < 0:
            raise BadRequest(f"parameter timeout must be ≥ 0 microseconds, got {timeout_us}")
        deadline_s = timeout_us / 1e6 if timeout_us else None
    if "deadline_ms" in params:
        value = params["deadline_ms"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise BadRequest(f"parameter deadline_ms must be a positive number, got {value!r}")
        deadline_s = float(value) / 1000.0
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("'id' must be a string")
    return InferRequest(texts, rid, outputs, priority, deadline_s, list(shape))


def _rows(results: list[InferenceResult], attr: str) -> np.ndarray:
    if len(results) == 1:
        row: np.ndarray = getattr(results[0], attr)
        return row.reshape(1, -1)
    return np.stack([getattr(r, attr) for r in results])


def _output_arrays(results: list[InferenceResult], names: list[str]) -> dict[str, np.ndarray | list[str]]:
    arrays: dict[str, np.ndarray | list[str]] = {}
    for name in names:
        if name == "embedding":
            arrays[name] = _rows(results, "embedding")
        elif name == "route_logits":
            arrays[name] = _rows(results, "route_logits")
        elif name == "route_probabilities":
            arrays[name] = _rows(results, "probabilities")
        elif name == "route_index":
            arrays[name] = np.fromiter((r.route_index for r in results), dtype=np.int64, count=len(results))
        elif name == "route_label":
            arrays[name] = [r.route for r in results]
    return arrays


def encode_infer_response(
    req: InferRequest, results: list[InferenceResult], model_name: str, model_version: str
) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)``: JSON, or JSON + binary with ``Inference-Header-Content-Length``."""
    names = list(req.outputs)
    arrays = _output_arrays(results, names)
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in names:
        value = arrays[name]
        shape = [len(value)] if isinstance(value, list) else list(value.shape)
        tensor: dict[str, Any] = {"name": name, "datatype": OUTPUT_DTYPES[name], "shape": shape}
        if req.outputs[name]:
            raw = (
                encode_bytes_tensor(value)
                if isinstance(value, list)
                else np.ascontiguousarray(value).tobytes()
            )
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = value if isinstance(value, list) else value.reshape(-1)
        tensors.append(tensor)
    doc: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": tensors,
        "parameters": {"cached": sum(r.cached for r in results), "adapter_set": results[0].adapter_set},
    }
    if req.request_id is not None:
        doc["id"] = req.request_id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
