"""Regression on tables: one value per row, in the target's units; the table
side is shared with table classification."""

from __future__ import annotations

from lockgate.families.tabular import TableFamily
from lockgate.families.targets import Regression


class RegressionFamily(TableFamily):
    name = "regression"
    target = Regression()
