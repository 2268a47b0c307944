"""The workspace's MLflow store under concurrent first use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each process imports MLflow, then waits for the same instant, so all of them
# open the brand-new store together, as runs started at once on a fresh
# workspace do.
CONNECT = """
import sys, time
import mlflow  # noqa: F401  (imported before the start line, so the race is on the store, not the import)
from lockgate.core.settings import LockgateSettings
from lockgate.registry.tracking import connect
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
print(connect(LockgateSettings(home=sys.argv[2])))
"""


def test_runs_started_at_once_on_a_fresh_workspace_share_one_store(tmp_path):
    """Three processes opening a store that does not exist yet: MLflow's
    schema migrations raced ('duplicate column name', 'table _alembic_tmp_...
    already exists') and every run failed; one of them now migrates it while
    the others wait, and all get the same experiment."""
    home = tmp_path / "workspace"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "GIT_PYTHON_REFRESH": "quiet"}
    start = time.time() + 12  # after every process has imported MLflow
    processes = [
        subprocess.Popen([sys.executable, "-c", CONNECT, str(start), str(home)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=180) for p in processes]
    failures = [err[-1500:] for p, (_, err) in zip(processes, results) if p.returncode != 0]
    assert not failures, failures
    assert len({out.strip().splitlines()[-1] for out, _ in results}) == 1
