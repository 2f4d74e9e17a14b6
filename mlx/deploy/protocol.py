"""The Open Inference Protocol's wire formats: REST JSON with the binary tensor extension, and
gRPC messages, decoded to :class:`~mlx.deploy.runtime.InputTensor` and encoded back.

Every malformed request raises :class:`~mlx.deploy.runtime.RequestError` (400): bad JSON, a
missing field, a datatype the protocol does not know, data that does not fill its shape, a
binary header that lies about its length. This module imports NumPy (and orjson) only.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlx.deploy.runtime import InputTensor, RequestError
from mlx.deploy.signature import NUMERIC

HEADER_LENGTH = "inference-header-content-length"
# the protocol extensions the server implements (server metadata names them)
EXTENSIONS = ["binary_tensor_data", "model_repository", "schedule_policy"]


@dataclass
class InferRequest:
    """A decoded inference request."""

    inputs: list[InputTensor]
    id: str | None = None
    # requested outputs: name -> whether it goes back as binary data
    outputs: dict[str, bool] = field(default_factory=dict)
    binary_output: bool = False  # the request's binary_data_output parameter


def decompress(body: bytes, encoding: str | None) -> bytes:
    """A request body sent with ``Content-Encoding`` gzip or deflate, inflated."""
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(body)
    except zlib.error:
        raise RequestError(400, f"the body is not valid {encoding} data.") from None
    raise RequestError(400, f"Content-Encoding {encoding!r} is not supported (gzip, deflate).")


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value
    ):
        raise RequestError(
            400, f"input {name}: shape must be a list of integers >= 0, not {value!r}."
        )
    return tuple(value)


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _datatype(value: Any, name: str) -> str:
    if not isinstance(value, str) or (value not in NUMERIC and value != "BYTES"):
        raise RequestError(
            400,
            f"input {name}: datatype {value!r} is not an Open Inference Protocol datatype "
            f"({', '.join([*NUMERIC, 'BYTES'])}).",
        )
    return value


def from_bytes(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A tensor from its binary form: little-endian values, or length-prefixed BYTES elements."""
    count = _count(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise RequestError(400, f"input {name}: its BYTES data is cut short.")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise RequestError(400, f"input {name}: a BYTES element runs past its data.")
            items.append(raw[offset : offset + length])
            offset += length
        if len(items) != count:
            raise RequestError(
                400, f"input {name}: {len(items)} BYTES elements for shape {list(shape)} ({count})."
            )
        return np.array(items, dtype=object).reshape(shape)
    dtype = np.dtype(NUMERIC[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            400,
            f"input {name}: {len(raw)} bytes of {datatype} data, but shape {list(shape)} needs "
            f"{count * dtype.itemsize}.",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_bytes(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's binary form (see :func:`from_bytes`)."""
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(
        array, dtype=np.dtype(NUMERIC[datatype]).newbyteorder("<")
    ).tobytes()


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = _count(shape)
    try:
        if datatype == "BYTES":
            flat = np.array(data, dtype=object).reshape(-1)
            if not all(isinstance(v, str) for v in flat):
                raise RequestError(400, f"input {name}: BYTES data must be strings.")
        else:
            flat = np.asarray(data, dtype=np.float64 if datatype != "BOOL" else np.bool_).reshape(
                -1
            )
    except (ValueError, TypeError):
        raise RequestError(
            400, f"input {name}: data must be a (nested) list of {datatype} values."
        ) from None
    if flat.size != count:
        raise RequestError(
            400, f"input {name}: {flat.size} values for shape {list(shape)} ({count} needed)."
        )
    return flat.reshape(shape)


def decode_rest(body: bytes, header_length: str | None) -> InferRequest:
    """A REST inference request: JSON, or JSON followed by binary tensors when
    ``Inference-Header-Content-Length`` is given."""
    blobs = b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise RequestError(400, "Inference-Header-Content-Length must be an integer.") from None
        if not 0 <= length <= len(body):
            raise RequestError(
                400,
                f"Inference-Header-Content-Length is {length}, but the body holds {len(body)} bytes.",
            )
        body, blobs = body[:length], body[length:]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        try:  # NaN and Infinity are not JSON, but Python's and rapidjson's writers send them
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, f"the body is not valid JSON ({e}).") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise RequestError(400, 'the body must be a JSON object with a non-empty "inputs" list.')
    request_id = doc.get("id")
    if "id" in doc and not isinstance(request_id, str):
        raise RequestError(400, '"id" must be a string.')
    inputs = []
    offset = 0
    for item in doc["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, 'each input must be an object with a "name".')
        name = item["name"]
        datatype = _datatype(item.get("datatype"), name)
        shape = _shape(item.get("shape"), name)
        params = item.get("parameters", {})
        if not isinstance(params, dict):
            raise RequestError(400, f'input {name}: "parameters" must be an object.')
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise RequestError(400, f"input {name}: binary_data_size must be an integer >= 0.")
            if offset + size > len(blobs):
                raise RequestError(
                    400,
                    f"input {name}: binary_data_size {size} runs past the body's binary data "
                    f"({len(blobs) - offset} bytes left).",
                )
            data = from_bytes(blobs[offset : offset + size], datatype, shape, name)
            offset += size
        elif "data" in item:
            if not isinstance(item["data"], list):
                raise RequestError(400, f'input {name}: "data" must be a list.')
            data = _from_json(item["data"], datatype, shape, name)
        else:
            raise RequestError(400, f'input {name} has neither "data" nor binary_data_size.')
        inputs.append(InputTensor(name, datatype, shape, data))
    if offset != len(blobs):
        raise RequestError(
            400, f"the body holds {len(blobs) - offset} bytes of binary data no input claims."
        )
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError(400, '"parameters" must be an object.')
    binary = bool(params.get("binary_data_output", False))
    outputs: dict[str, bool] = {}
    requested = doc.get("outputs", [])
    if not isinstance(requested, list):
        raise RequestError(400, '"outputs" must be a list of {"name": ...} objects.')
    for item in requested:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, 'each requested output must be an object with a "name".')
        oparams = item.get("parameters", {})
        if not isinstance(oparams, dict):
            raise RequestError(400, f'output {item["name"]}: "parameters" must be an object.')
        outputs[item["name"]] = bool(oparams.get("binary_data", binary))
    return InferRequest(inputs, request_id, outputs, binary)


def datatype_of(array: np.ndarray) -> str:
    if array.dtype == object:
        return "BYTES"
    return {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64", np.int32: "INT32"}[
        array.dtype.type
    ]


def encode_rest(
    model: str, version: int, request: InferRequest, results: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """A REST inference response (JSON, then binary outputs where asked) and its headers."""
    outputs = []
    blobs = []
    for name, array in results.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.outputs.get(name, request.binary_output):
            blob = to_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": outputs}
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc)
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


# -- gRPC -----------------------------------------------------------------------------------------

_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_grpc(message: Any) -> InferRequest:
    """A gRPC ``ModelInferRequest``: tensors in ``raw_input_contents`` (one per input, in
    order) or in each input's typed ``contents``."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise RequestError(
            400,
            f"the request has {len(message.inputs)} inputs but {len(raw)} raw_input_contents.",
        )
    if not message.inputs:
        raise RequestError(400, "the request has no inputs.")
    inputs = []
    for i, item in enumerate(message.inputs):
        name = item.name
        datatype = _datatype(item.datatype, name)
        shape = _shape(list(item.shape), name)
        if raw:
            data = from_bytes(raw[i], datatype, shape, name)
        else:
            if datatype == "FP16":
                raise RequestError(400, f"input {name}: FP16 data must come in raw_input_contents.")
            values = list(getattr(item.contents, _CONTENTS[datatype]))
            if datatype == "BYTES":
                data = np.array(values, dtype=object)
                if data.size != _count(shape):
                    raise RequestError(
                        400, f"input {name}: {data.size} values for shape {list(shape)}."
                    )
                data = data.reshape(shape)
            else:
                data = _from_json(values, datatype, shape, name)
        inputs.append(InputTensor(name, datatype, shape, data))
    outputs = {o.name: True for o in message.outputs}
    return InferRequest(inputs, message.id or None, outputs, True)


def encode_grpc(
    pb: Any, model: str, version: int, request: InferRequest, results: dict[str, np.ndarray]
) -> Any:
    """A gRPC ``ModelInferResponse`` with every output in ``raw_output_contents``."""
    response = pb.ModelInferResponse(
        model_name=model, model_version=str(version), id=request.id or ""
    )
    for name, array in results.items():
        datatype = datatype_of(array)
        out = response.outputs.add()
        out.name, out.datatype = name, datatype
        out.shape.extend(array.shape)
        response.raw_output_contents.append(to_bytes(array, datatype))
    return response
