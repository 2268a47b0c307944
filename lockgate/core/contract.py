"""A table's data contract: column roles, what the training rows looked like,
and the encoding of raw rows into the model's input.

A real table mixes numbers, strings, booleans, dates and gaps. On a model's
first run each column gets a *role* (numeric, categorical, datetime, text,
identifier, constant), inferred from its values or set in settings. The
*contract* records the roles and what the training rows looked like
(categories with their frequencies, missing shares, numeric statistics); it
travels with the model (snapshot meta, MLflow run, Bento model) and later data
is validated against it.

Encoding is pure numpy/pandas and the same everywhere (training, evaluation,
the champion's scoring, exports, the service): each model column becomes one
float32 value. Numbers stay numbers, NaN where missing (the model imputes and
adds a missing indicator itself); a category becomes its integer code in the
contract's vocabulary (0 missing, 1 unseen, 2.. known); a text cell becomes
its first words' codes in the column's word vocabulary (0 padding). The string lookup is
done here rather than with a ``StringLookup`` layer so that every export
format (TFLite and ONNX cannot run TensorFlow's string hash tables) takes the
same numeric input and is checked for parity on it; everything after the
lookup (imputation, missing indicators, normalisation, embeddings) is inside
the Keras model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

Role = Literal["numeric", "categorical", "datetime", "text", "identifier", "constant", "dropped"]
# Roles that feed the model; the others are excluded with a reason.
MODEL_ROLES = ("numeric", "categorical", "datetime", "text")
TEXT_VOCABULARY = 2000  # words kept per text column, most frequent first
TEXT_MAX_TOKENS = 64  # tokens kept per text cell (the 95th percentile of the training texts, at most this)
_WORD = re.compile(r"\w+", re.UNICODE)
DATETIME_PARTS = ("year", "month", "day", "dayofweek", "hour")
MISSING_CODE, UNSEEN_CODE, FIRST_CODE = 0, 1, 2


@dataclass
class ColumnSpec:
    """One column of the contract: its role and what training saw in it."""

    name: str
    role: Role
    dtype: str  # the source dtype as read (object, int64, bool, ...)
    missing_share: float
    reason: str = ""  # why the role was chosen, or why the column is excluded
    # categorical: known categories (most frequent first) and their shares
    vocabulary: list[str] = field(default_factory=list)
    frequencies: list[float] = field(default_factory=list)
    strings: bool = False  # categorical values were strings that are not numbers
    # numeric (and each datetime part): statistics of the training rows
    stats: dict[str, float] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)  # datetime: the numeric parts used
    tokens: int = 0  # text: tokens kept per cell (the vocabulary holds its words)

    @property
    def used(self) -> bool:
        """Whether the model reads it (a text column of a contract saved before
        tables read text has no tokens, and was not read)."""
        return self.role in MODEL_ROLES and not (self.role == "text" and self.tokens == 0)

    def model_columns(self) -> list[str]:
        """The model's input columns this column becomes."""
        if self.role == "datetime":
            return [f"{self.name}.{part}" for part in self.parts]
        if self.role == "text":
            return [f"{self.name}.token{i}" for i in range(self.tokens)]
        return [self.name] if self.used else []

    @property
    def cardinality(self) -> int:
        """Codes a categorical column can take: missing, unseen and each category."""
        return FIRST_CODE + len(self.vocabulary)


@dataclass
class TableContract:
    """The roles and training-time profile of every column of a table."""

    target: str
    columns: list[ColumnSpec]
    rows: int = 0  # rows profiled; 0 in contracts saved before it was kept

    @property
    def used(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.used]

    @property
    def excluded(self) -> list[ColumnSpec]:
        return [c for c in self.columns if not c.used]

    @property
    def source_columns(self) -> list[str]:
        """Columns of the source table the model reads (what a request sends)."""
        return [c.name for c in self.used]

    def model_columns(self) -> list[str]:
        return [name for c in self.used for name in c.model_columns()]

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def layout(self) -> dict[str, Any]:
        """What the model's input layer needs: which inputs are numbers, which
        are category codes, and how many codes each category column has; a
        text column's token codes are one group (positions and vocabulary size)."""
        numeric, categorical, cardinalities, texts, position = [], [], [], [], 0
        for spec in self.used:
            if spec.role == "text":
                texts.append({"positions": list(range(position, position + spec.tokens)), "cardinality": spec.cardinality})
                position += spec.tokens
                continue
            for _ in spec.model_columns():
                if spec.role == "categorical":
                    categorical.append(position)
                    cardinalities.append(spec.cardinality)
                else:
                    numeric.append(position)
                position += 1
        return {"numeric": numeric, "categorical": categorical, "cardinalities": cardinalities, "texts": texts,
                "width": position}

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "columns": [asdict(c) for c in self.columns], "rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableContract":
        return cls(target=data["target"], columns=[ColumnSpec(**c) for c in data["columns"]], rows=int(data.get("rows", 0)))

    def signature(self) -> str:
        """Identifies a model's table by its columns and target, whatever its
        file is called: next month's export has the same signature."""
        return table_signature([c.name for c in self.columns], self.target)

    def describe(self) -> list[str]:
        """One line per column, for reports."""
        lines = []
        for c in self.columns:
            detail = f"{c.missing_share:.1%} missing"
            if c.role == "categorical":
                top = ", ".join(f"{v!r} {f:.0%}" for v, f in zip(c.vocabulary[:4], c.frequencies[:4]))
                detail += f"; {len(c.vocabulary)} categories ({top}{', ...' if len(c.vocabulary) > 4 else ''})"
            elif c.role == "numeric" and c.stats:
                detail += f"; {c.stats['min']:.4g} to {c.stats['max']:.4g}, mean {c.stats['mean']:.4g}"
            elif c.role == "datetime":
                detail += f"; parts {', '.join(c.parts)}"
            elif c.role == "text":
                detail += f"; {len(c.vocabulary)} words, {c.tokens} tokens a cell"
            note = f" — {c.reason}" if c.reason and not c.used else ""
            lines.append(f"{c.name}: {c.role} ({c.dtype}; {detail}){note}")
        return lines


def table_signature(columns: Iterable[str], target: str) -> str:
    payload = json.dumps({"columns": sorted(str(c) for c in columns if c != target), "target": target})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ----------------------------------------------------------------- inference


def infer_contract(
    frame: pd.DataFrame,
    target: str,
    overrides: dict[str, str] | None = None,
    max_integer_categories: int = 5,
    max_categories: int = 1000,
    reference: TableContract | None = None,
) -> TableContract:
    """The contract of a table: roles from `reference` (the champion's
    contract: a model's roles are decided on its first run), else from
    `overrides`, else inferred; statistics always from `frame`."""
    overrides = overrides or {}
    specs = []
    for name in frame.columns:
        if name == target:
            continue
        values = frame[name]
        asked = overrides.get(name)
        if asked == "drop":
            specs.append(ColumnSpec(name, "dropped", str(values.dtype), missing_share(values), reason="dropped in settings"))
            continue
        if reference is not None and name in {c.name for c in reference.columns}:
            role, reason = reference.column(name).role, "as in the champion's contract"
        elif asked:
            role, reason = asked, "set in settings"
        else:
            role, reason = infer_role(values, max_integer_categories)
        specs.append(_profile(name, values, role, reason, max_categories))
    return TableContract(target=target, columns=specs, rows=len(frame))


def infer_role(values: pd.Series, max_integer_categories: int = 5) -> tuple[Role, str]:
    """A column's role from its values, with the reason in words."""
    present = values.dropna()
    if isinstance(values.dtype, pd.StringDtype) or values.dtype == object:
        present = present[present.astype(str).str.strip() != ""]
    rows = len(present)
    distinct = present.astype(str).nunique() if rows else 0
    if distinct <= 1:
        if rows and rows < len(values):  # one value or a gap: whether it is there is what it says
            return "categorical", "a single value, present in some rows and missing in others"
        return "constant", "a single value in every row" if rows else "no values at all"
    if pd.api.types.is_bool_dtype(values):
        return "categorical", "booleans"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime", "dates"
    if pd.api.types.is_numeric_dtype(values):
        return _numeric_role(present.astype("float64"), distinct, max_integer_categories)
    as_numbers = pd.to_numeric(present, errors="coerce")
    if as_numbers.notna().all():
        return _numeric_role(as_numbers.astype("float64"), distinct, max_integer_categories, "numbers written as text")
    parsed = as_numbers.dropna()
    if as_numbers.notna().mean() >= 0.95 and parsed.nunique() > max_integer_categories:
        # Mostly numbers: the few text values are errors for validation to name.
        return "numeric", "numbers, with a few text values"
    strings = present.astype(str)
    if _looks_like_dates(strings):
        return "datetime", "dates written as text"
    words = strings.str.split().str.len().mean()
    text = (words >= 5 or (words >= 3 and distinct != rows)) and distinct / rows > 0.5
    if text:  # sentences; a short unique string (a name) is an identifier
        return "text", "free text: its words, embedded and averaged beside the other columns"
    if distinct == rows and rows >= 20:
        return "identifier", "a different value in every row (a name or an ID), excluded"
    return "categorical", "strings"


def _numeric_role(numbers: pd.Series, distinct: int, max_integer_categories: int, source: str = "numbers") -> tuple[Role, str]:
    integral = bool((numbers % 1 == 0).all())
    if integral and distinct <= max_integer_categories:
        return "categorical", f"integers with {distinct} values (at most {max_integer_categories} count as categories)"
    rows = len(numbers)
    if integral and distinct == rows and rows >= 20 and numbers.max() - numbers.min() < 2 * rows:
        return "identifier", "consecutive integers, one per row (a row number or an ID), excluded"
    return "numeric", source


def _looks_like_dates(strings: pd.Series) -> bool:
    sample = strings.head(200)
    if not sample.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{4}-\d{2}", regex=True).mean() > 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return parsed.notna().mean() > 0.95


def missing_share(values: pd.Series) -> float:
    if not len(values):
        return 0.0
    missing = values.isna()
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        missing |= values.astype(str).str.strip().eq("") & values.notna()
    return float(missing.mean())


def _profile(name: str, values: pd.Series, role: Role, reason: str, max_categories: int) -> ColumnSpec:
    spec = ColumnSpec(name, role, str(values.dtype), missing_share(values), reason=reason)
    if role == "categorical":
        labels = category_strings(values).dropna()
        counts = labels.value_counts()
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")[:max_categories]
        spec.vocabulary = [str(v) for v in counts.index]
        spec.frequencies = [round(float(c) / max(len(values), 1), 6) for c in counts.to_numpy()]
        spec.strings = bool(pd.to_numeric(labels, errors="coerce").isna().any()) if len(labels) else False
    elif role == "numeric":
        spec.stats = _stats(numeric_values(values))
    elif role == "datetime":
        parts = datetime_parts(values)
        spec.parts = [p for p in DATETIME_PARTS if parts[p].nunique(dropna=True) > 1]
        spec.stats = {}
    elif role == "text":
        words = tokenise(values)
        counts: dict[str, int] = {}
        for cell in words:
            for word in set(cell):  # document frequency: a word repeated in one cell counts once
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TEXT_VOCABULARY]
        spec.vocabulary = [w for w, _ in ranked]
        spec.frequencies = [round(n / max(len(values), 1), 6) for _, n in ranked]
        lengths = [len(cell) for cell in words if cell]
        spec.tokens = int(min(TEXT_MAX_TOKENS, max(1, np.percentile(lengths, 95) if lengths else 1)))
    return spec


def tokenise(values: pd.Series) -> list[list[str]]:
    """Each cell's words, in lower case (a gap has none): the same pure
    function in training, evaluation, the exports and the service."""
    return [_WORD.findall(v.lower()) if isinstance(v, str) else [] for v in values.astype(object)]


def token_codes(values: pd.Series, vocabulary: list[str], tokens: int) -> np.ndarray:
    """Each cell's first `tokens` words as codes in the vocabulary (0 padding,
    1 a word it does not hold, 2.. its words), one row per cell."""
    index = {word: i + FIRST_CODE for i, word in enumerate(vocabulary)}
    codes = np.zeros((len(values), tokens), dtype="float32")
    for row, words in enumerate(tokenise(values)):
        ids = [index.get(word, UNSEEN_CODE) for word in words[:tokens]]
        codes[row, : len(ids)] = ids
    return codes


def _stats(numbers: pd.Series) -> dict[str, float]:
    finite = numbers[np.isfinite(numbers)]
    if finite.empty:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "median": 0.0}
    return {
        "mean": float(finite.mean()), "std": float(finite.std(ddof=0)),
        "min": float(finite.min()), "max": float(finite.max()), "median": float(finite.median()),
    }


# ----------------------------------------------------------------- encoding


def category_strings(values: pd.Series) -> pd.Series:
    """Categories as text, missing as NaN: True/1/1.0 become 'True'/'1'/'1', so
    a CSV, a parquet file and a JSON request spell a category the same way."""
    out = values.astype(object).map(_category_text)
    return out


def _category_text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text if text else np.nan


def numeric_values(values: pd.Series) -> pd.Series:
    """Numbers as float64; blanks and missing become NaN (text is refused by
    validation before it gets here, so what does not parse is a gap)."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def datetime_parts(values: pd.Series) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pd.api.types.is_datetime64_any_dtype(values):
            stamps = values
        else:
            stamps = pd.to_datetime(values, errors="coerce", format="mixed")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return pd.DataFrame({part: getattr(stamps.dt, part).astype("float64") for part in DATETIME_PARTS})


def encode(frame: pd.DataFrame, contract: TableContract) -> np.ndarray:
    """Raw rows -> the model's float32 input, one value per model column."""
    blocks = []
    for spec in contract.used:
        values = frame[spec.name] if spec.name in frame.columns else pd.Series([np.nan] * len(frame), index=frame.index)
        if spec.role == "numeric":
            blocks.append(numeric_values(values).to_numpy()[:, None])
        elif spec.role == "datetime":
            blocks.append(datetime_parts(values)[spec.parts].to_numpy())
        elif spec.role == "text":
            blocks.append(token_codes(values, spec.vocabulary, spec.tokens))
        else:
            blocks.append(category_codes(values, spec.vocabulary)[:, None])
    if not blocks:
        return np.zeros((len(frame), 0), dtype="float32")
    with np.errstate(over="ignore"):
        return np.concatenate(blocks, axis=1).astype("float32")


def category_codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    labels = category_strings(values)
    index = _vocabulary_index(tuple(vocabulary)).get_indexer(labels).astype("float64")  # -1: unseen or missing
    codes = np.where(index >= 0, index + FIRST_CODE, UNSEEN_CODE)
    return np.where(labels.isna().to_numpy(), MISSING_CODE, codes)


@functools.lru_cache(maxsize=256)
def _vocabulary_index(vocabulary: tuple[str, ...]) -> pd.Index:
    """A column's vocabulary with its hash table built once: a served request
    of a few rows otherwise spent most of its time rebuilding it (a
    `pd.Categorical` per column per request)."""
    index = pd.Index(vocabulary, dtype=object)
    index.get_indexer([])  # builds the lookup table now, not on the first request
    return index


def typed_frame(frame: pd.DataFrame, contract: TableContract) -> pd.DataFrame:
    """The columns the model reads, each in its role's type (categories as text,
    numbers as float), so the snapshot can be stored and re-encoded later
    with another model's contract (the champion's)."""
    out = {}
    for spec in contract.used:
        values = frame[spec.name]
        if spec.role == "numeric":
            out[spec.name] = numeric_values(values)
        elif spec.role == "categorical":
            out[spec.name] = category_strings(values).astype(object)
        else:
            out[spec.name] = values.astype(str).where(values.notna(), None).astype(object)
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)


# ---------------------------------------------------------------- requests
