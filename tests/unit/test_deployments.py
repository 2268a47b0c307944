"""The deployment flow's parameters and `lockgate deploy` without a server.
Registering against a real Prefect server is tested in tests/integration/test_stack.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_run_parameters_are_laid_over_the_settings(settings):
    from flows.deployments import settings_for_run

    run = settings_for_run(epochs=7, min_accuracy=0.6, min_macro_f1=0.55, score_margin=0.05)
    assert run.training.epochs == 7
    assert (run.gate.min_accuracy, run.gate.min_macro_f1, run.gate.score_margin) == (0.6, 0.55, 0.05)
    assert run.training.batch_size == settings.training.batch_size  # the rest is the worker's


def test_out_of_bounds_parameters_are_refused_before_anything_runs():
    from prefect.exceptions import ParameterTypeError

    from flows.deployments import retrain

    for bad in ({"epochs": 0}, {"min_accuracy": 1.5}, {"score_margin": 2.5}, {"data": ""}):
        with pytest.raises(ParameterTypeError):
            retrain.validate_parameters(bad)


def test_deploy_needs_a_prefect_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LOCKGATE_"))}
    env.update(LOCKGATE_HOME=str(tmp_path / "workspace"), PREFECT_HOME=str(tmp_path / "prefect"))
    lockgate = str(Path(sys.executable).with_name("lockgate"))
    done = subprocess.run([lockgate, "deploy"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PREFECT_API_URL" in done.stdout
