"""Data tests: good data passes, and each kind of bad data is stopped with a
message that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lockgate.core.records import DatasetMeta
from tasks.validate import validate_task
from tests.data.bad_inputs import CASES


@pytest.fixture(scope="module")
def wine_reference(wine_csv):
    """The profile a champion trained on the wine data would carry."""
    summary = validate_task.fn(str(wine_csv), "target")
    assert summary.success, summary.checks
    return DatasetMeta.model_validate_json((Path(summary.snapshot) / "meta.json").read_text())


def test_digits_pass_with_snapshot_and_hash():
    first = validate_task.fn("digits")
    again = validate_task.fn("digits")
    assert first.success and first.family == "image" and first.rows == 1797
    assert Path(first.snapshot, "data.npz").is_file()
    assert first.data_hash == again.data_hash
    assert again.seen_before, "the same data must be recognised by its hash"
    assert first.data_docs and Path(first.data_docs).is_file()


def test_user_csv_passes(wine_csv, breast_cancer_csv):
    wine = validate_task.fn(str(wine_csv), "target")
    cancer = validate_task.fn(str(breast_cancer_csv), "target")
    assert wine.success and wine.family == "tabular" and wine.rows == 178
    assert cancer.success and cancer.rows == 569
    meta = json.loads((Path(cancer.snapshot) / "meta.json").read_text())
    assert meta["class_names"] == ["benign", "malignant"]
    assert len(meta["feature_columns"]) == 30


def test_same_data_passes_against_its_own_profile(wine_csv, wine_reference):
    summary = validate_task.fn(str(wine_csv), "target", wine_reference)
    assert summary.success, [c for c in summary.checks if not c.success]
    names = {c.name for c in summary.checks}
    assert "same columns as the champion's data" in names
    assert "feature mean close to the champion's data" in names


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_is_blocked_with_a_reason(case, data_dir, wine_frame, wine_reference):
    writer, needs_champion, expected = CASES[case]
    folder = data_dir / "bad"
    folder.mkdir(exist_ok=True)
    path = writer(folder, wine_frame)
    summary = validate_task.fn(str(path), "target", wine_reference if needs_champion else None)
    assert not summary.success
    assert summary.snapshot is None, "rejected data must not be snapshotted for training"
    messages = " | ".join(c.message for c in summary.blocking_failures)
    assert expected in messages, messages


def test_warnings_do_not_block(data_dir, wine_frame):
    path = data_dir / "imbalanced.csv"
    frame = wine_frame.copy()
    rare = frame[frame["target"] == 2].head(2)  # 2 of 132 rows: 1.5%
    frame = frame[frame["target"] != 2]
    pd.concat([frame, rare]).to_csv(path, index=False)
    summary = validate_task.fn(str(path), "target")
    assert summary.success
    assert any(c.name == "class balance" for c in summary.warnings)


def test_a_few_gaps_and_string_categories_pass(data_dir, wine_frame):
    path = data_dir / "gaps.csv"
    frame = wine_frame.copy()
    frame.loc[frame.index[:7], "magnesium"] = np.nan
    frame["vineyard"] = np.where(frame["alcohol"] > 13, "north slope", "river bank")
    frame.to_csv(path, index=False)
    summary = validate_task.fn(str(path), "target")
    assert summary.success, [c.message for c in summary.blocking_failures]
    assert any(line.startswith("vineyard: categorical") for line in summary.contract)
    assert any(line.startswith("magnesium: numeric") and "3.9% missing" in line for line in summary.contract)


def _with_vineyard(frame: pd.DataFrame, hill_share: float) -> pd.DataFrame:
    """Wine with a category column whose 'hill' share is `hill_share`."""
    out = frame.copy()
    rows = len(out)
    hill = int(round(hill_share * rows))
    out["vineyard"] = ["hill"] * hill + ["river bank" if i % 2 else "north slope" for i in range(rows - hill)]
    return out


def test_category_shares_that_moved_block_a_retrain_naming_both_figures(data_dir, wine_frame):
    before = data_dir / "vineyards.csv"
    _with_vineyard(wine_frame, 0.10).to_csv(before, index=False)
    first = validate_task.fn(str(before), "target")
    assert first.success, first.blocking_failures
    reference = DatasetMeta.model_validate_json((Path(first.snapshot) / "meta.json").read_text())
    after = data_dir / "vineyards_later.csv"
    _with_vineyard(wine_frame, 0.60).to_csv(after, index=False)
    summary = validate_task.fn(str(after), "target", reference)
    assert not summary.success and summary.snapshot is None
    messages = " | ".join(c.message for c in summary.blocking_failures)
    assert "column 'vineyard': category 'hill' was 10.1% of the champion's rows and is 60.1% now" in messages, messages
    # A retrain on a fresh sample of the same mix passes.
    same = data_dir / "vineyards_again.csv"
    _with_vineyard(wine_frame, 0.11).to_csv(same, index=False)
    assert validate_task.fn(str(same), "target", reference).success


def test_a_small_rise_in_a_missing_share_is_noise_not_a_change(data_dir, wine_frame):
    """12.1% -> 12.4% missing is what a new sample does; it must not block."""
    rng = np.random.default_rng(0)
    big = pd.concat([wine_frame] * 10, ignore_index=True)
    big["magnesium"] = big["magnesium"] + rng.normal(0, 1, len(big))
    before, after = big.copy(), big.copy()
    before.loc[rng.choice(len(big), int(0.121 * len(big)), replace=False), "magnesium"] = np.nan
    after.loc[rng.choice(len(big), int(0.124 * len(big)), replace=False), "magnesium"] = np.nan
    before.to_csv(data_dir / "gaps_before.csv", index=False)
    after.to_csv(data_dir / "gaps_after.csv", index=False)
    first = validate_task.fn(str(data_dir / "gaps_before.csv"), "target")
    reference = DatasetMeta.model_validate_json((Path(first.snapshot) / "meta.json").read_text())
    summary = validate_task.fn(str(data_dir / "gaps_after.csv"), "target", reference)
    assert summary.success, summary.blocking_failures


def test_a_first_run_with_mostly_empty_columns_passes_with_warnings(data_dir, wine_frame):
    path = data_dir / "sparse.csv"
    frame = wine_frame.copy().astype({"ash": object})
    frame.loc[frame.index[: int(0.95 * len(frame))], "magnesium"] = np.nan  # 95% empty
    frame["misc_feature"] = np.where(np.arange(len(frame)) % 3 == 0, "shed", None)  # 66% empty
    frame.loc[frame.index[::4], "ash"] = "?"  # a missing token
    frame.to_csv(path, index=False)
    summary = validate_task.fn(str(path), "target")
    assert summary.success, [c.message for c in summary.blocking_failures]
    warnings = {c.name: c.message for c in summary.warnings}
    assert "'magnesium' 95% empty" in warnings["sparse columns"] and "'misc_feature' 66% empty" in warnings["sparse columns"]
    assert "'ash': 45 '?'" in warnings["values that mean missing"]
    assert any(line.startswith("ash: numeric") for line in summary.contract), summary.contract


def test_rows_without_a_label_are_left_out_and_counted(data_dir, wine_frame):
    path = data_dir / "unlabelled.csv"
    frame = wine_frame.copy().astype({"target": object})
    frame.loc[frame.index[::10], "target"] = None  # 18 of 178 rows
    frame.to_csv(path, index=False)
    summary = validate_task.fn(str(path), "target")
    assert summary.success and summary.rows == 160
    rows = next(c for c in summary.warnings if c.name == "rows with a label")
    assert rows.message.startswith("18 of 178 rows (10.1%) have no 'target'")
    mostly = data_dir / "mostly_unlabelled.csv"
    frame.loc[frame.index[:120], "target"] = None
    frame.to_csv(mostly, index=False)
    refused = validate_task.fn(str(mostly), "target")
    assert not refused.success
    assert any("more than the 50% allowed" in c.message for c in refused.blocking_failures)


def test_a_numeric_target_with_gaps_stays_a_regression(data_dir):
    """Cancelled flights have no delay: the rows are left out, and the many
    delay values still make it a regression, not hundreds of classes."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"distance": rng.uniform(100, 3000, 600), "carrier": rng.choice(["AA", "UA", "DL"], 600)})
    frame["arr_delay"] = (frame["distance"] / 100 + rng.normal(0, 5, 600)).round()
    frame.loc[frame.index[::30], "arr_delay"] = np.nan
    path = data_dir / "flights.csv"
    frame.to_csv(path, index=False)
    summary = validate_task.fn(str(path), "arr_delay")
    assert summary.success and summary.family == "regression", summary.blocking_failures
    assert summary.rows == 580


def test_images_out_of_range_and_nan_are_blocked(data_dir):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(120, 12, 12)).astype("float32")
    y = np.repeat(["a", "b", "c"], 40)
    good = data_dir / "images.npz"
    np.savez(good, x=x, y=y)
    assert validate_task.fn(str(good)).success
    x_bad = x.copy()
    x_bad[3, 0, 0] = 400.0
    x_bad[4, 1, 1] = np.nan
    bad = data_dir / "images_bad.npz"
    np.savez(bad, x=x_bad, y=y)
    summary = validate_task.fn(str(bad))
    messages = " | ".join(c.message for c in summary.blocking_failures)
    assert not summary.success
    assert "pixel_max" in messages and "null" in messages, messages


def test_image_folder_with_a_broken_file(data_dir):
    from PIL import Image

    root = data_dir / "shapes"
    rng = np.random.default_rng(1)
    for label in ("circle", "square"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 255, (10, 10), dtype="uint8")).save(root / label / f"{i}.png")
    assert validate_task.fn(str(root)).success
    (root / "circle" / "broken.png").write_bytes(b"not really a png")
    summary = validate_task.fn(str(root))
    assert not summary.success
    assert any("broken.png" in c.message for c in summary.blocking_failures)
