"""Bad data sets, written to files as a user would hand them over.

Each case returns (path, target, needs_champion, words the report must contain).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

BadCase = Callable[[Path, pd.DataFrame], tuple[Path, str]]


def missing_target(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "missing_target.csv"
    frame.drop(columns="target").to_csv(path, index=False)
    return path


def unknown_labels(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "unknown_labels.csv"
    bad = frame.copy()
    bad["target"] = bad["target"].astype(str)
    bad.loc[bad.index[:20], "target"] = "banana"
    bad.to_csv(path, index=False)
    return path


def mostly_nulls(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "nulls.csv"
    bad = frame.copy()
    bad.loc[bad.index[:107], "magnesium"] = np.nan  # 60%, never missing in the champion's data
    bad.to_csv(path, index=False)
    return path


def fifth_now_empty(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "fifth_empty.csv"
    bad = frame.copy()
    bad.loc[bad.index[::5], "magnesium"] = np.nan  # 36 of 178 rows: 20.2%
    bad.to_csv(path, index=False)
    return path


def fifth_written_na(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "fifth_na.csv"
    bad = frame.copy().astype({"magnesium": object})
    bad.loc[bad.index[::5], "magnesium"] = "n/a"  # the same gaps, as a spreadsheet writes them
    bad.to_csv(path, index=False)
    return path


def text_in_numeric(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "text_in_numeric.csv"
    bad = frame.copy().astype({"ash": object})
    bad.loc[bad.index[3], "ash"] = "n/a (sensor fault)"
    bad.to_csv(path, index=False)
    return path


def header_only(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "header_only.csv"
    path.write_text(",".join(frame.columns) + "\n")
    return path


def handful_of_rows(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "handful.csv"
    frame.groupby("target").head(2).to_csv(path, index=False)
    return path


def single_class(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "single_class.csv"
    frame[frame["target"] == 1].to_csv(path, index=False)
    return path


def not_a_csv(folder: Path, frame: pd.DataFrame) -> Path:
    from PIL import Image

    path = folder / "photo.csv"  # a PNG with a .csv name
    Image.fromarray(np.zeros((8, 8), dtype="uint8")).save(path, format="PNG")
    return path


def ragged_rows(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "ragged.csv"
    text = frame.to_csv(index=False).splitlines()
    text[5] = text[5] + ",1.0,2.0"
    path.write_text("\n".join(text) + "\n")
    return path


def dropped_feature(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "dropped_feature.csv"
    frame.drop(columns="alcohol").to_csv(path, index=False)
    return path


def shifted_distribution(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "shifted.csv"
    bad = frame.copy()
    bad["proline"] = bad["proline"] * 3
    bad.to_csv(path, index=False)
    return path


# name -> (writer, needs a champion to be caught, what the report must say)
CASES: dict[str, tuple[BadCase, bool, str]] = {
    "missing target column": (missing_target, False, "column 'target' is missing"),
    "unknown labels": (unknown_labels, True, "'banana'"),
    "mostly nulls": (mostly_nulls, True, "column 'magnesium' was 0.0% missing in the champion's data and is 60.1% missing now"),
    "a never-missing column now 20% empty": (
        fifth_now_empty, True, "column 'magnesium' was 0.0% missing in the champion's data and is 20.2% missing now: up 20.2 points"
    ),
    "the same gaps written as n/a": (
        fifth_written_na, True, "column 'magnesium' was 0.0% missing in the champion's data and is 20.2% missing now: up 20.2 points"
    ),
    "text in a numeric column": (text_in_numeric, False, "column 'ash' is numeric in the contract but holds text in 1 rows"),
    "header-only file": (header_only, False, "only 0 rows"),
    "a handful of rows": (handful_of_rows, False, "only 6 rows"),
    "a single class": (single_class, False, "1 distinct label"),
    "not a CSV": (not_a_csv, False, "binary file, not a CSV"),
    "ragged rows": (ragged_rows, False, "not a well-formed table"),
    "dropped feature column": (dropped_feature, True, "missing columns ['alcohol']"),
    "shifted distribution": (shifted_distribution, True, "column 'proline' mean 2241 is outside [589.9, 903.9] around the champion's mean 746.9"),
}
