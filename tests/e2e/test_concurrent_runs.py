"""Runs of one model at once, as a team makes them: two `lockgate run`
processes and a run of the retraining deployment, on one workspace, one
tracking store and the workspace's Prefect server, with challengers that all
pass the gate. Exactly one champion comes out, each promotion names the
champion it replaced, and every other version is withdrawn."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
PREFECT = str(Path(sys.executable).with_name("prefect"))
REPO = Path(__file__).resolve().parents[2]
MODEL = "wine-together"
# Every challenger passes: only the order of the runs decides who is champion.
PASS_ANY = {"LOCKGATE_GATE__SCORE_MARGIN": "2.0", "LOCKGATE_GATE__MIN_ACCURACY": "0",
            "LOCKGATE_GATE__MIN_MACRO_F1": "0", "LOCKGATE_VERIFY_BENTO": "false",
            "LOCKGATE_EXPORT__FORMATS": '["saved_model"]', "LOCKGATE_EXPORT__LATENCY_REPEATS": "5"}


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "PREFECT_", "BENTOML_", "MLFLOW_"))}
    return env | {"LOCKGATE_HOME": str(home), "COLUMNS": "200"} | PASS_ANY | extra


def _run(home: Path, csv: Path, epochs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [LOCKGATE, "run", "--data", str(csv), "--target", "target", "--model-name", MODEL, "--epochs", str(epochs)],
        env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, wine_csv):
    """A workspace with a first champion (v1), its Prefect server up, the
    retraining deployments on it (`lockgate deploy`) and a process worker."""
    home = tmp_path_factory.mktemp("together") / "workspace"
    first = _run(home, wine_csv, 2)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0 and "Champion: " in out, out[-3000:]
    url = json.loads((home / "prefect-server.json").read_text())["url"]
    deployed = subprocess.run([LOCKGATE, "deploy", "--pool", "together"], env=_env(home, PREFECT_API_URL=url),
                              capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    log = open(home.parent / "worker.log", "wb")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "together", "--type", "process"],
        cwd=REPO, env=_env(home, PREFECT_API_URL=url, PREFECT_WORKER_QUERY_SECONDS="1"),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield home, url
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=5)
            except subprocess.TimeoutExpired:  # a worker mid-poll can ignore TERM for long
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=20)
            log.close()
        finally:  # the workspace's Prefect server never outlives the test
            subprocess.run([LOCKGATE, "server", "stop"], env=_env(home), timeout=120, capture_output=True)


def _trigger_deployment(home: Path, url: str, csv: Path, epochs: int) -> str:
    """`prefect deployment run` as CI or the UI would; returns the flow run id."""
    parameters = {"data": str(csv), "target": "target", "model_name": MODEL, "epochs": epochs,
                  "min_accuracy": 0.0, "min_macro_f1": 0.0, "score_margin": 2.0}
    command = [PREFECT, "deployment", "run", "lockgate-retrain/on-demand", "--params", json.dumps(parameters)]
    started = subprocess.run(command, env=_env(home, PREFECT_API_URL=url), capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    return next(line.split()[-1] for line in started.stdout.splitlines() if "UUID" in line)


def _wait_for_flow_run(url: str, flow_run_id: str, timeout: float = 900):
    from prefect.client.orchestration import SyncPrefectClient

    deadline = time.monotonic() + timeout
    with SyncPrefectClient(url) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if (run.state and run.state.is_final()) or time.monotonic() > deadline:
                return run
            time.sleep(2)


def test_two_runs_and_a_deployment_run_at_once_leave_one_champion(workspace, wine_csv):
    import mlflow

    home, url = workspace
    flow_run_id = _trigger_deployment(home, url, wine_csv, 7)
    runs = [_run(home, wine_csv, 6), _run(home, wine_csv, 8)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    deployed = _wait_for_flow_run(url, flow_run_id)

    for run, out in zip(runs, outputs):
        assert run.returncode == 0, out[-4000:]
        assert "champion is unchanged" not in out, out[-4000:]
        assert "Traceback" not in out.split("Summary")[-1], out[-4000:]
    assert deployed.state.is_completed(), deployed.state

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert sorted(versions, key=int) == ["1", "2", "3", "4"], versions.keys()
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    # The champion's record names the champion it replaced, and so on back to
    # the first: one chain, each link judged against the one before it.
    chain, current = [], champion
    while current != "none":
        chain.append(current)
        tags = versions[current].tags
        assert tags.get("bento_tag") and tags["gate"].startswith("PROMOTE"), (current, tags)
        current = tags["replaced"]
    assert chain[-1] == "1"
    for version in set(versions) - set(chain):  # judged again after the champion moved, and rejected
        assert versions[version].tags["lockgate.status"].startswith("rejected"), versions[version].tags
    for link, replaced in zip(chain, chain[1:]):
        if link != "1":
            assert f"champion v{replaced}" in versions[link].tags["gate"], versions[link].tags["gate"]
    pointer = json.loads((home / "champion.json").read_text())
    assert pointer["model_name"] == MODEL and pointer["version"] == champion
    assert pointer["bento"] == versions[champion].tags["bento_tag"]
    # Each CLI run says what happened to its own version, as the registry has it.
    for out in outputs:
        promoted = re.search(rf"Champion: {MODEL} version (\d+) \(MLflow run \w+\), replacing version (\d+)", out)
        withdrawn = re.search(r"Version (\d+) was registered, then rejected", out)
        assert promoted or withdrawn, out[-3000:]
        if promoted:
            assert versions[promoted.group(1)].tags["replaced"] == promoted.group(2)
        else:
            assert versions[withdrawn.group(1)].tags["lockgate.status"].startswith("rejected")
