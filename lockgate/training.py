"""Fitting a model on a snapshot: device strategy, input pipeline, callbacks.

Kept free of MLflow and Prefect so the same code trains in the pipeline, in a
benchmark, and on a GPU machine with the JAX backend.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lockgate.checkpoints import resumable_epoch, whole_checkpoints
from lockgate.data import Snapshot, split_for
from lockgate.families import family_for
from lockgate.models import build_model, trainable_model
from lockgate.process_group import ProcessGroup
from lockgate.settings import DistillationSettings, TrainingSettings


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
    import keras

    backend = keras.backend.backend()
    if group is not None:
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


def training_processes(family: str, workers: int) -> tuple[int, str | None]:
    """How many processes train this family's model, and why not `workers` if not."""
    needs_tensorflow = family_for(family).needs_tensorflow
    if workers > 1 and needs_tensorflow:
        return 1, f"trained in one process, not {workers}: {needs_tensorflow}"
    return workers, None


def input_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, shuffle: bool) -> Any:
    """A tf.data pipeline on the TensorFlow backend; plain arrays elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return (x, y)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@dataclass
class FitOutcome:
    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    resumed_from_epoch: int
    seconds: float
    placement: Placement
    global_batch: int
    examples_per_epoch: int  # training rows one epoch feeds the model (all ranks together)


def distillation_targets(
    teacher_outputs: np.ndarray, y: np.ndarray, family: str, settings: DistillationSettings
) -> np.ndarray:
    """What a student learns from: the teacher's predictions, softened by the
    temperature, blended with the true targets (weight `1 - alpha`)."""
    return family_for(family).distillation_targets(teacher_outputs, y, settings)


def fit(
    snapshot: Snapshot,
    settings: TrainingSettings,
    backup_dir: Path | None = None,
    callbacks: list[Any] | None = None,
    verbose: int = 0,
    teacher_outputs: np.ndarray | None = None,
    distillation: DistillationSettings | None = None,
    group: ProcessGroup | None = None,
) -> FitOutcome:
    """Train the family's model on the snapshot's training split; given a
    teacher's outputs on every row, train a narrower student on them instead.
    As a member of a process `group` (JAX backend), train one model together
    with the group's other processes, `settings.batch_size` rows per global batch."""
    import keras

    keras.utils.set_random_seed(settings.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # same seed, same model
    family = family_for(snapshot.meta.family)
    if family.needs_tensorflow and keras.backend.backend() != "tensorflow":
        raise RuntimeError(family.needs_tensorflow)
    local_devices = 1
    if group is not None:
        from lockgate.process_group import data_parallel

        local_devices = data_parallel()  # before the model exists: its variables are laid out on every device
    placement = choose_placement(settings.device, group, local_devices)
    keras.mixed_precision.set_global_policy("mixed_float16" if placement.mixed_precision else "float32")
    split = split_for(snapshot.y, settings)
    targets, width = snapshot.y, 1.0
    if teacher_outputs is not None:
        distillation = distillation or DistillationSettings()
        targets, width = family.distillation_targets(teacher_outputs, snapshot.y, distillation), distillation.width
    x_train, y_train = snapshot.x[split["train"]], targets[split["train"]]
    x_val, y_val = snapshot.x[split["validation"]], targets[split["validation"]]
    if group is None:  # batch_size per replica, as MirroredStrategy counts it
        global_batch = settings.batch_size * placement.replicas
    else:  # batch_size for the whole group (rounded up so each device takes an equal share)
        global_batch = -(-settings.batch_size // placement.replicas) * placement.replicas
    with placement.scope():
        model = build_model(
            snapshot.meta, x_train, snapshot.y[split["train"]], settings, placement.mixed_precision,
            width=width, soft_targets=teacher_outputs is not None and family.task == "classification",
        )
        trainer = trainable_model(model, snapshot.meta, settings)
    resumed = resumable_epoch(backup_dir) if backup_dir is not None else 0
    if group is not None:
        from lockgate.process_group import sharded_batches

        per_process = placement.replicas // group.processes
        train_data = sharded_batches(
            x_train, y_train, global_batch, group, per_process, settings.seed, shuffle=True, start_epoch=resumed
        )
        val_data = sharded_batches(x_val, y_val, global_batch, group, per_process, settings.seed, shuffle=False)
        examples_per_epoch = len(train_data) * global_batch
    else:
        examples_per_epoch = len(y_train)
        train_data = input_pipeline(x_train, y_train, global_batch, settings.seed, shuffle=True)
        val_data = input_pipeline(x_val, y_val, global_batch, settings.seed, shuffle=False)
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.early_stopping_patience, restore_best_weights=True
    )
    all_callbacks: list[Any] = [stopping]
    if backup_dir is not None:
        # Saves state every epoch (early stopping's too: it comes first, so
        # its reset at the start runs before the checkpoint is restored); a
        # retried task resumes where the last one stopped.
        all_callbacks.append(whole_checkpoints(backup_dir, stopping))
    # Caller's callbacks run last, after the epoch's checkpoint is written.
    all_callbacks += list(callbacks or [])
    fit_kwargs: dict[str, Any] = {"epochs": settings.epochs, "callbacks": all_callbacks, "verbose": verbose}
    if isinstance(train_data, tuple):
        fit_kwargs.update(batch_size=global_batch, shuffle=True, validation_data=val_data)
        started = time.perf_counter()
        history = trainer.fit(*train_data, **fit_kwargs)
    else:
        fit_kwargs.update(validation_data=val_data, shuffle=False)  # the pipeline or the shards shuffle
        started = time.perf_counter()
        history = trainer.fit(train_data, **fit_kwargs)
    seconds = time.perf_counter() - started
    epochs_run = resumed + len(history.history.get("loss", []))
    return FitOutcome(model, history.history, epochs_run, resumed, seconds, placement, global_batch, examples_per_epoch)
