"""What the gates cost: the whole Lockgate flow against a bare Keras script
that trains the same model on the same data for the same epochs.

    .venv/bin/python bench/pipeline_overhead.py --epochs 15
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def bare_keras(epochs: int, seed: int) -> tuple[float, float]:
    """Train the digits CNN with nothing around it; (seconds, holdout accuracy)."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from lockgate.data import split_indices
    from lockgate.models import build_model
    from lockgate.records import DatasetMeta
    from lockgate.settings import TrainingSettings

    started = time.perf_counter()
    digits = load_digits()
    x = digits.images[..., None].astype("float32")
    y = digits.target.astype("int64")
    keras.utils.set_random_seed(seed)
    split = split_indices(y, 0.2, 0.1, seed)
    meta = DatasetMeta(name="digits", family="image", target="label", feature_columns=[],
                       class_names=[str(i) for i in range(10)], input_shape=[8, 8, 1], pixel_scale=16.0)
    model = build_model(meta, x[split["train"]], y[split["train"]], TrainingSettings(learning_rate=2e-3))
    model.fit(x[split["train"]], y[split["train"]], validation_data=(x[split["validation"]], y[split["validation"]]),
              epochs=epochs, batch_size=32, verbose=0)
    accuracy = float(np.mean(model(x[split["holdout"]], training=False).numpy().argmax(axis=1) == y[split["holdout"]]))
    return time.perf_counter() - started, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    os.environ.update(LOCKGATE_HOME=str(home), LOCKGATE_TRAINING__EPOCHS=str(args.epochs),
                      LOCKGATE_TRAINING__EARLY_STOPPING_PATIENCE=str(10_000))
    from lockgate.settings import apply_environment, get_settings

    settings = get_settings()
    apply_environment(settings)

    bare_seconds, bare_accuracy = bare_keras(args.epochs, settings.training.seed)
    from flows.training import training_pipeline

    rows = []
    for label in ("first run (starts Prefect's ephemeral server, builds the Bento)", "second run (judged against the first)"):
        started = time.perf_counter()
        result = training_pipeline(data="digits", settings=settings)
        seconds = time.perf_counter() - started
        rows.append((label, seconds, result))
    lines = [
        f"Digits CNN, {args.epochs} epochs (early stopping off), same seed and split, on the CPU.",
        "",
        "| what | wall seconds | of which training | holdout accuracy | ratio to bare Keras |",
        "|---|---:|---:|---:|---:|",
        f"| bare Keras script (load, fit, score) | {bare_seconds:.1f} | - | {bare_accuracy:.4f} | 1.00 |",
    ]
    for label, seconds, result in rows:
        train_seconds = _train_seconds(result.run_id)
        lines.append(f"| Lockgate flow, {label} | {seconds:.1f} | {train_seconds:.1f} | "
                     f"{result.evaluation.metrics['accuracy']:.4f} | {seconds / bare_seconds:.2f} |")
    lines += ["", "The flow's extra time is validation with Data Docs, MLflow logging and registration, "
              "the Bento build, and serving the Bento to check it answers like the in-process model."]
    body = "\n".join(lines)
    print(body)
    from report import write_section

    write_section("pipeline_overhead", f".venv/bin/python bench/pipeline_overhead.py --epochs {args.epochs}", body)


def _train_seconds(run_id: str) -> float:
    import mlflow

    return float(mlflow.MlflowClient().get_run(run_id).data.metrics.get("train_seconds", float("nan")))


if __name__ == "__main__":
    main()
