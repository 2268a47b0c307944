"""Where a model trains (a placement: CPU, GPUs, a process group) and what
a fit gives back, whichever launcher ran it."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lockgate.training.process_group import ProcessGroup


@dataclass
class Placement:
    """Where training runs and how: a strategy scope and a precision policy."""

    description: str
    scope: Callable[[], Any]
    replicas: int
    mixed_precision: bool


def choose_placement(device: str = "auto", group: ProcessGroup | None = None, local_devices: int = 1) -> Placement:
    """Every visible GPU with data parallelism and mixed precision, else the CPU;
    in a process group, every device of every process."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    backend = keras.backend.backend()
    if group is not None:
        # deferred: JAX loads only on the paths that train or place a model with it
        import jax

        gpus = jax.local_devices()[0].platform == "gpu"
        replicas = group.processes * local_devices
        return Placement(
            f"{group.processes} process(es) x {local_devices} {'GPU' if gpus else 'CPU'} device(s), "
            f"keras.distribution.DataParallel ({backend})" + (", mixed_float16" if gpus else ""),
            contextlib.nullcontext,
            replicas,
            gpus,
        )
    if backend == "tensorflow" and os.environ.get("TF_CONFIG"):
        return _multi_worker_placement()
    if backend == "tensorflow":
        # deferred: TensorFlow takes seconds to import; only the paths that run it need it
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU") if device == "auto" else []
        if gpus:
            strategy = tf.distribute.MirroredStrategy()
            return Placement(
                f"{len(gpus)} GPU(s), MirroredStrategy, mixed_float16",
                strategy.scope,
                strategy.num_replicas_in_sync,
                True,
            )
        return Placement("CPU (tensorflow)", contextlib.nullcontext, 1, False)
    if backend == "jax":
        # deferred: JAX loads only on the paths that train or place a model with it
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"] if device == "auto" else []
        if gpus:
            return Placement(f"{len(gpus)} GPU(s) ({backend}), mixed_float16", contextlib.nullcontext, 1, True)
    return Placement(f"CPU ({backend})", contextlib.nullcontext, 1, False)


@functools.cache
def _multi_worker_placement() -> Placement:
    """Data parallelism across the machines named in TF_CONFIG, each worker using
    its GPUs (or its CPU). TensorFlow allows one such strategy per process, made
    before any collective op runs, hence the cache: a retried step reuses it."""
    # deferred: TensorFlow takes seconds to import; only the paths that run it need it
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = len(json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker", [])) or 1
    gpus = bool(tf.config.list_physical_devices("GPU"))
    return Placement(
        f"{workers} worker(s), MultiWorkerMirroredStrategy, {strategy.num_replicas_in_sync} replica(s)"
        + (", mixed_float16" if gpus else ""),
        strategy.scope,
        strategy.num_replicas_in_sync,
        gpus,
    )


@dataclass
class FitOutcome:
    model: Any
    history: dict[str, list[float]]
    epochs_run: int  # epochs of a network; boosting iterations of a forest
    resumed_from_epoch: int
    seconds: float
    placement: Placement
    global_batch: int
    examples_per_epoch: int  # training rows one epoch feeds the model (all ranks together)
    architecture: str = ""
    validation_outputs: np.ndarray | None = None  # a forest's, from before its refit on the validation rows
    # Why this architecture: asked for, the default, or chosen among
    # candidates on the validation split (never the holdout), with each score.
    choice: str = ""
