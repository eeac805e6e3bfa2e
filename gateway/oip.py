"""Open Inference Protocol v2 tensors (KServe v2, MLServer, Triton HTTP): parsed into a batch,
answered as tensors (pure: no I/O, no framework).

An inference request carries its instances in one of two forms, both turned into the same
:class:`~gateway.batches.Batch` (a float64 matrix in the model's feature order) that
``/v1/predict/batch`` builds, so the same rows get the same answer whichever protocol sent them:

* **one tensor** of shape ``[n, n_features]`` (any name), columns in the model's feature order
  (the model metadata lists them), data flat in row-major order or nested;
* **one tensor per feature**, each named after its feature, of shape ``[n]`` or ``[n, 1]``.

Datatypes: ``FP64``, ``FP32`` and ``FP16`` (values rounded to that precision, as the tensor
says), and the integer types ``INT8`` … ``UINT64`` (integral values within the type's range).
``BOOL`` and ``BYTES`` are refused: they are not numbers. Data come as JSON numbers, or as raw
little-endian bytes after the JSON header (Triton's binary tensor extension, tritonclient's
default: the request's ``Inference-Header-Content-Length`` header gives the JSON's length and
each such input says its ``binary_data_size``). Outputs are always JSON.

The answer has two outputs: ``label`` (``BYTES``, shape ``[n]``) and ``probabilities``
(``FP64``, shape ``[n, n_classes]``, columns in the order of the model metadata's
``class_labels`` parameter, repeated as the output's ``classes`` parameter). A request's
``outputs`` selects among them; its ``id`` is echoed (and is the irisflow request id: repeating
it returns the first answer); its ``parameters`` are echoed in the response's.

Every refusal is an :class:`InvalidTensor` naming the input (or field) and saying what to send.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import orjson

from gateway.batches import Batch, BatchAnswer
from irisflow.errors import IrisflowError
from irisflow.features import FeatureSchema
from irisflow.schemas import REQUEST_ID_PATTERN

__all__ = [
    "OUTPUTS",
    "InferRequest",
    "InvalidTensor",
    "TooManyRows",
    "infer_response",
    "parse_infer",
]

OUTPUTS = ("label", "probabilities")
_VALID_ID = re.compile(REQUEST_ID_PATTERN)
_NUMBERS = frozenset({float, int})
_FLOATS: dict[str, np.dtype[Any]] = {
    "FP64": np.dtype(np.float64),
    "FP32": np.dtype(np.float32),
    "FP16": np.dtype(np.float16),
}
_INTS: dict[str, np.dtype[Any]] = {
    f"{p}INT{b}": np.dtype(f"{p.lower()}int{b}") for p in ("", "U") for b in (8, 16, 32, 64)
}
_BINARY = {name: kind.newbyteorder("<") for name, kind in {**_FLOATS, **_INTS}.items()}
_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})


class InvalidTensor(IrisflowError):
    """An inference request the protocol or the model cannot take (HTTP 400)."""


class TooManyRows(IrisflowError):
    """More rows than ``gateway.max_batch_instances`` (HTTP 413)."""


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request: the rows to score and how to answer."""

    batch: Batch
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = OUTPUTS


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict or not all(
        type(k) is str and type(v) in (str, int, float, bool) for k, v in value.items()
    ):
        raise InvalidTensor(f"{where}: parameters are an object of strings, numbers or booleans")
    return value


def _object(value: Any, keys: frozenset[str], where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidTensor(f"{where}: an object is expected")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise InvalidTensor(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(keys)}")
    return value


def _split(raw: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return raw, b""
    if not 0 < header_length <= len(raw):
        raise InvalidTensor(
            f"Inference-Header-Content-Length {header_length} is not within the body's "
            f"{len(raw)} bytes"
        )
    return raw[:header_length], raw[header_length:]


def parse_infer(
    raw: bytes, schema: FeatureSchema, *, limit: int, header_length: int | None = None
) -> InferRequest:
    """The rows of an inference request as a checked batch, or :class:`InvalidTensor`."""
    head, binary = _split(raw, header_length)
    try:
        body = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidTensor(f"the body is not a JSON object: {exc}") from exc
    body = _object(body, _REQUEST_KEYS, "request")
    request_id = body.get("id")
    if request_id is not None and not (type(request_id) is str and _VALID_ID.fullmatch(request_id)):
        raise InvalidTensor(
            "id: 1-128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit (it is the "
            "request id: repeating it returns the first answer)"
        )
    inputs = body.get("inputs")
    if type(inputs) is not list or not inputs:
        raise InvalidTensor("inputs: a non-empty list of input tensors is required")
    tensors = _Tensors(binary)
    columns = [
        tensors.read(_object(t, _INPUT_KEYS, f"inputs.{i}"), i) for i, t in enumerate(inputs)
    ]
    tensors.finish()
    matrix = _matrix(columns, schema, limit)
    return InferRequest(
        batch=Batch(list(schema.names), matrix, request_id),
        id=request_id,
        parameters=_parameters(body.get("parameters"), "parameters"),
        outputs=_outputs(body.get("outputs")),
    )


@dataclass
class _Column:
    name: str
    shape: list[int]
    values: np.ndarray


class _Tensors:
    """Reads each input's data: JSON numbers, or its share of the binary section."""

    def __init__(self, binary: bytes) -> None:
        self.binary = binary
        self.offset = 0

    def read(self, tensor: dict[str, Any], index: int) -> _Column:
        name = tensor.get("name")
        if type(name) is not str or not name:
            raise InvalidTensor(f"inputs.{index}: a name is required")
        where = f"input {name!r}"
        shape = tensor.get("shape")
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            raise InvalidTensor(f"{where}: shape is a list of non-negative integers")
        datatype = tensor.get("datatype")
        if type(datatype) is not str or datatype not in _BINARY:  # {} or [] is unhashable
            raise InvalidTensor(
                f"{where}: datatype {datatype!r} is not one this model takes; send FP32 or FP64 "
                f"(or {', '.join(k for k in _BINARY if k not in ('FP32', 'FP64'))})"
            )
        parameters = _parameters(tensor.get("parameters"), where)
        size = math.prod(shape)
        if "binary_data_size" in parameters:
            if "data" in tensor:
                raise InvalidTensor(f"{where}: data given both in JSON and as binary_data_size")
            values = self._binary(parameters["binary_data_size"], datatype, size, where)
        else:
            values = _json_values(tensor.get("data"), size, where)
        return _Column(name, shape, _typed(values, datatype, where))

    def _binary(self, declared: Any, datatype: str, size: int, where: str) -> np.ndarray:
        dtype = _BINARY[datatype]
        if type(declared) is not int or declared != size * dtype.itemsize:
            raise InvalidTensor(
                f"{where}: binary_data_size {declared!r}; {size} {datatype} values take "
                f"{size * dtype.itemsize} bytes"
            )
        chunk = self.binary[self.offset : self.offset + declared]
        if len(chunk) != declared:
            raise InvalidTensor(f"{where}: the body ends before its {declared} binary bytes")
        self.offset += declared
        values = np.frombuffer(chunk, dtype=dtype).astype(np.float64)
        if not np.isfinite(values).all():
            position = int(np.flatnonzero(~np.isfinite(values))[0])
            raise InvalidTensor(f"{where}: value {position} is {values[position]} (not finite)")
        return values

    def finish(self) -> None:
        if self.offset != len(self.binary):
            raise InvalidTensor(
                f"{len(self.binary) - self.offset} bytes after the JSON header belong to no "
                "input (check each input's binary_data_size)"
            )


def _json_values(data: Any, size: int, where: str) -> np.ndarray:
    if type(data) is not list:
        raise InvalidTensor(f"{where}: data is a list of numbers (flat, or nested by shape)")
    flat = data
    while flat and type(flat[0]) is list:
        if not all(type(item) is list for item in flat):
            raise InvalidTensor(f"{where}: data nests lists and numbers at one level")
        flat = list(chain.from_iterable(flat))
    kinds = set(map(type, flat))
    if not kinds <= _NUMBERS:
        odd = next(v for v in flat if type(v) not in _NUMBERS)
        raise InvalidTensor(f"{where}: data holds {odd!r} ({type(odd).__name__}); send numbers")
    if len(flat) != size:
        raise InvalidTensor(f"{where}: its shape holds {size} values, its data {len(flat)}")
    return np.array(flat, dtype=np.float64)


def _typed(values: np.ndarray, datatype: str, where: str) -> np.ndarray:
    """Values as the datatype says they are: rounded to a float type's precision, integral and
    within an integer type's range."""
    if datatype in _FLOATS:
        kind = _FLOATS[datatype]
        limit = float(np.finfo(kind).max)
        if values.size and not (np.abs(values) <= limit).all():
            raise InvalidTensor(f"{where}: a value beyond {datatype}'s range (±{limit:g})")
        return values.astype(kind).astype(np.float64)
    info = np.iinfo(_INTS[datatype])
    if values.size and not (
        (values == np.floor(values)).all() and values.min() >= info.min and values.max() <= info.max
    ):
        raise InvalidTensor(f"{where}: {datatype} data are integers in [{info.min}, {info.max}]")
    return values


def _matrix(columns: list[_Column], schema: FeatureSchema, limit: int) -> np.ndarray:
    names = schema.names
    if len(columns) == 1 and columns[0].name not in schema.name_set:
        return _one_tensor(columns[0], names, schema, limit)
    by_name: dict[str, _Column] = {}
    for column in columns:
        if column.name not in schema.name_set:
            raise InvalidTensor(
                f"input {column.name!r}: not a feature of this model; send one input per "
                f"feature ({', '.join(names)}) or one [n, {len(names)}] tensor"
            )
        if column.name in by_name:
            raise InvalidTensor(f"input {column.name!r}: given twice")
        by_name[column.name] = column
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InvalidTensor(f"input {missing[0]!r}: missing (one input per feature: {names})")
    for column in columns:
        if len(column.shape) not in (1, 2) or column.shape[1:] not in ([], [1]):
            raise InvalidTensor(
                f"input {column.name!r}: shape {column.shape}; one input per "
                "feature is [n] or [n, 1]"
            )
    rows = {column.shape[0] for column in columns}
    if len(rows) != 1:
        raise InvalidTensor(f"inputs: every feature needs the same number of rows, not {rows}")
    n = rows.pop()
    _check_rows(n, limit)
    matrix = np.column_stack([by_name[name].values for name in names])
    return _in_domain(matrix, schema, lambda i, name: f"input {name!r}[{i}]")


def _one_tensor(column: _Column, names: list[str], schema: FeatureSchema, limit: int) -> np.ndarray:
    if len(column.shape) != 2 or column.shape[1] != len(names):
        raise InvalidTensor(
            f"input {column.name!r}: shape {column.shape}; one tensor is [n, {len(names)}], "
            f"columns {', '.join(names)} in that order"
        )
    _check_rows(column.shape[0], limit)
    matrix = column.values.reshape(column.shape[0], len(names))
    return _in_domain(matrix, schema, lambda i, name: f"input {column.name!r} row {i} ({name})")


def _check_rows(n: int, limit: int) -> None:
    if n < 1:
        raise InvalidTensor("inputs: at least one row is needed")
    if n > limit:
        raise TooManyRows(
            f"{n} rows in one call; the limit is {limit} (gateway.max_batch_instances): split "
            "the batch"
        )


def _in_domain(matrix: np.ndarray, schema: FeatureSchema, where: Any) -> np.ndarray:
    bad = np.flatnonzero(schema.out_of_domain(matrix))
    if bad.size:
        row = int(bad[0])
        for name, value in zip(schema.names, matrix[row], strict=True):
            problem = schema.value_problem(name, float(value))
            if problem is not None:
                more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
                raise InvalidTensor(f"{where(row, name)}: {problem}{more}")
    return matrix


def _outputs(value: Any) -> tuple[str, ...]:
    if value is None:
        return OUTPUTS
    if type(value) is not list:
        raise InvalidTensor("outputs: a list of requested outputs")
    names: list[str] = []
    for index, item in enumerate(value):
        output = _object(item, _OUTPUT_KEYS, f"outputs.{index}")
        _parameters(output.get("parameters"), f"outputs.{index}")
        name = output.get("name")
        if name not in OUTPUTS:
            raise InvalidTensor(
                f"outputs.{index}: unknown output {name!r}; this model has {' and '.join(OUTPUTS)}"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def infer_response(request: InferRequest, answer: BatchAnswer, model_name: str) -> bytes:
    """The inference response: the requested outputs as tensors, in request order."""
    n, k = len(answer.labels), len(answer.classes)
    tensors = {
        "label": {"name": "label", "datatype": "BYTES", "shape": [n], "data": answer.labels},
        "probabilities": {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [n, k],
            "parameters": {"classes": orjson.dumps(answer.classes).decode()},
            "data": list(chain.from_iterable(answer.probabilities)),
        },
    }
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(answer.model_version)}
    if request.id is not None:
        body["id"] = request.id
    parameters = {k: v for k, v in request.parameters.items() if k != "binary_data_output"}
    if parameters:
        body["parameters"] = parameters
    body["outputs"] = [tensors[name] for name in request.outputs]
    return orjson.dumps(body)
