"""What the gates cost: `lockgate run` against a bare Keras script that
trains the same model on the same data for the same epochs: a cold first run,
a warm run that trains (a setting changed), and an unchanged re-run.

    .venv/bin/python bench/pipeline_overhead.py --epochs 15

With --explain-cost, what the explain and document steps (attributions,
permutation importance, pictures, the model card) add to a digits and a wine
run: the same trained run with explanations off and on, alternated.

    .venv/bin/python bench/pipeline_overhead.py --explain-cost --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bare_keras(epochs: int, seed: int) -> tuple[float, float]:
    """Train the digits CNN with nothing around it; (seconds, holdout accuracy)."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from lockgate.core.records import DatasetMeta
    from lockgate.core.settings import TrainingSettings
    from lockgate.data.datasets import split_indices
    from lockgate.families import family_for
    from lockgate.models.architectures import build_model

    started = time.perf_counter()
    digits = load_digits()
    x = digits.images[..., None].astype("float32")
    y = digits.target.astype("int64")
    keras.utils.set_random_seed(seed)
    split = split_indices(y, 0.2, 0.1, seed)
    meta = DatasetMeta(name="digits", family="image", target="label", feature_columns=[],
                       class_names=[str(i) for i in range(10)], input_shape=[8, 8, 1], pixel_scale=16.0)
    model = build_model(family_for("image"), meta, x[split["train"]], y[split["train"]], TrainingSettings(learning_rate=2e-3))
    model.fit(x[split["train"]], y[split["train"]], validation_data=(x[split["validation"]], y[split["validation"]]),
              epochs=epochs, batch_size=32, verbose=0)
    accuracy = float(np.mean(model(x[split["holdout"]], training=False).numpy().argmax(axis=1) == y[split["holdout"]]))
    return time.perf_counter() - started, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--bare", action="store_true", help="only the bare Keras script, printing its accuracy")
    parser.add_argument("--explain-cost", action="store_true", help="explanations off against on, digits and wine")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.bare:
        print(f"accuracy={bare_keras(args.epochs, 42)[1]:.4f}")
        return
    if args.explain_cost:
        explain_cost(args.repeats)
        return
    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "PREFECT_", "BENTOML_", "MLFLOW_"))}
    env.update(LOCKGATE_HOME=str(home), LOCKGATE_TRAINING__EPOCHS=str(args.epochs),
               LOCKGATE_TRAINING__EARLY_STOPPING_PATIENCE=str(10_000), COLUMNS="200", TF_CPP_MIN_LOG_LEVEL="2")
    lockgate = str(Path(sys.executable).with_name("lockgate"))

    def timed(command: list[str], extra: dict[str, str] | None = None) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(command, env=env | (extra or {}), capture_output=True, text=True, timeout=1800)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return seconds, done.stdout

    bare_seconds, out = timed([sys.executable, __file__, "--bare", "--epochs", str(args.epochs)])
    bare_accuracy = out.strip().rsplit("accuracy=", 1)[-1]
    runs = [
        ("cold: first run in a new workspace (starts its Prefect server, exports, builds and serves the Bento)", {}),
        ("warm: a gate setting changed, so it trains; the Prefect server is up", {"LOCKGATE_GATE__MIN_MACRO_F1": "0.7"}),
        ("unchanged: the same command again (nothing to train)", {"LOCKGATE_GATE__MIN_MACRO_F1": "0.7"}),
    ]
    rows = []
    try:
        for label, extra in runs:
            seconds, out = timed([lockgate, "run"], extra)
            accuracy = re.search(r"accuracy\s+│?\s*([0-9.]+)", out)
            status = "unchanged" if "Nothing changed" in out else ("promoted" if "Gate: PROMOTE" in out else "rejected")
            rows.append((label, seconds, accuracy.group(1) if accuracy and status != "unchanged" else "-", status))
    finally:
        subprocess.run([lockgate, "server", "stop"], env=env, capture_output=True, timeout=120)
    lines = [
        f"Digits CNN, {args.epochs} epochs (early stopping off), same split, on the CPU. Each line is one whole "
        "process, from its start to its exit, Python and TensorFlow imports included.",
        "",
        "| what | wall seconds | holdout accuracy | outcome | ratio to bare Keras |",
        "|---|---:|---:|---|---:|",
        f"| bare Keras script (load, fit, score) | {bare_seconds:.1f} | {bare_accuracy} | - | 1.00 |",
    ]
    for label, seconds, accuracy, status in rows:
        lines.append(f"| `lockgate run`, {label} | {seconds:.1f} | {accuracy} | {status} | {seconds / bare_seconds:.2f} |")
    lines += ["", "Goals: warm run at most 1.5x the bare script, unchanged re-run at most 0.5x. A trained run's extra "
              "time is validation with Data Docs, MLflow logging and registration, the export battery, the Bento "
              "build, and serving the Bento to check it answers like the in-process model."]
    body = "\n".join(lines)
    print(body)
    from report import write_section

    write_section("pipeline_overhead", f".venv/bin/python bench/pipeline_overhead.py --epochs {args.epochs}", body)


def explain_cost(repeats: int) -> None:
    """Whole `lockgate run` processes with default settings, explanations off
    and on alternated, each a first model (its own name) so every run is
    promoted and carded; after one run that starts the Prefect server."""
    from sklearn.datasets import load_wine

    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-explain-"))
    wine = home / "wine.csv"
    load_wine(as_frame=True).frame.to_csv(wine, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "PREFECT_", "BENTOML_", "MLFLOW_"))}
    env.update(LOCKGATE_HOME=str(home), COLUMNS="200", TF_CPP_MIN_LOG_LEVEL="2")
    lockgate = str(Path(sys.executable).with_name("lockgate"))
    data = {"digits": ["--data", "digits"], "wine": ["--data", str(wine), "--target", "target"]}
    counter = iter(range(10_000))

    def run(name: str, explain: bool) -> tuple[float, float | None]:
        extra = {"LOCKGATE_EXPLAIN__ENABLED": str(explain).lower(), "LOCKGATE_MODEL_NAME": f"bench-{name}-{next(counter)}"}
        started = time.perf_counter()
        done = subprocess.run([lockgate, "run", *data[name]], env=env | extra, capture_output=True, text=True, timeout=1800)
        seconds = time.perf_counter() - started
        if done.returncode != 0 or "Gate: PROMOTE" not in done.stdout:
            raise SystemExit(f"{name} failed or was not promoted:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        card = re.search(r"Model card:\s*(\S+)model_card\.html", done.stdout.replace("\n", ""))
        step = None
        if explain and card:
            record = Path(card.group(1)).parent / "explanation" / "explanation.json"
            step = json.loads(record.read_text())["seconds"] if record.is_file() else None
        return seconds, step

    rows = []
    try:
        run("digits", False)  # starts the workspace's Prefect server
        for name in data:
            off, on, steps = [], [], []
            for _ in range(repeats):
                off.append(run(name, False)[0])
                seconds, step = run(name, True)
                on.append(seconds)
                steps.append(step or float("nan"))
            rows.append((name, statistics.median(off), statistics.median(on), statistics.median(steps), off, on))
    finally:
        subprocess.run([lockgate, "server", "stop"], env=env, capture_output=True, timeout=120)
    lines = [
        f"Whole `lockgate run` processes with default settings (each a first model, so each is promoted, exported, "
        f"carded and packaged), explanations off (`LOCKGATE_EXPLAIN__ENABLED=false`) and on alternated, {repeats} "
        "of each, after one run that started the Prefect server. \"explain step\" is the explanation's own time "
        "(attributions, permutation importance, pictures); the rest of the difference is logging them and the "
        "model card.",
        "",
        "| data | off: median s | on: median s | added s | ratio on/off | explain step s | goal (<= 20 s added) | runs off | runs on |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for name, off, on, step, offs, ons in rows:
        added = on - off
        lines.append(f"| {name} | {off:.1f} | {on:.1f} | {added:+.1f} | {on / off:.2f} | {step:.1f} | "
                     f"{'met' if added <= 20 else '**not met**'} | {', '.join(f'{s:.1f}' for s in offs)} | "
                     f"{', '.join(f'{s:.1f}' for s in ons)} |")
    body = "\n".join(lines)
    print(body)
    from report import write_section

    write_section("explanation_overhead", f".venv/bin/python bench/pipeline_overhead.py --explain-cost --repeats {repeats}",
                  body)


if __name__ == "__main__":
    main()
