"""Fitting a model on a snapshot: device strategy, input pipeline, callbacks.

Kept free of MLflow and Prefect so the same code trains in the pipeline, in a
benchmark, and on a GPU machine with the JAX backend.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.records import ChampionRef, TrainingResult
from lockgate.core.settings import DistillationSettings, LockgateSettings, TrainingSettings
from lockgate.data.datasets import Snapshot, read_snapshot, split_for
from lockgate.families import Family, family_for
from lockgate.models.architectures import build_model, predict_outputs, trainable_model
from lockgate.models.forest import FOREST, fit_forest, forest_model
from lockgate.models.tfidf import TFIDF, fit_tfidf, tfidf_model
from lockgate.registry.tracking import LoggedModel, RunRecord
from lockgate.scoring.plots import training_curves
from lockgate.training.checkpoints import resumable_epoch, whole_checkpoints
from lockgate.training.evaluation import champion_outputs
from lockgate.training.placement import FitOutcome, Placement, choose_placement
from lockgate.training.process_group import ProcessGroup, data_parallel, sharded_batches
from lockgate.training.scale_out import fit_across_processes


def training_processes(family: Family, workers: int) -> tuple[int, str | None]:
    """How many processes train this family's model, and why not `workers` if not."""
    needs_tensorflow = family.needs_tensorflow
    if workers > 1 and needs_tensorflow:
        return 1, f"trained in one process, not {workers}: {needs_tensorflow}"
    return workers, None


def input_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, shuffle: bool) -> Any:
    """A tf.data pipeline on the TensorFlow backend; plain arrays elsewhere."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    if keras.backend.backend() != "tensorflow":
        return (x, y)
    # deferred: TensorFlow takes seconds to import; only the paths that run it need it
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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
        if candidates[0] in (FOREST, TFIDF):
            network = next(a for a in family.architectures if a not in (FOREST, TFIDF))
            candidates, why = (network,), "a distillation student or a multi-process training is a network"
    else:
        candidates = family.candidates(snapshot.meta, settings.architecture)
    outcomes = []
    for architecture in candidates:
        if architecture == FOREST:
            outcomes.append(fit_forest_model(snapshot, settings))
        elif architecture == TFIDF:
            outcomes.append(fit_tfidf_model(snapshot, settings))
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
    scored = [(float(family.target.example_losses(y, out).mean()), o) for out, o in zip(outputs, outcomes)]
    blended = float(family.target.example_losses(y, np.mean(outputs, axis=0)).mean())
    scored.sort(key=lambda item: item[0])
    seconds = sum(o.seconds for o in outcomes)
    if blended < scored[0][0] and family.blendable:
        best = blend(outcomes, snapshot)
        scored.insert(0, (blended, best))
    best_score, best = scored[0]
    others = ", ".join(f"{o.architecture} {s:.4f}" for s, o in scored[1:])
    unblended = "" if best.architecture == BLEND else f", {BLEND} {blended:.4f}" if family.blendable else ""
    best.choice = (f"{best.architecture}, chosen on the validation split ({len(rows)} rows): mean {score} "
                   f"{best_score:.4f} against {others}{unblended}")
    best.seconds = seconds
    return best


def blend(outcomes: list[FitOutcome], snapshot: Snapshot) -> FitOutcome:
    """One Keras model that averages the candidates' outputs on the same
    input: it saves, exports and serves as one model."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    family = family_for(snapshot.meta.family)
    inputs = keras.Input(shape=tuple(snapshot.meta.input_shape), name="features", dtype="float32")
    output = family.target.output
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
    """Gradient-boosted trees on the table's encoded rows (lockgate/models/forest.py),
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
    return _fitted_by_scikit_learn(model, FOREST, forest.iterations, forest.seconds, split, forest.validation_outputs)


def fit_tfidf_model(snapshot: Snapshot, settings: TrainingSettings) -> FitOutcome:
    """TF-IDF with logistic regression (lockgate/models/tfidf.py), its strength
    chosen on the validation split, as a Keras model over the token ids."""
    family = family_for(snapshot.meta.family)
    split = split_for(snapshot.y, settings)
    fitted = fit_tfidf(
        snapshot.x[split["train"]], snapshot.y[split["train"]], snapshot.x[split["validation"]],
        snapshot.y[split["validation"]], snapshot.meta.vocabulary.size, len(snapshot.class_names), settings.class_weight,
    )
    model = tfidf_model(fitted, snapshot.x.shape[1], family.target.output, name=f"lockgate_{family.name}_tfidf")
    return _fitted_by_scikit_learn(model, TFIDF, 0, fitted.seconds, split, fitted.validation_outputs)


def _fitted_by_scikit_learn(model: Any, architecture: str, iterations: int, seconds: float,
                            split: dict[str, np.ndarray], validation_outputs: np.ndarray) -> FitOutcome:
    """A model scikit-learn fitted in this process on the training rows and
    refitted with the validation rows; its validation outputs are from
    before the refit."""
    return FitOutcome(
        model, {}, iterations, 0, seconds, Placement("CPU (scikit-learn)", contextlib.nullcontext, 1, False),
        0, len(split["train"]) + len(split["validation"]), architecture=architecture,
        validation_outputs=validation_outputs,
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
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    keras.utils.set_random_seed(settings.seed)
    if keras.backend.backend() == "tensorflow":
        # deferred: TensorFlow takes seconds to import; only the paths that run it need it
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # same seed, same model
    family = family_for(snapshot.meta.family)
    if family.needs_tensorflow and keras.backend.backend() != "tensorflow":
        raise RuntimeError(family.needs_tensorflow)
    local_devices = 1
    if group is not None:
        local_devices = data_parallel()  # before the model exists: its variables are laid out on every device
    placement = choose_placement(settings.device, group, local_devices)
    keras.mixed_precision.set_global_policy("mixed_float16" if placement.mixed_precision else "float32")
    split = split_for(snapshot.y, settings)
    targets, width = snapshot.y, 1.0
    if teacher_outputs is not None:
        distillation = distillation or DistillationSettings()
        targets, width = family.target.distillation_targets(teacher_outputs, snapshot.y, distillation), distillation.width
    x_train, y_train = snapshot.x[split["train"]], targets[split["train"]]
    x_val, y_val = snapshot.x[split["validation"]], targets[split["validation"]]
    if group is None:  # batch_size per replica, as MirroredStrategy counts it
        global_batch = settings.batch_size * placement.replicas
    else:  # batch_size for the whole group (rounded up so each device takes an equal share)
        global_batch = -(-settings.batch_size // placement.replicas) * placement.replicas
    with placement.scope():
        model = build_model(
            family, snapshot.meta, x_train, snapshot.y[split["train"]], settings, placement.mixed_precision,
            width=width, soft_targets=teacher_outputs is not None and family.task == "classification",
        )
        trainer = trainable_model(model, family.augmentable, snapshot.meta, settings)
    resumed = resumable_epoch(backup_dir) if backup_dir is not None else 0
    if group is not None:
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


@dataclass(frozen=True)
class TrainedModel:
    """A run's model, trained and saved in the run's folder: the result
    record (its `model_uri` is known once the model is logged) and what the
    run records of it."""

    result: TrainingResult
    run_record: RunRecord


def train(
    run_id: str,
    snapshot_folder: str,
    settings: LockgateSettings,
    teacher: ChampionRef | None = None,
    callbacks: list[Any] | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> TrainedModel:
    """Train the family's model on the snapshot, resumably (checkpoints under
    `settings.checkpoints_dir / run_id`), in one process or across several,
    and save it as the run folder's model.keras with its training curves.
    Given a teacher (the champion), train a narrower student on the teacher's
    softened predictions instead. `callbacks` see each epoch of one-process
    training (the step's epoch reporter); across processes, rank 0 reports
    each epoch to the run `run_id` itself. Logs nothing else: the run record
    says what to log."""
    # deferred: keras is heavy, and only training needs it
    import keras

    log = log or logging.getLogger("lockgate.train")
    keras.utils.disable_interactive_logging()  # progress goes to the run log, not bars
    snapshot = read_snapshot(snapshot_folder)
    out_dir = settings.runs_dir / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = settings.checkpoints_dir / run_id
    params: dict[str, Any] = {}
    teacher_outputs = None
    if teacher is not None:
        every_row = np.arange(len(snapshot.y))
        teacher_outputs = champion_outputs(teacher, snapshot.inputs_for(teacher.data_meta, every_row), snapshot.class_names)
        params["distilled_from"] = teacher.uri
        params |= {f"distillation.{key}": value for key, value in settings.distillation.model_dump().items()}
    processes, note = training_processes(family_for(snapshot.meta.family), settings.training.workers)
    if note:
        log.warning(note)
    if processes > 1:
        outcome = fit_across_processes(
            snapshot_folder, settings, out_dir / "workers", backup_dir, run_id, teacher_outputs, progress=log.info,
        )
    else:
        outcome = fit(
            snapshot, settings.training, backup_dir=backup_dir, callbacks=callbacks,
            teacher_outputs=teacher_outputs, distillation=settings.distillation,
        )
    model_path = out_dir / "model.keras"
    outcome.model.save(model_path)
    artifacts: list[tuple[str, str | None]] = []
    if outcome.history:  # a forest has no epochs to draw
        figure_path = training_curves(outcome.history, out_dir / "training_curves.png", outcome.resumed_from_epoch)
        artifacts.append((str(figure_path), "plots"))
    params |= {
        "architecture": outcome.architecture,
        "device": outcome.placement.description[:500],
        "training.processes": processes,
        "training.global_batch": outcome.global_batch,
    }
    example = snapshot.x[:5]
    run_record = RunRecord(
        metrics={"epochs_run": outcome.epochs_run, "train_seconds": outcome.seconds},
        params=params,
        tags={"lockgate.architecture_choice": outcome.choice[:5000]},
        artifacts=artifacts,
        model=LoggedModel(outcome.model, example, predict_outputs(outcome.model, example)),
    )
    result = TrainingResult(
        run_id=run_id,
        model_path=str(model_path),
        model_uri="",
        epochs_run=outcome.epochs_run,
        resumed_from_epoch=outcome.resumed_from_epoch,
        parameters=int(outcome.model.count_params()),
        seconds=round(outcome.seconds, 3),
        device=outcome.placement.description + f", keras {keras.__version__}",
        processes=processes,
        global_batch=outcome.global_batch or None,
        note=note,
        architecture=outcome.architecture,
        choice=outcome.choice,
    )
    return TrainedModel(result=result, run_record=run_record)
