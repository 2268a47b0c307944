"""Training across several processes, on this machine or on Kubernetes: the
request the ranks read, the launcher the settings name, and the model back
as one fit's outcome."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lockgate.models.architectures import load_keras_model
from lockgate.training.distributed import MODEL_FILE, WorkerRequest, train_on_local_processes
from lockgate.training.kubernetes import train_on_kubernetes
from lockgate.training.placement import FitOutcome, Placement


def fit_across_processes(
    snapshot_folder: str,
    settings: Any,
    out_dir: Path,
    backup_dir: Path | None = None,
    run_id: str | None = None,
    teacher_outputs: np.ndarray | None = None,
    progress: Callable[[str], None] = print,
) -> Any:
    """Train on `settings.training.workers` processes with the configured
    launcher; the model comes back loaded with this process's Keras backend."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher_path = None
    if teacher_outputs is not None:
        teacher_path = out_dir / "teacher_outputs.npy"
        np.save(teacher_path, teacher_outputs, allow_pickle=False)
    request = WorkerRequest(
        snapshot_folder=str(snapshot_folder), out_dir=str(out_dir),
        backup_dir=str(backup_dir) if backup_dir else None, run_id=run_id,
        # Serving keys stay out of files the workers read.
        settings=settings.model_dump(mode="json", exclude={"serving"}),
        teacher_outputs=str(teacher_path) if teacher_path else None,
    )
    training = settings.training
    if training.launcher == "kubernetes":
        outcomes = train_on_kubernetes(request, training.workers, settings, progress, training.worker_timeout_s)
    else:
        outcomes = train_on_local_processes(request, training.workers, progress, training.worker_timeout_s)
    lead = outcomes[0]
    model = load_keras_model(out_dir / MODEL_FILE)
    placement = Placement(
        f"{lead.placement}; {lead.global_batch // lead.processes} rows of each global batch per process, "
        f"learning rate {lead.learning_rate:g}; "
        f"weights identical on all {lead.processes} ranks (sha256 {lead.weights_sha256[:12]})",
        contextlib.nullcontext, lead.processes, False,
    )
    return FitOutcome(
        model, lead.history, lead.epochs_run, lead.resumed_from_epoch, lead.seconds, placement,
        lead.global_batch, lead.examples_per_epoch,
    )
