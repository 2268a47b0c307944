"""Training one model across several processes: what the launcher and the
ranks exchange (a request, each rank's outcome, its log) and the launcher
for processes on this machine.

The route is Keras 3 on the JAX backend with `keras.distribution.DataParallel`
(see `lockgate.training.process_group`), because it is the multi-process route that
works with Keras 3 on the pinned stack: `MultiWorkerMirroredStrategy` with
Keras 3 `fit` fails (keras-team/keras#20585), parameter-server training is not
supported by Keras 3, and Horovod does not support TensorFlow 2.16 or later.
Only training moves to JAX: rank 0 writes a `.keras` file, which the pipeline
loads with TensorFlow for evaluation, the gates, the exports and the service.

A worker is ``python -m lockgate.training.rank REQUEST.json`` with the process group
in its environment. `train_on_local_processes` starts the group on this
machine; on Kubernetes an indexed Job runs the same command in every pod
(`lockgate.training.kubernetes`); `lockgate.training.scale_out` picks the launcher.
Each rank checkpoints every epoch under its own folder, so a retried step
resumes every rank from the same epoch; only rank 0 reports to MLflow and
writes the model.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from lockgate.core.faults import TransientFault
from lockgate.core.locks import atomic_write_text
from lockgate.registry.bento_server import free_port
from lockgate.training.checkpoints import checkpoint_weights, resumable_epoch
from lockgate.training.process_group import ProcessGroup

MODEL_FILE = "model.keras"


class WorkerRequest(BaseModel):
    """What every rank of one training is given."""

    snapshot_folder: str
    out_dir: str  # rank 0's model and every rank's outcome
    backup_dir: str | None = None  # per-epoch checkpoints, one folder per rank
    run_id: str | None = None  # the MLflow run rank 0 reports epochs to
    settings: dict[str, Any]  # LockgateSettings, as JSON
    teacher_outputs: str | None = None  # a .npy of the teacher's outputs, for a student


class RankOutcome(BaseModel):
    """What one rank reports when it has trained."""

    rank: int
    processes: int
    weights_sha256: str
    history: dict[str, list[float]]
    epochs_run: int
    resumed_from_epoch: int
    seconds: float
    examples_per_second: float
    placement: str
    global_batch: int
    examples_per_epoch: int
    learning_rate: float


class DistributedTrainingError(RuntimeError):
    """A rank failed, or the ranks ended with different weights."""


class RankLost(TransientFault):
    """A rank was killed from outside (preempted, out of memory): worth a retry,
    which resumes every rank from the newest readable checkpoint any rank holds."""


def outcome_path(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"rank-{rank}.json"


def log_path(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"rank-{rank}.log"


def train_on_local_processes(
    request: WorkerRequest, processes: int, progress: Callable[[str], None] = print, timeout_s: float = 3600,
) -> list[RankOutcome]:
    """Start `processes` workers on this machine (loopback), relay rank 0's
    progress, and return every rank's outcome once all have finished. If one
    fails, the others are stopped and the error carries its last log lines."""
    request_path = prepare_attempt(request, processes, progress)
    out_dir = request_path.parent
    coordinator = f"127.0.0.1:{free_port()}"
    workers: list[subprocess.Popen] = []
    logs = []
    try:
        for rank in range(processes):
            group = ProcessGroup(coordinator, processes, rank)
            env = {**os.environ, **group.environment(), "KERAS_BACKEND": "jax"}
            log = open(log_path(out_dir, rank), "w")
            logs.append(log)
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "lockgate.training.rank", str(request_path)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            ))
        _wait_for(workers, out_dir, progress, timeout_s)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
    return read_outcomes(out_dir, processes)


def prepare_attempt(request: WorkerRequest, processes: int, progress: Callable[[str], None]) -> Path:
    """Ready the workspace for one try of a training, whatever launches it:
    no outcome left by an earlier try can pass for this one's, every rank
    resumes from the same checkpoint, and the request is on disk for the
    ranks to read. Returns the request's path."""
    out_dir = Path(request.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(processes):
        outcome_path(out_dir, rank).unlink(missing_ok=True)
    if request.backup_dir:
        agree_on_resume_epoch(Path(request.backup_dir), processes, progress)
    request_path = out_dir / "worker-request.json"
    atomic_write_text(request_path, request.model_dump_json(indent=2))
    return request_path


def agree_on_resume_epoch(backup_dir: Path, processes: int, progress: Callable[[str], None] = print) -> int:
    """The epoch every rank resumes from. Ranks checkpoint each epoch on their
    own, and one killed while writing may be an epoch behind the others or
    hold a half-written file; ranks resuming from different epochs would not
    train one model. All ranks hold the same weights, so the newest sound
    checkpoint of any rank is every rank's: it is copied to the others."""
    folders = [Path(backup_dir) / f"rank-{rank}" for rank in range(processes)]
    epochs = [sound_checkpoint_epoch(folder) for folder in folders]
    newest = max(range(processes), key=lambda rank: -1 if epochs[rank] is None else epochs[rank])
    if epochs[newest] is None:
        if any(folder.exists() for folder in folders):
            progress("no rank holds a readable checkpoint: training starts over")
        shutil.rmtree(backup_dir, ignore_errors=True)
        return 0
    behind = [rank for rank in range(processes) if epochs[rank] != epochs[newest]]
    for rank in behind:
        shutil.rmtree(folders[rank], ignore_errors=True)
        shutil.copytree(folders[newest], folders[rank])
    if behind:
        shown = ["unreadable" if epoch is None else epoch for epoch in epochs]
        progress(f"ranks {behind} hold older or unreadable checkpoints ({shown}); they take rank {newest}'s")
    progress(f"resuming all {processes} ranks after epoch {epochs[newest]}")
    return epochs[newest]


def sound_checkpoint_epoch(folder: Path) -> int | None:
    """The epoch of a rank's checkpoint whose weights file can be read, else None."""
    epoch, weights = resumable_epoch(folder), checkpoint_weights(folder)
    if not epoch or weights is None:
        return None
    import h5py  # deferred: only a resumed multi-process training reads checkpoint files

    try:
        with h5py.File(weights, "r"):
            return epoch
    except OSError:  # cut short while it was written
        return None


def _wait_for(workers: list[subprocess.Popen], out_dir: Path, progress: Callable[[str], None], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    relayed = 0
    while True:
        relayed = _relay(log_path(out_dir, 0), relayed, progress)
        codes = [worker.poll() for worker in workers]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            # A rank killed from outside takes the others down with it (their
            # collectives fail): it is the cause to report.
            killed_ranks = [(r, c) for r, c in failed if c in (-signal.SIGKILL, -signal.SIGTERM)]
            rank, code = (killed_ranks or failed)[0]
            killed = bool(killed_ranks)
            error = RankLost if killed else DistributedTrainingError
            raise error(
                f"training rank {rank} of {len(workers)} "
                + (f"was killed (signal {-code})" if killed else f"exited with {code}")
                + f"; the others were stopped. Last lines of its log ({log_path(out_dir, rank)}):\n"
                + _tail(log_path(out_dir, rank))
            )
        if all(code == 0 for code in codes):
            _relay(log_path(out_dir, 0), relayed, progress)
            return
        if time.monotonic() > deadline:
            raise DistributedTrainingError(f"training across {len(workers)} processes took over {timeout_s:.0f} s")
        time.sleep(0.5)


def _relay(path: Path, offset: int, progress: Callable[[str], None]) -> int:
    """Pass on the epoch lines rank 0 has written since `offset`."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            chunk = log.read()
    except FileNotFoundError:
        return offset
    complete = chunk.rfind(b"\n") + 1
    for line in chunk[:complete].decode(errors="replace").splitlines():
        if "epoch " in line:
            progress(line.strip())
    return offset + complete


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def read_outcomes(out_dir: Path, processes: int) -> list[RankOutcome]:
    """Every rank's outcome; fails unless all ranks ended with the same weights."""
    missing = [rank for rank in range(processes) if not outcome_path(out_dir, rank).is_file()]
    if missing:
        raise DistributedTrainingError(f"ranks {missing} finished without reporting an outcome")
    outcomes = [RankOutcome.model_validate_json(outcome_path(out_dir, r).read_text()) for r in range(processes)]
    digests = {o.weights_sha256 for o in outcomes}
    if len(digests) != 1:
        raise DistributedTrainingError(
            "the ranks ended with different weights, so they did not train one model: "
            + ", ".join(f"rank {o.rank} {o.weights_sha256[:12]}" for o in outcomes)
        )
    return outcomes
