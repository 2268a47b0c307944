"""The served side of every family: requests in, answers out.

What a service needs to read a request and to answer it, with numpy and
pandas only (no Keras, no Great Expectations, no training code), so the
Bento carries this module and nothing of training. A family names its kind of
input (`Family.requests`) and its prediction target; a served model's meta
records both, so the service looks them up here by name.

Every rejection is a RequestError with an HTTP status and a message that
names the problem.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from lockgate.core.contract import ColumnSpec, TableContract, encode
from lockgate.core.records import DatasetMeta
from lockgate.core.tokens import token_ids
from lockgate.serving.preprocessing import load_image_file


class RequestError(Exception):
    """A request the model cannot take: an HTTP status and a message that
    names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Requests:
    """One kind of model input: which endpoints take it and how each turns a
    request into model input. The defaults refuse, pointing the way."""

    name: ClassVar[str]
    endpoints: ClassVar[str]  # which endpoints take it, for messages that point the way

    def wrong_endpoint(self, meta: DatasetMeta) -> RequestError:
        article = "an" if meta.family[:1] in tuple("aeiou") else "a"
        return RequestError(422, f"this is {article} {meta.family} model: use {self.endpoints}")

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """/predict: nested lists (or rows) -> model input."""
        raise self.wrong_endpoint(meta)

    def binary_input(self, array: np.ndarray, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """/predict_npy: one array (a batch) -> model input, checked as /predict
        checks its rows."""
        return self.array_input(array.tolist(), meta, max_rows)

    def image_input(self, content: bytes, meta: DatasetMeta) -> np.ndarray:
        """/predict_image: one uploaded file -> model input."""
        raise self.wrong_endpoint(meta)

    def records_input(self, records: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """/predict_records: JSON objects keyed by column -> model input."""
        raise self.wrong_endpoint(meta)

    def text_input(self, texts: Any, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """/predict_text: a list of strings -> model input."""
        raise self.wrong_endpoint(meta)

    def warm_up_input(self, meta: DatasetMeta) -> np.ndarray:
        """One input that traces the served model before traffic."""
        return np.zeros((1, *meta.input_shape), dtype="float32")

    def example_request(self, meta: DatasetMeta, x: Any) -> tuple[str, dict[str, Any]]:
        """The route and body a user sends for the inputs `x`."""
        return "/predict", {"instances": np.asarray(x).tolist()}


class ArrayRequests(Requests):
    """Numbers in the model's input shape, as nested lists or a .npy batch."""

    name = "arrays"
    endpoints = "/predict with arrays"

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        return numeric_instances(instances, meta, max_rows)

    def binary_input(self, array: np.ndarray, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """The array is checked as it came, without a detour through lists."""
        return self.array_input(array, meta, max_rows)


class ImageRequests(ArrayRequests):
    """Pixel arrays within the training pixel scale, or one uploaded image."""

    name = "images"
    endpoints = "/predict with arrays, or /predict_image"

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        array = numeric_instances(instances, meta, max_rows)
        scale = float(meta.pixel_scale)
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > scale:
            raise RequestError(422, f"pixel values must lie in [0, {scale:g}]; got values from {low:g} to {high:g}")
        return array

    def image_input(self, content: bytes, meta: DatasetMeta) -> np.ndarray:
        """One uploaded PNG/JPEG, prepared exactly as the training images were."""
        if not content:
            raise RequestError(422, "the uploaded image is empty")
        height, width, channels = meta.input_shape
        try:
            array = load_image_file(content, (height, width), channels, float(meta.pixel_scale))
        except ValueError as exc:
            raise RequestError(415, f"upload a PNG or JPEG image: {exc}") from None
        return array[np.newaxis]


class TextRequests(Requests):
    """Raw strings, tokenised here with the model's vocabulary (a text model
    from before tokenising moved out of the graph takes the strings)."""

    name = "texts"
    endpoints = "/predict_text with a list of strings"

    def text_input(self, texts: Any, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """A list of strings -> the model's token ids."""
        if not isinstance(texts, list) or not texts:
            raise RequestError(422, "'texts' must be a non-empty list of strings")
        if len(texts) > max_rows:
            raise RequestError(413, f"{len(texts)} texts in one request; the limit is {max_rows}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RequestError(422, f"text {i} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise RequestError(422, f"text {i} is empty")
            if len(text) > max_chars:
                raise RequestError(413, f"text {i} has {len(text)} characters; the limit is {max_chars}")
        if meta.vocabulary is not None:
            return token_ids(texts, meta.vocabulary)
        return np.asarray(texts, dtype=str)

    def binary_input(self, array: np.ndarray, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """An array of strings, checked as /predict_text checks its texts."""
        return self.text_input(array.tolist(), meta, max_rows, max_chars)

    def warm_up_input(self, meta: DatasetMeta) -> np.ndarray:
        return self.text_input(["warm up"], meta, 1, 100)

    def example_request(self, meta: DatasetMeta, x: Any) -> tuple[str, dict[str, Any]]:
        """Token ids are written back as their words (unknown ones as a word it does not hold):
        the route takes texts, and the service tokenises them to the same ids."""
        x = np.asarray(x)
        if x.dtype.kind in "iu" and meta.vocabulary is not None:
            unknown = next(f"unk{n}" for n in range(len(meta.vocabulary.words) + 1) if f"unk{n}" not in meta.vocabulary.index())
            words = ["", unknown, *meta.vocabulary.words]
            return "/predict_text", {"texts": [" ".join(words[i] for i in row if i) or unknown for row in x]}
        return "/predict_text", {"texts": [str(t) for t in x]}


class TableRequests(Requests):
    """Raw records (strings and nulls included) checked against the data
    contract and encoded as the training rows were."""

    name = "tables"
    endpoints = "/predict_records, or /predict with arrays"

    def records_input(self, records: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        if not isinstance(records, list) or not records:
            raise RequestError(422, "'records' must be a non-empty list of objects")
        if len(records) > max_rows:
            raise RequestError(413, f"{len(records)} records in one request; the limit is {max_rows}")
        contract = _contract(meta)
        try:
            return encode(records_frame(records, contract), contract)
        except RecordError as exc:
            raise RequestError(422, str(exc)) from None

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """Rows of raw values in the order of the table's columns."""
        columns = _contract(meta).source_columns
        if not isinstance(instances, list) or not instances:
            raise RequestError(422, f"'instances' must be a non-empty list of rows of {len(columns)} values")
        if len(instances) > max_rows:
            raise RequestError(413, f"{len(instances)} examples in one request; the limit is {max_rows}")
        rows = []
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != len(columns):
                raise RequestError(422, f"instance {i} must be a list of {len(columns)} values, in the order {columns[:20]}")
            rows.append(dict(zip(columns, row)))
        return self.records_input(rows, meta, max_rows)

    def example_request(self, meta: DatasetMeta, x: Any) -> tuple[str, dict[str, Any]]:
        """A table's raw rows as records, gaps as null."""
        if not isinstance(x, pd.DataFrame):
            return super().example_request(meta, x)
        rows = x.astype(object).where(x.notna(), None).to_dict("records")
        return "/predict_records", {"records": rows}


def _contract(meta: DatasetMeta) -> TableContract:
    contract = meta.table_contract()
    if contract is None:
        raise RequestError(500, "this table model was packaged without its data contract")
    return contract


REQUESTS: dict[str, Requests] = {r.name: r for r in (ArrayRequests(), ImageRequests(), TextRequests(), TableRequests())}


def requests_for(meta: DatasetMeta) -> Requests:
    """How the model of `meta` reads its requests."""
    try:
        return REQUESTS[meta.inputs]
    except KeyError:
        raise ValueError(f"unknown kind of input {meta.inputs!r}; known: {', '.join(REQUESTS)}") from None


# ------------------------------------------------------------------- answers


def answer(outputs: np.ndarray, meta: DatasetMeta) -> dict[str, Any]:
    """The body of a prediction: labels and probabilities, or values."""
    if meta.task == "regression":
        return {"target": meta.target, "predictions": [round(float(v), 6) for v in outputs[:, 0]]}
    names = meta.class_names
    return {
        "classes": names,
        "labels": [names[i] for i in outputs.argmax(axis=1)],
        "probabilities": np.round(outputs, 6).tolist(),
    }


# ---------------------------------------------------------- request parsing


def numeric_instances(instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
    """Nested lists of numbers (or an array, from the binary route) -> a
    finite float32 array of the model's input shape (a flat row of the right
    length is reshaped)."""
    shape = tuple(meta.input_shape)
    shape_text = ", ".join(map(str, shape))
    if isinstance(instances, np.ndarray) and instances.ndim == 0 or not isinstance(instances, (list, np.ndarray)):
        raise RequestError(422, "'instances' must be a list of examples")
    if not len(instances):
        raise RequestError(422, "'instances' is empty: send at least one example")
    if len(instances) > max_rows:
        raise RequestError(413, f"{len(instances)} examples in one request; the limit is {max_rows}")
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError(422, f"'instances' must be equally sized nested lists of numbers, shape [n, {shape_text}]") from None
    if array.dtype.kind not in "fiub":
        found = "text" if array.dtype.kind in "US" else "mixed or non-numeric values"
        raise RequestError(422, f"examples must be numbers, got {found} (dtype {array.dtype})")
    array = array.astype("float64")
    if array.shape[1:] != shape:
        if array.ndim == 2 and array.shape[1] == math.prod(shape):
            array = array.reshape((len(array), *shape))
        else:
            raise RequestError(422, f"each example must have shape [{shape_text}], got [{', '.join(map(str, array.shape[1:]))}]")
    with np.errstate(over="ignore"):
        as_float32 = array.astype("float32")
    if not np.isfinite(as_float32).all():
        bad = int((~np.isfinite(as_float32)).reshape(len(array), -1).any(axis=1).sum())
        raise RequestError(422, f"{bad} example(s) contain NaN, infinite or out-of-float32-range values")
    return as_float32


class RecordError(ValueError):
    """A request record that does not fit the contract; the message names the column."""


def records_frame(records: list[Any], contract: TableContract) -> pd.DataFrame:
    """JSON records -> a raw frame, refusing what the contract cannot take:
    an unknown column, a number where a category was expected is accepted (it
    is spelt as text), text or a non-finite value where a number was expected
    is not. Missing columns and nulls are gaps, which the model imputes."""
    specs = {c.name: c for c in contract.used}
    excluded = {c.name for c in contract.excluded}
    rows: dict[str, list[Any]] = {name: [] for name in specs}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RecordError(f"record {i} is not an object keyed by column name")
        unknown = [k for k in record if k not in specs and k not in excluded]
        if unknown:
            raise RecordError(f"record {i}: unknown column(s) {unknown[:10]}; the model reads {list(specs)[:20]}")
        for name, spec in specs.items():
            value = record.get(name)
            rows[name].append(_request_value(i, name, spec, value))
    return pd.DataFrame(rows)


def _request_value(i: int, name: str, spec: ColumnSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.role == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"record {i}: column '{name}' must be a number or null, got {value!r}"[:300])
        try:
            number = float(value)
        except OverflowError:
            raise RecordError(f"record {i}: column '{name}' is too large for a number") from None
        if not math.isfinite(number) or abs(number) > 3.4e38:
            raise RecordError(f"record {i}: column '{name}' must be finite, got {value!r}"[:300])
        return number
    if spec.role == "categorical":
        if not isinstance(value, (str, bool, int, float)):
            raise RecordError(f"record {i}: column '{name}' must be a string, number, boolean or null, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"record {i}: column '{name}' must be finite, got {value!r}")
        return value
    if spec.role == "text":
        if not isinstance(value, str):
            raise RecordError(f"record {i}: column '{name}' must be text or null, got {value!r}"[:300])
        return value
    if not isinstance(value, str):
        raise RecordError(f"record {i}: column '{name}' must be a date string or null, got {value!r}"[:300])
    return value


def record_schema(contract: TableContract) -> dict[str, Any]:
    """JSON Schema of one request record, from the contract."""
    properties: dict[str, Any] = {}
    for spec in contract.used:
        if spec.role == "numeric":
            properties[spec.name] = {"type": ["number", "null"], "description": f"numeric, {spec.missing_share:.0%} missing in training"}
        elif spec.role == "categorical":
            schema: dict[str, Any] = {"type": ["string", "number", "boolean", "null"], "description": "categorical; unseen values are accepted"}
            if len(spec.vocabulary) <= 50:
                schema["examples"] = spec.vocabulary[:10]
            properties[spec.name] = schema
        elif spec.role == "text":
            properties[spec.name] = {"type": ["string", "null"], "description": "free text"}
        else:
            properties[spec.name] = {"type": ["string", "null"], "format": "date-time"}
    return {"type": "object", "properties": properties, "additionalProperties": False}
