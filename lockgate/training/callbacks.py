"""Keras callbacks: progress reporting."""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import numpy as np


class EpochReporter(keras.callbacks.Callback):
    """Logs each epoch's metrics to the MLflow run (given a client) and, as
    progress, to the run log."""

    def __init__(self, client: Any | None, run_id: str | None, epochs: int) -> None:
        super().__init__()
        self.client, self.run_id, self.epochs = client, run_id, epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # deferred: MLflow takes seconds to import; only the steps that talk to the tracking store need it
        from mlflow.entities import Metric

        values = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)}
        now = int(time.time() * 1000)
        if values and self.client is not None:
            self.client.log_batch(
                self.run_id, metrics=[Metric(key=k, value=v, timestamp=now, step=epoch) for k, v in values.items()]
            )
        shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
        progress_logger().info("epoch %d/%d  %s", epoch + 1, self.epochs, shown)


def progress_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a Prefect run
        return logging.getLogger("lockgate.train")
