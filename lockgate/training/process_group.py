"""How one process takes part in data-parallel training of one model.

Every process of a group builds the same model from the same seed and feeds
its own share of every global batch; Keras 3 on the JAX backend
(`keras.distribution.DataParallel`) averages the gradients across processes
before each update, so every rank holds the same weights, equal to one
process training on whole global batches.

The group is found as Keras finds it: ``KERAS_DISTRIBUTION_JOB_ADDRESSES``
(rank 0's ``host:port``, the coordinator), ``KERAS_DISTRIBUTION_NUM_PROCESSES``
and ``KERAS_DISTRIBUTION_PROCESS_ID``. The local launcher
(`lockgate.training.distributed`) sets them for processes on one machine; the
Kubernetes indexed Job in ``infra/k8s/training-job.yaml`` sets them from the
pod's completion index.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

COORDINATOR_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
RANK_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"


class ProcessGroupError(RuntimeError):
    """The environment names no usable process group."""


@dataclass(frozen=True)
class ProcessGroup:
    coordinator: str  # host:port of rank 0
    processes: int
    rank: int

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "ProcessGroup":
        env = os.environ if environ is None else environ
        missing = [name for name in (PROCESSES_ENV, RANK_ENV) if not env.get(name)]
        if missing:
            raise ProcessGroupError(f"no process group: {', '.join(missing)} not set")
        try:
            processes, rank = int(env[PROCESSES_ENV]), int(env[RANK_ENV])
        except ValueError as exc:
            raise ProcessGroupError(f"{PROCESSES_ENV} and {RANK_ENV} must be integers: {exc}") from exc
        coordinator = env.get(COORDINATOR_ENV, "").split(",")[0].strip()
        if processes < 1 or not 0 <= rank < processes:
            raise ProcessGroupError(f"rank {rank} is not in a group of {processes} process(es)")
        if processes > 1 and ":" not in coordinator:
            raise ProcessGroupError(f"{COORDINATOR_ENV} must name rank 0 as host:port, got {coordinator!r}")
        return cls(coordinator, processes, rank)

    def environment(self) -> dict[str, str]:
        """The variables that make a process this member of the group."""
        return {COORDINATOR_ENV: self.coordinator, PROCESSES_ENV: str(self.processes), RANK_ENV: str(self.rank)}


def shard_rows(rows: np.ndarray, rank: int, processes: int, devices_per_process: int = 1) -> np.ndarray:
    """This rank's contiguous share of one global batch. The batch is cut to a
    multiple of every device in the group, so all shares are the same size
    (JAX assembles the global batch from equal per-process pieces, rank 0 first)."""
    unit = len(rows) // (processes * devices_per_process)
    share = unit * devices_per_process
    return rows[rank * share : (rank + 1) * share]


def batch_rows(order: np.ndarray, global_batch: int, drop_remainder: bool) -> list[np.ndarray]:
    """The global batches of one epoch, as row indices in `order`."""
    whole = len(order) // global_batch
    batches = [order[i * global_batch : (i + 1) * global_batch] for i in range(whole)]
    if (not drop_remainder or not batches) and len(order) > whole * global_batch:
        batches.append(order[whole * global_batch :])
    return batches


def epoch_order(rows: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order of rows in an epoch: the same on every rank, and on a resumed
    run the same as on an uninterrupted one."""
    if not shuffle:
        return np.arange(rows)
    return np.random.default_rng([seed, epoch]).permutation(rows)


def sharded_batches(
    x: Any, y: np.ndarray, global_batch: int, group: ProcessGroup, devices_per_process: int,
    seed: int, shuffle: bool, start_epoch: int = 0,
) -> Any:
    """A Keras dataset yielding this rank's share of each global batch. Training
    drops the last partial batch (it is another epoch's rows next time, since
    every epoch has its own order); validation keeps it, cut to a multiple of
    the devices."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    class ShardedBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = start_epoch
            self._plan()

        def _plan(self) -> None:
            order = epoch_order(len(y), seed, self.epoch, shuffle)
            self.batches = [
                shard_rows(rows, group.rank, group.processes, devices_per_process)
                for rows in batch_rows(order, global_batch, drop_remainder=shuffle)
            ]
            self.batches = [rows for rows in self.batches if len(rows)]

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
            # In the epoch's order: the global batch is then row for row the one a
            # single process would see (random layers such as dropout see the same rows).
            rows = self.batches[index]
            return _take(x, rows), y[rows]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._plan()

    return ShardedBatches()


def _take(x: Any, rows: np.ndarray) -> Any:
    if isinstance(x, dict):
        return {name: column[rows] for name, column in x.items()}
    return x[rows]


def data_parallel() -> int:
    """Spread the model over every device of every process in the group, each
    process feeding its own data; returns the number of local devices."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    # Each rank already feeds its own share: Keras must not shard it again.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    # deferred: JAX loads only on the paths that train or place a model with it
    import jax

    return jax.local_device_count()


def weights_digest(model: Any) -> str:
    """A hash of every weight's bytes: ranks that trained together must agree exactly."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()
