"""A model family that exists only in the tests, to show what adding one takes.

Numeric vectors: a table whose features are all numbers without gaps, given
to a small dense network as one float vector per row, and served as arrays
on /predict. Everything the family decides is in this one module; what it
predicts (classification) and how its service reads requests ("arrays") are
reused from the registries by name, so the Bento needs none of this code.
Registering it is one line: ``FAMILIES[VECTORS.name] = VECTORS``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from great_expectations import expectations as gxe

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings, ValidationSettings
from lockgate.data.datasets import LoadedData
from lockgate.families.base import Family
from lockgate.families.checks import BLOCKING, NUMERIC_TYPES, check
from lockgate.families.targets import Classification


class VectorFamily(Family):
    name = "vectors"
    target = Classification()
    inputs = "arrays"
    architectures = ("dense",)

    def accepts(self, data: LoadedData) -> bool:
        """A table read from a file whose every feature column is numeric."""
        features = data.frame.drop(columns=[data.target])
        return data.is_table and all(pd.api.types.is_numeric_dtype(features[c]) for c in features)

    def features(self, data: LoadedData) -> np.ndarray:
        return data.frame[self.feature_columns(data)].to_numpy(dtype="float32")

    def feature_expectations(self, data: LoadedData, settings: ValidationSettings) -> list[gxe.Expectation]:
        suite: list[gxe.Expectation] = []
        for column in self.feature_columns(data):
            suite.append(gxe.ExpectColumnValuesToNotBeNull(column=column, **check("numbers without gaps", BLOCKING)))
            suite.append(gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMERIC_TYPES,
                                                              **check("numbers without gaps", BLOCKING)))
        return suite

    def schema_expectations(self, reference: DatasetMeta) -> list[gxe.Expectation]:
        return [gxe.ExpectTableColumnsToMatchSet(column_set=[*reference.feature_columns, reference.target],
                                                 exact_match=True, **check("same columns as the champion's", BLOCKING))]

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: TrainingSettings, width: float
    ) -> tuple[Any, Any]:
        import keras

        inputs = keras.Input(shape=(x_train.shape[1],), name="vector")
        scale = keras.layers.Normalization(name="standardise")
        scale.adapt(x_train)
        return inputs, keras.layers.Dense(max(4, int(32 * width)), activation="relu")(scale(inputs))


VECTORS = VectorFamily()
