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
from lockgate.forest import FOREST, fit_forest, forest_model
from lockgate.models import build_model, predict_outputs, trainable_model
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
    """Train the family's model: the architecture asked for, or, where the
    family offers several (a table: a network and a forest), each of them,
    keeping the one with the better proper score on the validation split.
    A distillation student and a process group train a network only."""
    family = family_for(snapshot.meta.family)
    why = "as asked" if settings.architecture != "auto" else f"the {family.name} family's default"
    if teacher_outputs is not None or group is not None:
        candidates = (family.architecture(snapshot.meta, settings.architecture),)
        if candidates == (FOREST,):
            candidates, why = (family.architectures[0],), "a distillation student or a multi-process training is a network"
    else:
        candidates = family.candidates(snapshot.meta, settings.architecture)
    outcomes = []
    for architecture in candidates:
        if architecture == FOREST:
            outcomes.append(fit_forest_model(snapshot, settings))
        else:
            outcomes.append(fit_network(
                snapshot, settings.model_copy(update={"architecture": architecture}), backup_dir, callbacks, verbose,
                teacher_outputs, distillation, group,
            ))
    if len(outcomes) == 1:
        outcomes[0].choice = f"{outcomes[0].architecture}, {why}"
        return outcomes[0]
    return choose_on_validation(outcomes, snapshot, settings)


BLEND = "mlp+forest"


def choose_on_validation(outcomes: list[FitOutcome], snapshot: Snapshot, settings: TrainingSettings) -> FitOutcome:
    """The candidate with the lowest mean proper score (Brier score, squared
    error) on the validation split, which none of them was fitted on and the
    gate never sees; the candidates include the average of them all (a blend
    often beats each part, as networks and trees err on different rows). The
    choice names every candidate's score."""
    family = family_for(snapshot.meta.family)
    rows = split_for(snapshot.y, settings)["validation"]
    x, y = snapshot.x[rows], snapshot.y[rows]
    score = "squared error" if family.task == "regression" else "Brier score"
    outputs = [o.validation_outputs if o.validation_outputs is not None else predict_outputs(o.model, x) for o in outcomes]
    scored = [(float(family.example_losses(y, out).mean()), o) for out, o in zip(outputs, outcomes)]
    blended = float(family.example_losses(y, np.mean(outputs, axis=0)).mean())
    scored.sort(key=lambda item: item[0])
    seconds = sum(o.seconds for o in outcomes)
    if blended < scored[0][0]:
        best = blend(outcomes, snapshot)
        scored.insert(0, (blended, best))
    best_score, best = scored[0]
    others = ", ".join(f"{o.architecture} {s:.4f}" for s, o in scored[1:])
    best.choice = (f"{best.architecture}, chosen on the validation split ({len(rows)} rows): mean {score} "
                   f"{best_score:.4f} against {others}" + ("" if best.architecture == BLEND else f", {BLEND} {blended:.4f}"))
    best.seconds = seconds
    return best


def blend(outcomes: list[FitOutcome], snapshot: Snapshot) -> FitOutcome:
    """One Keras model that averages the candidates' outputs on the same
    input: it saves, exports and serves as one model."""
    import keras

    family = family_for(snapshot.meta.family)
    inputs = keras.Input(shape=tuple(snapshot.meta.input_shape), name="features", dtype="float32")
    output = "value" if family.task == "regression" else "probabilities"
    average = keras.layers.Average(name=output, dtype="float32")([o.model(inputs) for o in outcomes])
    model = keras.Model(inputs, average, name=f"lockgate_{family.name}_blend")
    # Not compiled: it is never trained as a whole, and a compiled blend
    # saves an optimizer whose state does not match its parts' on loading.
    network = next((o for o in outcomes if o.architecture != FOREST), outcomes[0])
    return FitOutcome(
        model, network.history, network.epochs_run, network.resumed_from_epoch, sum(o.seconds for o in outcomes),
        network.placement, network.global_batch, network.examples_per_epoch, architecture=BLEND,
    )


def fit_forest_model(snapshot: Snapshot, settings: TrainingSettings) -> FitOutcome:
    """Gradient-boosted trees on the table's encoded rows (lockgate/forest.py),
    as a Keras model that exports and serves like the networks."""
    family = family_for(snapshot.meta.family)
    split = split_for(snapshot.y, settings)
    layout = snapshot.meta.table_contract().layout()
    n_classes = len(snapshot.class_names)
    # A text column's word codes are positions in a sentence, not quantities:
    # the forest is fitted without them (a constant: no split uses them), and
    # the network reads the words.
    words = [p for group in layout.get("texts", []) for p in group["positions"]]
    x_train, x_val = snapshot.x[split["train"]].copy(), snapshot.x[split["validation"]].copy()
    x_train[:, words], x_val[:, words] = 0.0, 0.0
    forest = fit_forest(
        x_train, snapshot.y[split["train"]], x_val, snapshot.y[split["validation"]], layout, family.task, n_classes,
        settings.seed, settings.class_weight,
    )
    model = forest_model(forest, layout, family.task, n_classes, name=f"lockgate_{family.name}_forest")
    return FitOutcome(
        model, {}, forest.iterations, 0, forest.seconds, Placement("CPU (scikit-learn)", contextlib.nullcontext, 1, False),
        0, len(split["train"]) + len(split["validation"]), architecture=FOREST, validation_outputs=forest.validation_outputs,
    )


def class_weights(y_train: np.ndarray, classes: int) -> dict[int, float]:
    """Each class weighted by n / (classes * its count), so every class counts
    as much in the loss as the others (scikit-learn's "balanced")."""
    counts = np.bincount(y_train.astype("int64"), minlength=classes).astype("float64")
    return {i: float(len(y_train) / (classes * c)) if c else 1.0 for i, c in enumerate(counts)}


def fit_network(
    snapshot: Snapshot,
    settings: TrainingSettings,
    backup_dir: Path | None = None,
    callbacks: list[Any] | None = None,
    verbose: int = 0,
    teacher_outputs: np.ndarray | None = None,
    distillation: DistillationSettings | None = None,
    group: ProcessGroup | None = None,
) -> FitOutcome:
    """Train the family's network on the snapshot's training split; given a
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
    if settings.class_weight == "balanced" and family.task == "classification" and teacher_outputs is None:
        fit_kwargs["class_weight"] = class_weights(snapshot.y[split["train"]], len(snapshot.class_names))
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
    architecture = family.architecture(snapshot.meta, settings.architecture)
    return FitOutcome(model, history.history, epochs_run, resumed, seconds, placement, global_batch, examples_per_epoch,
                      architecture=architecture)
