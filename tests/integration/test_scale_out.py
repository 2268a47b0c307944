"""Scale-out options, run for real on this machine: hyper-parameter trials on
a local Dask cluster of two worker processes, and training under
MultiWorkerMirroredStrategy configured through TF_CONFIG on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.stack import REPO_ROOT, clean_env, free_port


def test_trials_run_in_parallel_on_a_local_dask_cluster(prefect_harness, settings, wine_csv):
    from flows.trials import run_trials

    settings.deploy.trials_runner = "dask"
    settings.deploy.dask_workers = 2
    settings.training.epochs = 3
    rates = [1e-3, 1e-2, 3e-2]
    results = run_trials(str(wine_csv), rates, target="target", settings=settings)
    assert sorted(r.learning_rate for r in results) == rates
    workers = {r.worker.rsplit(":", 1)[1] for r in results}
    assert len(workers) == 2, f"both Dask workers should train: {workers}"
    assert str(os.getpid()) not in workers, "trials ran in the test process, not on the cluster"
    assert all(0.0 <= r.val_accuracy <= 1.0 and r.epochs_run >= 1 for r in results)
    assert [r.val_accuracy for r in results] == sorted((r.val_accuracy for r in results), reverse=True)


def test_trials_run_one_after_another_by_default(settings):
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.trials import task_runner_for

    runner = task_runner_for(settings)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1


def _tf_worker(tf_config: dict, snapshot_root: Path, epochs: int = 3) -> subprocess.Popen:
    env = clean_env(TF_CONFIG=json.dumps(tf_config), KERAS_BACKEND="tensorflow", PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.tf_config_worker", str(snapshot_root), str(epochs)],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _outcome(worker: subprocess.Popen) -> dict:
    output, _ = worker.communicate(timeout=180)
    assert worker.returncode == 0, output[-3000:]
    return json.loads(output.strip().splitlines()[-1])


def test_tf_config_switches_training_to_multi_worker_mirrored_strategy(tmp_path):
    config = {"cluster": {"worker": [f"127.0.0.1:{free_port()}"]}, "task": {"type": "worker", "index": 0}}
    outcome = _outcome(_tf_worker(config, tmp_path))
    assert "MultiWorkerMirroredStrategy" in outcome["placement"]
    assert outcome["replicas"] == 1 and outcome["epochs_run"] == 3
    assert outcome["val_accuracy"] > 0.5


class MultiWorkerFitUnsupported(Exception):
    """Keras 3's model.fit fails on a dataset distributed across workers."""


@pytest.mark.xfail(
    raises=MultiWorkerFitUnsupported,
    strict=True,
    reason="Keras 3 model.fit cannot consume a multi-worker distributed dataset "
    "(ValueError: Attempt to convert a value (PerReplica...)); keras-team/keras#20585",
)
def test_two_workers_train_together_over_loopback(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = [
        _tf_worker({"cluster": cluster, "task": {"type": "worker", "index": i}}, tmp_path / f"w{i}")
        for i in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=180)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    failed = [output for worker, output in zip(workers, outputs) if worker.returncode != 0]
    if failed and all("PerReplica" in output for output in failed):
        raise MultiWorkerFitUnsupported(failed[0][-500:])
    assert not failed, failed[0][-3000:]
    outcomes = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    assert all(o["replicas"] == 2 and "2 worker(s)" in o["placement"] for o in outcomes)
