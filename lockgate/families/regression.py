"""Regression on tables: one value per row, in the target's units; the table
side is shared with table classification."""

from __future__ import annotations

from lockgate.families.base import Regression
from lockgate.families.tabular import TableFamily


class RegressionFamily(Regression, TableFamily):
    name = "regression"
