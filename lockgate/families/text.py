"""Text classification: an LSTM or a small transformer over raw strings
(IMDB style). Tokenisation is a layer of the model, so the saved model and
the service take text exactly as users write it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings, ValidationSettings
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
    architectures = ("lstm", "transformer")
    needs_tensorflow: ClassVar[str] = "text models tokenise with TextVectorization, which needs the TensorFlow backend"

    def feature_columns(self, data: "LoadedData") -> list[str]:
        return [data.text_column]

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return TEXT_FEATURES

    def features(self, data: "LoadedData") -> np.ndarray:
        return data.frame[data.text_column].astype(str).to_numpy(dtype=str)

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
        return text_encoder(x_train, architecture, settings.max_tokens, settings.sequence_length, width)
