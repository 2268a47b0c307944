"""The model zoo: every family and architecture trained here on data that
needs no download, scored on its holdout, and exported to each format with
the parity check the pipeline applies. Writes docs/model_zoo.md.

    .venv/bin/python bench/model_zoo.py            # every entry
    .venv/bin/python bench/model_zoo.py --only text-lstm regression-mlp   # print only

The entries named in DISTILLED are also distilled into a student a quarter as
wide, trained on the teacher's softened predictions, and shown beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "model_zoo.md"
HEADER = (
    "# Model zoo\n\nEach family Lockgate trains, measured on data that ships with scikit-learn or is "
    "generated (no downloads), with every export format checked against the Keras model on the holdout. "
    "Rerun the command in a section to refresh it.\n"
)


@dataclass
class Entry:
    name: str
    data: str  # how the data is made
    architecture: str
    epochs: int
    augment: bool = False


ENTRIES = [
    Entry("image-small-cnn", "digits (8x8x1, scikit-learn)", "small_cnn", 20),
    Entry("image-mnist", "digits upscaled to 28x28x1 (MNIST-shaped)", "mnist", 15),
    Entry("image-cifar", "generated shapes 32x32x3 (CIFAR-shaped), augmented", "cifar", 10, augment=True),
    Entry("text-lstm", "generated movie reviews (IMDB style)", "lstm", 12),
    Entry("text-transformer", "generated movie reviews (IMDB style)", "transformer", 12),
    Entry("tabular-mlp", "breast cancer (scikit-learn)", "mlp", 40),
    Entry("regression-mlp", "diabetes (scikit-learn)", "mlp", 150),
    Entry("regression-linear", "diabetes (scikit-learn)", "linear", 150),
]


def make_source(entry: Entry, folder: Path) -> tuple[str, str | None]:
    """Write the entry's data set to `folder`; return (source, target)."""
    import numpy as np

    from lockgate.data.samples import make_colour_images, make_reviews

    if entry.name == "image-small-cnn":
        return "digits", None
    if entry.name == "image-mnist":
        from PIL import Image
        from sklearn.datasets import load_digits

        digits = load_digits()
        big = np.stack([np.asarray(Image.fromarray((img * 16).astype("uint8")).resize((28, 28), Image.BILINEAR))
                        for img in digits.images])
        np.savez(folder / "digits28.npz", x=big[..., None].astype("float32"), y=digits.target)
        return str(folder / "digits28.npz"), None
    if entry.name == "image-cifar":
        x, y = make_colour_images(rows=600)
        np.savez(folder / "shapes.npz", x=x, y=y)
        return str(folder / "shapes.npz"), None
    if entry.name.startswith("text"):
        make_reviews(rows=600).to_csv(folder / "reviews.csv", index=False)
        return str(folder / "reviews.csv"), "sentiment"
    if entry.name.startswith("tabular"):
        from sklearn.datasets import load_breast_cancer

        load_breast_cancer(as_frame=True).frame.to_csv(folder / "cancer.csv", index=False)
        return str(folder / "cancer.csv"), "target"
    from sklearn.datasets import load_diabetes

    load_diabetes(as_frame=True).frame.to_csv(folder / "diabetes.csv", index=False)
    return str(folder / "diabetes.csv"), "target"


def measure(entry: Entry, folder: Path) -> dict:
    from lockgate.core.settings import get_settings
    from lockgate.data.datasets import load_source, read_snapshot, split_for, write_snapshot
    from lockgate.export import export_model
    from lockgate.families import family_for
    from lockgate.training.evaluation import measure_latency
    from lockgate.training.fit import fit

    settings = get_settings().model_copy(deep=True)
    settings.training = settings.training.model_copy(
        update={"epochs": entry.epochs, "architecture": entry.architecture, "augment": entry.augment}
    )
    source, target = make_source(entry, folder)
    data = load_source(source, target, settings.training)
    snapshot = read_snapshot(write_snapshot(data, folder / "snapshots")[0])
    outcome = fit(snapshot, settings.training)
    split = split_for(snapshot.y, settings.training)
    x, y = snapshot.x[split["holdout"]], snapshot.y[split["holdout"]]
    from lockgate.models.architectures import predict_outputs

    metrics = family_for(snapshot.meta.family).target.score(y, predict_outputs(outcome.model, x), snapshot.class_names)["metrics"]
    keras_path = folder / "model.keras"
    outcome.model.save(keras_path)
    started = time.perf_counter()
    family = family_for(snapshot.meta.family)
    exports = export_model(outcome.model, snapshot.meta.family, folder / "exports", x, y,
                           snapshot.x[split["train"]][: settings.export.representative_examples], settings.export,
                           task=family.task, int8_quantisation=family.int8_quantisation)
    student = distil(outcome.model, snapshot, settings, x, y) if entry.name in DISTILLED else None
    return {
        "entry": entry, "family": snapshot.meta.family, "rows": len(snapshot.y), "metrics": metrics, "student": student,
        "parameters": outcome.model.count_params(), "train_seconds": outcome.seconds, "epochs_run": outcome.epochs_run,
        "keras_size": keras_path.stat().st_size, "keras_latency": measure_latency(outcome.model, x)["latency_ms_p50"],
        "exports": exports, "export_seconds": time.perf_counter() - started, "holdout": len(y),
    }


DISTILLED = ("image-small-cnn", "image-cifar", "text-lstm", "regression-mlp")


def distil(teacher, snapshot, settings, x, y) -> dict:
    """A student a quarter as wide, trained on the teacher's softened predictions."""
    from lockgate.families import family_for
    from lockgate.models.architectures import predict_outputs
    from lockgate.training.evaluation import measure_latency, saved_size_bytes
    from lockgate.training.fit import fit

    teacher_outputs = predict_outputs(teacher, snapshot.x)
    outcome = fit(snapshot, settings.training, teacher_outputs=teacher_outputs, distillation=settings.distillation)
    metrics = family_for(snapshot.meta.family).target.score(y, predict_outputs(outcome.model, x), snapshot.class_names)["metrics"]
    return {"metrics": metrics, "parameters": outcome.model.count_params(), "size": saved_size_bytes(outcome.model),
            "latency": measure_latency(outcome.model, x)["latency_ms_p50"], "train_seconds": outcome.seconds}


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _headline(row: dict) -> str:
    m = row["metrics"]
    if row["family"] == "regression":
        return f"RMSE {m['rmse']:.2f} (mean predictor {m['mean_predictor_rmse']:.2f}), R² {m['r2']:.3f}"
    return f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}"


def render(rows: list[dict]) -> str:
    lines = [
        "| model | data | holdout | holdout metric | parameters | training here | epochs |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        e = row["entry"]
        lines.append(f"| {e.name} | {e.data} | {row['holdout']} | {_headline(row)} | {row['parameters']:,} | "
                     f"{row['train_seconds']:.1f} s | {row['epochs_run']} |")
    lines += ["", "Exports, each checked on the same holdout against the Keras model (agreement: share of "
              "predicted labels that match; for regression, of values within 1% of the target's standard "
              "deviation). Only `passed` exports are shipped.", ""]
    lines += ["| model | format | status | agreement | max abs diff | size | latency p50 (1 example) | reason |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        e = row["entry"]
        lines.append(f"| {e.name} | Keras (.keras) | reference | - | - | {_size(row['keras_size'])} | "
                     f"{row['keras_latency']:.2f} ms | |")
        for r in row["exports"]:
            agreement = f"{r.agreement:.2%}" if r.agreement is not None else "-"
            diff = f"{r.max_abs_difference:.2e}" if r.max_abs_difference is not None else "-"
            latency = f"{r.latency_ms_p50:.2f} ms" if r.latency_ms_p50 is not None else "-"
            reason = r.reason.replace("|", "\\|").replace("\n", " ")[:220]
            lines.append(f"| {e.name} | {r.format} | {r.status} | {agreement} | {diff} | {_size(r.size_bytes)} | "
                         f"{latency} | {reason} |")
    distilled = [row for row in rows if row.get("student")]
    if distilled:
        lines += ["", "Distillation: a student with every layer a quarter as wide (`distillation.width` 0.25), "
                  "trained on the teacher's predictions softened at temperature 2 and blended 0.7 : 0.3 with "
                  "the true labels, on the same split.", "",
                  "| teacher | holdout metric teacher / student | parameters teacher / student | "
                  "size teacher / student | latency p50 teacher / student | student training |",
                  "|---|---|---:|---:|---:|---:|"]
        for row in distilled:
            st = row["student"]
            lines.append(
                f"| {row['entry'].name} | {_headline(row)} / {_headline(row | {'metrics': st['metrics']})} | "
                f"{row['parameters']:,} / {st['parameters']:,} | {_size(row['keras_size'])} / {_size(st['size'])} | "
                f"{row['keras_latency']:.2f} / {st['latency']:.2f} ms | {st['train_seconds']:.1f} s |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="entry names to run and print, without writing the doc (default: all)")
    args = parser.parse_args()
    entries = [e for e in ENTRIES if not args.only or e.name in args.only]
    with tempfile.TemporaryDirectory(prefix="lockgate-zoo-") as tmp:
        os.environ["LOCKGATE_HOME"] = str(Path(tmp) / "home")
        from lockgate.core.settings import apply_environment, get_settings

        apply_environment(get_settings())
        rows = []
        for entry in entries:
            folder = Path(tmp) / entry.name
            folder.mkdir()
            print(f"training {entry.name} ...", file=sys.stderr, flush=True)
            rows.append(measure(entry, folder))
    body = render(rows)
    print(body)
    if args.only:
        return  # a partial table is printed, not written over the whole zoo's
    from report import write_section

    write_section("model_zoo", ".venv/bin/python bench/model_zoo.py", body, DOC, HEADER)


if __name__ == "__main__":
    main()
