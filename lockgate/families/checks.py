"""The words a family's expectations are written in: a check's name in
reports, whether it blocks, and the column types that count as numbers."""

from __future__ import annotations

from typing import Any

NUMERIC_TYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "Int8", "Int16", "Int32", "Int64",
    "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64", "bool", "boolean",
]  # fmt: skip

# Great Expectations' FailureSeverity values: an expectation takes them as
# strings, so building a suite's parts never imports the library here.
BLOCKING = "critical"
WARNING = "warning"


def check(name: str, severity: str) -> dict[str, Any]:
    """An expectation's name in reports, and whether it blocks."""
    return {"meta": {"check": name}, "severity": severity}
