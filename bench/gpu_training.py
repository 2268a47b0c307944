"""The training code's GPU path, measured on the Keras JAX backend.

Runs `lockgate.training.fit.fit` (the pipeline's own training function) twice in
separate processes, once with JAX on the GPU (mixed precision, chosen by
`choose_placement`) and once with JAX forced onto the CPU, on the same data
and epochs, and prints the ratio. The TensorFlow backend takes the same code
path through `MirroredStrategy` where TensorFlow sees GPUs.

    KERAS_BACKEND=jax python bench/gpu_training.py --rows 30000 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def synthetic_images(rows: int):
    """MNIST-shaped synthetic images whose class is written into their brightness
    pattern, so the model has something to learn and the numbers mean work done."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, rows)
    x = rng.uniform(0, 64, (rows, 28, 28, 1)).astype("float32")
    for c in range(10):
        x[y == c, c * 2 : c * 2 + 6, :, 0] += 150
    return x, y


def measure(rows: int, epochs: int, batch_size: int) -> dict:
    import keras

    from lockgate.core.records import DatasetMeta
    from lockgate.core.settings import TrainingSettings
    from lockgate.data.datasets import Snapshot
    from lockgate.training.fit import fit

    x, y = synthetic_images(rows)
    meta = DatasetMeta(name="synthetic", family="image", target="label", feature_columns=[],
                       class_names=[str(i) for i in range(10)], input_shape=[28, 28, 1], pixel_scale=255.0)
    snapshot = Snapshot(folder=Path("."), meta=meta, x=x, y=y)
    settings = TrainingSettings(epochs=epochs, batch_size=batch_size, early_stopping_patience=10_000)
    started = time.perf_counter()
    outcome = fit(snapshot, settings)
    total = time.perf_counter() - started
    return {
        "backend": keras.backend.backend(),
        "placement": outcome.placement.description,
        "fit_seconds": outcome.seconds,
        "total_seconds": total,
        "examples_per_second": rows * 0.72 * epochs / outcome.seconds,  # 72% of rows are the training split
        "final_val_accuracy": float(outcome.history["val_accuracy"][-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.rows, args.epochs, args.batch_size)))
        return
    results = {}
    for name, platform in (("GPU", "cuda"), ("CPU", "cpu")):
        env = os.environ | {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"), "JAX_PLATFORMS": platform}
        out = subprocess.run([sys.executable, __file__, "--child", "--rows", str(args.rows), "--epochs", str(args.epochs),
                              "--batch-size", str(args.batch_size)], env=env, capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, results[name], flush=True)
    gpu, cpu = results["GPU"], results["CPU"]
    lines = [
        f"`lockgate.training.fit.fit` on {args.rows} synthetic 28x28x1 images, {args.epochs} epochs, batch {args.batch_size}, "
        f"Keras {gpu['backend']} backend.",
        "",
        "| placement | fit seconds | training examples/s | final val accuracy |",
        "|---|---:|---:|---:|",
    ]
    for r in (gpu, cpu):
        lines.append(f"| {r['placement']} | {r['fit_seconds']:.1f} | {r['examples_per_second']:.0f} | {r['final_val_accuracy']:.4f} |")
    lines += ["", f"GPU speed-up over the same machine's CPU: **{cpu['fit_seconds'] / gpu['fit_seconds']:.1f}×**."]
    body = "\n".join(lines)
    print(body)
    if args.out:
        args.out.write_text(body + "\n")


if __name__ == "__main__":
    main()
