"""Open Inference Protocol tensors: both input forms become the batch /v1 builds, and every
malformed tensor is refused naming its input."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from gateway.batches import BatchAnswer
from gateway.oip import InferRequest, InvalidTensor, TooManyRows, infer_response, parse_infer
from irisflow.features import FeatureSchema
from irisflow.schemas import FeatureStats
from tests.factories import SETOSA, VIRGINICA

NAMES = list(SETOSA)
SCHEMA = FeatureSchema(
    NAMES,
    {n: FeatureStats(mean=3.0, std=1.0, min=0.0, max=8.0) for n in NAMES},
    max_reference_std=100.0,
)
ROWS = [list(SETOSA.values()), list(VIRGINICA.values())]


def _parse(body: dict[str, Any], limit: int = 10) -> InferRequest:
    return parse_infer(orjson.dumps(body), SCHEMA, limit=limit)


def _tensor(**changes: Any) -> dict[str, Any]:
    return {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": ROWS, **changes}


def test_one_tensor_flat_or_nested_is_the_matrix_of_its_rows() -> None:
    flat = _parse({"inputs": [_tensor(data=[v for row in ROWS for v in row])]})
    nested = _parse({"inputs": [_tensor()], "id": "call-1"})
    assert flat.batch.matrix.tolist() == nested.batch.matrix.tolist() == ROWS
    assert flat.batch.names == NAMES
    assert (nested.id, nested.batch.request_id, flat.id) == ("call-1", "call-1", None)


def test_one_input_per_feature_is_the_same_matrix_in_the_models_order() -> None:
    inputs = [
        {"name": name, "shape": [2, 1] if i % 2 else [2], "datatype": "FP64", "data": column}
        for i, (name, column) in enumerate(zip(NAMES, zip(*ROWS, strict=True), strict=True))
    ][::-1]
    for item in inputs:
        item["data"] = list(item["data"])
    assert _parse({"inputs": inputs}).batch.matrix.tolist() == ROWS


def test_fp32_values_are_rounded_to_fp32_and_integers_are_taken_as_numbers() -> None:
    fp32 = _parse({"inputs": [_tensor(datatype="FP32")]}).batch.matrix
    assert fp32.tolist() == np.array(ROWS, dtype=np.float32).astype(np.float64).tolist()
    ints = _parse({"inputs": [_tensor(datatype="INT32", data=[[5, 3, 1, 0], [6, 3, 5, 2]])]})
    assert ints.batch.matrix.tolist() == [[5.0, 3.0, 1.0, 0.0], [6.0, 3.0, 5.0, 2.0]]


def test_binary_tensor_data_after_the_json_header_is_read_as_little_endian() -> None:
    raw = np.array(ROWS, dtype="<f4").tobytes()
    header = orjson.dumps(
        {"inputs": [_tensor(datatype="FP32", parameters={"binary_data_size": len(raw)})]}
    )
    header = header.replace(b',"data":' + orjson.dumps(ROWS), b"")
    parsed = parse_infer(header + raw, SCHEMA, limit=10, header_length=len(header))
    assert parsed.batch.matrix.tolist() == np.array(ROWS, dtype=np.float32).tolist()


def _binary(values: bytes, size: int) -> tuple[bytes, int]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    return header + values, len(header)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": [_tensor()], "colour": 1}, "unknown field 'colour'"),
        ({"inputs": [_tensor()], "id": "a/b"}, "id:"),
        ({"inputs": [_tensor(shape=[2, 3], data=[1.0] * 6)]}, "input 'input-0': shape [2, 3]"),
        ({"inputs": [_tensor(shape=[8])]}, "input 'input-0': shape [8]"),
        ({"inputs": [_tensor(shape=[2, -4])]}, "input 'input-0': shape is a list"),
        ({"inputs": [_tensor(shape=[3, 4])]}, "its shape holds 12 values, its data 8"),
        ({"inputs": [_tensor(datatype="BYTES")]}, "input 'input-0': datatype 'BYTES'"),
        ({"inputs": [_tensor(datatype="BOOL")]}, "input 'input-0': datatype 'BOOL'"),
        ({"inputs": [_tensor(datatype={})]}, "input 'input-0': datatype {}"),
        ({"inputs": [_tensor(datatype=["FP32"])]}, "input 'input-0': datatype ['FP32']"),
        ({"inputs": [_tensor(data=[[5.1, 3.5, 1.4, "0.2"], ROWS[1]])]}, "holds '0.2' (str)"),
        ({"inputs": [_tensor(data=[[5.1, 3.5, 1.4, True], ROWS[1]])]}, "holds True (bool)"),
        ({"inputs": [_tensor(data=[[5.1, 3.5, 1.4, None], ROWS[1]])]}, "holds None"),
        ({"inputs": [_tensor(data=[ROWS[0], 6.7, 3.0, 5.8, 2.2])]}, "nests lists and numbers"),
        ({"inputs": [_tensor(data="1,2,3")]}, "data is a list"),
        ({"inputs": [_tensor(datatype="INT8", data=[[5, 3, 1, 0], [6, 3, 5, 2.5]])]}, "INT8"),
        ({"inputs": [_tensor(datatype="UINT8", data=[[5, 3, 1, 0], [6, 3, 5, -2]])]}, "UINT8"),
        ({"inputs": [_tensor(datatype="FP16", data=[[5, 3, 1, 0], [6, 3, 5, 7e4]])]}, "FP16"),
        ({"inputs": [_tensor(data=[ROWS[0], [6.7, 3.0, 5.8, 1e30]])]}, "row 1 (petal_width)"),
        ({"inputs": [_tensor(shape=[0, 4], data=[])]}, "at least one row"),
        ({"inputs": [_tensor(), _tensor(name="sepal_length")]}, "input 'input-0': not a feature"),
        ({"inputs": [{**_tensor(), "name": ""}]}, "inputs.0: a name"),
        ({"inputs": [{**_tensor(), "extra": 1}]}, "inputs.0: unknown field 'extra'"),
        ({"inputs": [_tensor(parameters={"x": [1]})]}, "parameters are an object"),
        ({"inputs": [_tensor()], "outputs": [{"name": "score"}]}, "unknown output 'score'"),
    ],
)
def test_a_malformed_request_is_refused_naming_what_is_wrong(
    body: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidTensor) as refused:
        _parse(body)
    assert named in str(refused.value)


def test_one_input_per_feature_must_name_each_feature_once_with_one_shape() -> None:
    column = {"shape": [1], "datatype": "FP64", "data": [1.0]}
    three = [{"name": n, **column} for n in NAMES[:3]]
    with pytest.raises(InvalidTensor, match="'petal_width': missing"):
        _parse({"inputs": three})
    with pytest.raises(InvalidTensor, match="'sepal_length': given twice"):
        _parse({"inputs": [*three, {"name": NAMES[0], **column}]})
    uneven = [*three, {"name": NAMES[3], "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]
    with pytest.raises(InvalidTensor, match="same number of rows"):
        _parse({"inputs": uneven})
    wide = {**three[0], "shape": [1, 2], "data": [1.0, 2.0]}
    with pytest.raises(InvalidTensor, match=r"'sepal_length': shape \[1, 2\]"):
        _parse({"inputs": [wide, *three[1:], {"name": NAMES[3], **column}]})


def test_more_rows_than_the_limit_is_its_own_refusal() -> None:
    with pytest.raises(TooManyRows, match="limit is 1"):
        _parse({"inputs": [_tensor()]}, limit=1)


@pytest.mark.parametrize(
    ("values", "size", "named"),
    [
        (struct.pack("<4f", 1, 2, 3, float("nan")), 16, "value 3 is nan"),
        (struct.pack("<4f", 1, 2, 3, float("inf")), 16, "value 3 is inf"),
        (struct.pack("<3f", 1, 2, 3), 12, "binary_data_size 12"),
        (struct.pack("<3f", 1, 2, 3), 16, "ends before"),
        (struct.pack("<5f", 1, 2, 3, 4, 5), 16, "4 bytes after the JSON header"),
    ],
)
def test_malformed_binary_tensor_data_is_refused(values: bytes, size: int, named: str) -> None:
    raw, length = _binary(values, size)
    with pytest.raises(InvalidTensor) as refused:
        parse_infer(raw, SCHEMA, limit=10, header_length=length)
    assert named in str(refused.value)
    with pytest.raises(InvalidTensor, match="not within the body"):
        parse_infer(raw, SCHEMA, limit=10, header_length=len(raw) + 1)


def test_the_response_holds_the_requested_outputs_the_id_and_the_parameters() -> None:
    answer = BatchAnswer(
        request_id="call-1",
        model_version=3,
        classes=["setosa", "virginica"],
        labels=["setosa", "virginica"],
        probabilities=[[0.75, 0.25], [0.125, 0.875]],
        latency_seconds=0.1,
    )
    request = _parse(
        {
            "id": "call-1",
            "inputs": [_tensor()],
            "parameters": {"tenant": "a", "binary_data_output": True},
            "outputs": [{"name": "probabilities"}, {"name": "label"}],
        }
    )
    body = orjson.loads(infer_response(request, answer, "iris"))
    assert body["model_name"] == "iris"
    assert body["model_version"] == "3"
    assert body["id"] == "call-1"
    assert body["parameters"] == {"tenant": "a"}
    probabilities, labels = body["outputs"]
    assert probabilities == {
        "name": "probabilities",
        "datatype": "FP64",
        "shape": [2, 2],
        "parameters": {"classes": '["setosa","virginica"]'},
        "data": [0.75, 0.25, 0.125, 0.875],
    }
    assert labels == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["setosa", "virginica"],
    }
    only = _parse({"inputs": [_tensor()], "outputs": [{"name": "label"}]})
    assert [o["name"] for o in orjson.loads(infer_response(only, answer, "iris"))["outputs"]] == [
        "label"
    ]
    assert "id" not in orjson.loads(infer_response(only, answer, "iris"))
