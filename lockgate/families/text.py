"""Text classification: a bag of words and word pairs, a bidirectional LSTM
or a small transformer over token ids.

Texts are tokenised before the model (lockgate/core/tokens.py, with the
vocabulary kept in the data's meta), as a table's categories are encoded:
the graph takes integers, so ONNX and TFLite run it and are checked for
parity, and the service tokenises each request with the same function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings, ValidationSettings
from lockgate.core.tokens import token_ids
from lockgate.families.base import Family
from lockgate.families.checks import BLOCKING, WARNING, check
from lockgate.families.targets import Classification
from lockgate.models.architectures import text_encoder

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data.datasets import LoadedData

# What validation profiles of a text, for drift against the champion's data.
TEXT_FEATURES = ["text_length", "word_count"]


class TextFamily(Family):
    name = "text"
    target = Classification()
    inputs = "texts"
    architectures = ("tfidf", "lstm", "bag", "transformer")
    # Explanations integrate over one model's "embed" layer; an average of
    # candidates has one per candidate.
    blendable: ClassVar[bool] = False

    def candidates(self, meta: DatasetMeta, requested: str) -> tuple[str, ...]:
        """By default TF-IDF with logistic regression (fitted in seconds; it
        wins where a few words and pairs decide) and the LSTM (where word
        order does); the validation split decides. The bag of embeddings
        and the transformer only when asked."""
        return ("tfidf", "lstm") if requested == "auto" else (self.architecture(meta, requested),)

    def feature_columns(self, data: "LoadedData") -> list[str]:
        return [data.text_column]

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return TEXT_FEATURES

    def features(self, data: "LoadedData") -> np.ndarray:
        """Token ids in the data's vocabulary (counted with default settings
        if validation has not counted it)."""
        if data.vocabulary is None:
            data.decide_vocabulary(TrainingSettings())
        return token_ids(data.frame[data.text_column].astype(str).to_numpy(dtype=str), data.vocabulary)

    def feature_expectations(self, data: "LoadedData", settings: ValidationSettings) -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

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
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        return [gxe.ExpectColumnToExist(column=reference.text_column, **check("same text column as the champion's", BLOCKING))]

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: TrainingSettings, width: float
    ) -> tuple[Any, Any]:
        if meta.vocabulary is None:
            raise ValueError("text data without a vocabulary was snapshot before tokenising; validate it again")
        return text_encoder(x_train, meta.vocabulary, architecture, width)
