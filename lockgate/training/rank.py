"""One rank of a multi-process training: ``python -m lockgate.training.rank
REQUEST.json``, with the process group in its environment (set by
`lockgate.training.distributed` on this machine, or by the Kubernetes Job). It trains
with the same `fit` as one process, checkpoints under its own folder, and
writes its outcome for the launcher; rank 0 also writes the model and reports
each epoch to MLflow."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.locks import atomic_write_text, unique_temporary
from lockgate.core.settings import LockgateSettings
from lockgate.data.datasets import read_snapshot
from lockgate.registry.tracking import client
from lockgate.training.distributed import MODEL_FILE, DistributedTrainingError, RankOutcome, WorkerRequest, outcome_path
from lockgate.training.fit import fit
from lockgate.training.process_group import ProcessGroup, weights_digest


def run_worker(request_path: Path) -> RankOutcome:
    """Train as one member of the group named in the environment."""
    request = WorkerRequest.model_validate_json(Path(request_path).read_text())
    group = ProcessGroup.from_environment()
    import jax  # deferred: the group's environment must be read first, and JAX configured before Keras loads

    # Collectives across processes: NCCL between GPUs, gloo between CPUs. Set
    # before anything asks JAX for its devices, which would fix the backend.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras  # deferred: after JAX is configured

    if keras.backend.backend() != "jax":
        raise DistributedTrainingError(f"workers train on the JAX backend; KERAS_BACKEND is {keras.backend.backend()!r}")
    if group.processes > 1:
        keras.distribution.initialize(group.coordinator, group.processes, group.rank)
    keras.utils.disable_interactive_logging()

    settings = LockgateSettings(**request.settings)
    snapshot = read_snapshot(request.snapshot_folder)
    callbacks: list[Any] = []
    if group.rank == 0:  # progress for the launcher to relay, and the epochs' metrics for the MLflow run
        # deferred: its classes extend Keras's, and Keras must load after JAX is configured
        from lockgate.training.callbacks import EpochReporter

        tracking = client(settings) if request.run_id else None
        callbacks.append(EpochReporter(tracking, request.run_id, settings.training.epochs))
    teacher = np.load(request.teacher_outputs, allow_pickle=False) if request.teacher_outputs else None
    backup = Path(request.backup_dir) / f"rank-{group.rank}" if request.backup_dir else None
    fitted = fit(
        snapshot, settings.training, backup_dir=backup, callbacks=callbacks, verbose=0,
        teacher_outputs=teacher, distillation=settings.distillation, group=group,
    )
    out_dir = Path(request.out_dir)
    # Every rank saves, and rank 0 keeps its file: with rank 0 saving alone it
    # waited on the other ranks (saving reads variables laid out across the
    # group) until the group's shutdown barrier timed out.
    temporary = unique_temporary(out_dir / MODEL_FILE)
    fitted.model.save(temporary)
    if group.rank == 0:
        temporary.replace(out_dir / MODEL_FILE)
    else:
        temporary.unlink()
    epochs_trained = fitted.epochs_run - fitted.resumed_from_epoch
    outcome = RankOutcome(
        rank=group.rank,
        processes=group.processes,
        weights_sha256=weights_digest(fitted.model),
        history=fitted.history,
        epochs_run=fitted.epochs_run,
        resumed_from_epoch=fitted.resumed_from_epoch,
        seconds=round(fitted.seconds, 3),
        examples_per_second=round(epochs_trained * fitted.examples_per_epoch / fitted.seconds, 1) if fitted.seconds else 0.0,
        placement=fitted.placement.description,
        global_batch=fitted.global_batch,
        examples_per_epoch=fitted.examples_per_epoch,
        learning_rate=settings.training.learning_rate,
    )
    atomic_write_text(outcome_path(out_dir, group.rank), outcome.model_dump_json(indent=2))
    return outcome


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lockgate.training.rank REQUEST.json (the process group in KERAS_DISTRIBUTION_*)")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        outcome = run_worker(Path(argv[0]))
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        # At once: a normal exit would wait at the group's shutdown barrier
        # for ranks that wait on this one, minutes before anyone notices.
        os._exit(1)
    print(f"rank {outcome.rank}: trained {outcome.epochs_run} epochs, weights {outcome.weights_sha256[:12]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
