"""Table classification, and what it shares with regression on tables.

The shared part (`TableFamily`) reads a table through its data contract
(`lockgate.families.tables`): columns get roles, raw rows are encoded into
numbers and category codes, the model imputes, standardises and embeds them,
and the service takes raw records checked against the same contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.families.base import Classification, Family, RequestError
from lockgate.records import DatasetMeta

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data import LoadedData
    from lockgate.settings import TrainingSettings, ValidationSettings


class TableFamily(Family):
    """Rows of a table with a data contract; the task mixin decides the rest."""

    architectures = ("mlp", "linear", "forest")
    endpoints = "/predict_records, or /predict with arrays"

    def candidates(self, meta: DatasetMeta, requested: str) -> tuple[str, ...]:
        """By default a network and a forest: on some tables boosted trees
        win clearly, on others the network; the validation split decides."""
        return ("mlp", "forest") if requested == "auto" else (self.architecture(meta, requested),)

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return [c.name for c in data.contract.used if c.role == "numeric"]

    def features(self, data: "LoadedData") -> np.ndarray:
        from lockgate.families.tables import encode

        return encode(data.frame, data.contract)

    def feature_expectations(self, data: "LoadedData", settings: "ValidationSettings") -> list["gxe.Expectation"]:
        """At least one feature, duplicates warned about, and gaps blocked
        only where settings set a share (sparse columns are warned about by
        the contract checks, and the model imputes them)."""
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, WARNING, check

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
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, check

        return [
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(reference.feature_columns) + [reference.target], exact_match=True,
                **check("same columns as the champion's data", BLOCKING),
            )
        ]

    def drift_expectations(self, reference: DatasetMeta, settings: "ValidationSettings") -> list["gxe.Expectation"]:
        """Means close to the champion's data, and values within its range."""
        from great_expectations import expectations as gxe

        from lockgate.expectations import WARNING, check

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
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: "TrainingSettings", width: float
    ) -> tuple[Any, Any]:
        from lockgate.models import table_encoder

        return table_encoder(meta.table_contract(), x_train, architecture, width)

    def records_input(self, records: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """Raw records, strings and nulls included, checked against the
        contract and encoded as the training rows were."""
        from lockgate.families.tables import RecordError, encode, records_frame

        if not isinstance(records, list) or not records:
            raise RequestError(422, "'records' must be a non-empty list of objects")
        if len(records) > max_rows:
            raise RequestError(413, f"{len(records)} records in one request; the limit is {max_rows}")
        contract = meta.table_contract()
        try:
            return encode(records_frame(records, contract), contract)
        except RecordError as exc:
            raise RequestError(422, str(exc)) from None

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """Rows of raw values in the order of the table's columns."""
        columns = meta.table_contract().source_columns
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
        import pandas as pd

        if not isinstance(x, pd.DataFrame):
            return super().example_request(meta, x)
        rows = x.astype(object).where(x.notna(), None).to_dict("records")
        return "/predict_records", {"records": rows}


class TabularFamily(Classification, TableFamily):
    name = "tabular"
