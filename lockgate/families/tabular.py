"""Table classification, and what it shares with regression on tables.

The shared part (`TableFamily`) reads a table through its data contract
(`lockgate.core.contract`): columns get roles, raw rows are encoded into
numbers and category codes, the model imputes, standardises and embeds them;
the service takes raw records checked against the same contract
(`lockgate.serving.requests.TableRequests`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.core.contract import encode
from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings, ValidationSettings
from lockgate.families.base import Family
from lockgate.families.checks import BLOCKING, WARNING, check
from lockgate.families.targets import Classification
from lockgate.models.architectures import table_encoder

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data.datasets import LoadedData


class TableFamily(Family):
    """Rows of a table with a data contract; the task mixin decides the rest."""

    inputs = "tables"
    architectures = ("mlp", "linear", "forest")
    table = True

    def accepts(self, data: "LoadedData") -> bool:
        """Any table: whether a numeric target is a class or a value is the user's call."""
        return data.is_table

    def candidates(self, meta: DatasetMeta, requested: str) -> tuple[str, ...]:
        """By default a network and a forest: on some tables boosted trees
        win clearly, on others the network; the validation split decides."""
        return ("mlp", "forest") if requested == "auto" else (self.architecture(meta, requested),)

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return [c.name for c in data.contract.used if c.role == "numeric"]

    def features(self, data: "LoadedData") -> np.ndarray:
        return encode(data.frame, data.contract)

    def feature_expectations(self, data: "LoadedData", settings: ValidationSettings) -> list["gxe.Expectation"]:
        """At least one feature, duplicates warned about, and gaps blocked
        only where settings set a share (sparse columns are warned about by
        the contract checks, and the model imputes them)."""
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        suite: list[gxe.Expectation] = [
            gxe.ExpectTableColumnCountToBeBetween(min_value=2, **check("at least one feature column", BLOCKING)),
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=self.feature_columns(data), mostly=1.0 - settings.max_duplicate_fraction,
                **check("duplicate rows", WARNING),
            ),
        ]
        for spec in data.contract.used:
            allowed = settings.missing_share.get(spec.name, settings.max_missing_share)
            if allowed is None:
                continue
            suite.append(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=spec.name, mostly=1.0 - allowed, **check("missing values within limits", BLOCKING)
                )
            )
        return suite

    def schema_expectations(self, reference: DatasetMeta) -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        return [
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(reference.feature_columns) + [reference.target], exact_match=True,
                **check("same columns as the champion's data", BLOCKING),
            )
        ]

    def drift_expectations(self, reference: DatasetMeta, settings: ValidationSettings) -> list["gxe.Expectation"]:
        """Means close to the champion's data, and values within its range."""
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        suite = super().drift_expectations(reference, settings)
        for column, stats in reference.profile.items():
            margin = 0.1 * (stats["max"] - stats["min"]) + 1e-9
            suite.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=column, min_value=stats["min"] - margin, max_value=stats["max"] + margin, mostly=0.99,
                    **check("values within the champion's range", WARNING),
                )
            )
        return suite

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: TrainingSettings, width: float
    ) -> tuple[Any, Any]:
        return table_encoder(meta.table_contract(), x_train, architecture, width)


class TabularFamily(TableFamily):
    name = "tabular"
    target = Classification()
