"""Text classification: an LSTM or a small transformer over raw strings
(IMDB style). Tokenisation is a layer of the model, so the saved model and
the service take text exactly as users write it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lockgate.families.base import Classification, Family, RequestError
from lockgate.records import DatasetMeta

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data import LoadedData
    from lockgate.settings import TrainingSettings, ValidationSettings

# What validation profiles of a text, for drift against the champion's data.
TEXT_FEATURES = ["text_length", "word_count"]


class TextFamily(Classification, Family):
    name = "text"
    architectures = ("lstm", "transformer")
    endpoints = "/predict_text with a list of strings"
    needs_tensorflow: ClassVar[str] = "text models tokenise with TextVectorization, which needs the TensorFlow backend"

    def feature_columns(self, data: "LoadedData") -> list[str]:
        return [data.text_column]

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return TEXT_FEATURES

    def features(self, data: "LoadedData") -> np.ndarray:
        return data.frame[data.text_column].astype(str).to_numpy(dtype=str)

    def feature_expectations(self, data: "LoadedData", settings: "ValidationSettings") -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, WARNING, check

        column, allowed_gaps = data.text_column, 1.0 - settings.max_null_fraction
        return [
            gxe.ExpectColumnToExist(column=column, **check("text column present", BLOCKING)),
            gxe.ExpectColumnValuesToNotBeNull(column=column, mostly=allowed_gaps, **check("texts not null", BLOCKING)),
            gxe.ExpectColumnValueLengthsToBeBetween(
                column=column, min_value=1, mostly=allowed_gaps, **check("texts not empty", BLOCKING)
            ),
            gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column=column, min_value=1.0 - settings.max_duplicate_fraction, **check("duplicate texts", WARNING)
            ),
        ]

    def schema_expectations(self, reference: DatasetMeta) -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, check

        return [gxe.ExpectColumnToExist(column=reference.text_column, **check("same text column as the champion's", BLOCKING))]

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: "TrainingSettings", width: float
    ) -> tuple[Any, Any]:
        from lockgate.models import text_encoder

        return text_encoder(x_train, architecture, settings.max_tokens, settings.sequence_length, width)

    def warm_up_input(self, meta: DatasetMeta) -> np.ndarray:
        return np.array(["warm up"])

    def text_input(self, texts: Any, max_rows: int, max_chars: int) -> np.ndarray:
        """A list of strings -> the string array the model tokenises itself."""
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
        return np.asarray(texts, dtype=str)

    def binary_input(self, array: np.ndarray, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """An array of strings, checked as /predict_text checks its texts."""
        return self.text_input(array.tolist(), max_rows, max_chars)

    def example_request(self, meta: DatasetMeta, x: Any) -> tuple[str, dict[str, Any]]:
        return "/predict_text", {"texts": [str(t) for t in x]}
