"""The production stack, started for real: PostgreSQL, a Prefect server and an
MLflow tracking server (basic auth, served artifacts) on it, `lockgate
deploy`, and a process worker that runs the on-demand deployment. Everything
is checked through the servers' own HTTP APIs.

The MLflow outage tests stop the real tracking server during a run: a short
outage during the first run's training is survived by the retries; one that
starts once a later run's version is registered and outlasts the retry budget
fails that run cleanly, with the champion (alias and pointer file) unchanged.

The worker's runs keep one SavedModel export and skip the served-Bento check:
this module is about the servers, and tests/e2e covers both steps.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.integration.stack import (
    REPO_ROOT,
    MlflowCredentials,
    Postgres,
    Program,
    clean_env,
    free_port,
    http_ok,
    make_root,
    mlflow_server,
    prefect_server,
    prefect_worker,
    remove_root,
    wait_until,
)


LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "lockgate-stack-test"
CRON = "17 4 * * 2"  # distinctive, so the test knows it came from settings
TIMEZONE = "Europe/Paris"
# Tiny training that still passes a lowered gate.
RUN_PARAMETERS = {"data": "digits", "epochs": 4, "min_accuracy": 0.5, "min_macro_f1": 0.5}
RUN_TIMEOUT = 600.0


@dataclass
class Stack:
    root: Path
    postgres: Postgres
    prefect: Program
    prefect_api: str
    mlflow: Program
    mlflow_url: str
    credentials: MlflowCredentials

    @property
    def auth(self) -> tuple[str, str]:
        return self.credentials.username, self.credentials.password

    def client_env(self, home: Path) -> dict[str, str]:
        """What a worker or `lockgate` command on a team's machine would have."""
        return clean_env(
            PREFECT_API_URL=self.prefect_api,
            PREFECT_HOME=str(home / "prefect"),
            MLFLOW_TRACKING_URI=self.mlflow_url,
            MLFLOW_TRACKING_USERNAME=self.credentials.username,
            MLFLOW_TRACKING_PASSWORD=self.credentials.password,
            LOCKGATE_HOME=str(home / "workspace"),
            BENTOML_HOME=str(home / "bentoml"),
        )

    def mlflow_healthy(self) -> bool:
        return http_ok(f"{self.mlflow_url}/health")

    def restart_mlflow(self) -> None:
        self.mlflow.start()
        wait_until(self.mlflow_healthy, 180, "MLflow server healthy again", self.mlflow)


class MlflowApi:
    """The tracking server's REST API, as any client sees it."""

    def __init__(self, stack: Stack) -> None:
        self.base, self.auth = f"{stack.mlflow_url}/api/2.0/mlflow", stack.auth

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.base}/{path}", params=params, auth=self.auth, timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.base}/{path}", json=body, auth=self.auth, timeout=60)

    def versions(self, name: str) -> list[dict[str, Any]]:
        response = self.get("model-versions/search", filter=f"name = '{name}'")
        response.raise_for_status()
        return response.json().get("model_versions", [])

    def champion(self, name: str) -> dict[str, Any] | None:
        response = self.get("registered-models/alias", name=name, alias="champion")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()["model_version"]

    def newest_run_tags(self, model_name: str) -> dict[str, str]:
        runs = sorted(self.runs(model_name), key=lambda run: int(run["info"]["start_time"]))
        return {tag["key"]: tag["value"] for tag in runs[-1]["data"].get("tags", [])} if runs else {}

    def runs(self, model_name: str) -> list[dict[str, Any]]:
        experiment = self.get("experiments/get-by-name", experiment_name="lockgate")
        if experiment.status_code == 404:
            return []
        experiment.raise_for_status()
        body = {
            "experiment_ids": [experiment.json()["experiment"]["experiment_id"]],
            "filter": f"tags.`lockgate.model_name` = '{model_name}'",
        }
        response = self.post("runs/search", body)
        response.raise_for_status()
        return response.json().get("runs", [])


@contextmanager
def prefect_client(stack: Stack) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api}):
        with get_client(sync_client=True) as client:
            yield client


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = make_root("lockgate-stack-")
    postgres = Postgres(root / "postgres")
    programs: list[Program] = []
    try:
        postgres.start()
        for database in ("prefect", "mlflow", "mlflow_auth"):
            postgres.create_database(database)
        prefect, prefect_api = prefect_server(root, postgres.url("prefect", "postgresql+asyncpg"))
        credentials = MlflowCredentials("lockgate-admin", secrets.token_urlsafe(18))
        mlflow_port = free_port()
        mlflow = mlflow_server(root, postgres, credentials, mlflow_port)
        programs += [prefect.start(), mlflow.start()]
        built = Stack(root, postgres, prefect, prefect_api, mlflow, f"http://127.0.0.1:{mlflow_port}", credentials)
        wait_until(lambda: http_ok(f"{prefect_api}/health"), 180, "Prefect server healthy", prefect)
        wait_until(built.mlflow_healthy, 180, "MLflow server healthy", mlflow)
        yield built
    finally:
        for program in reversed(programs):
            program.stop()
        postgres.stop()
        if not os.environ.get("STACK_TEST_KEEP_LOGS"):  # keep the logs to debug a failure
            remove_root(root)


@pytest.fixture(scope="module")
def deployed(stack: Stack) -> subprocess.CompletedProcess:
    env = stack.client_env(stack.root / "deployer") | {
        "LOCKGATE_DEPLOY__WORK_POOL": POOL,
        "LOCKGATE_DEPLOY__SCHEDULE_CRON": CRON,
        "LOCKGATE_DEPLOY__SCHEDULE_TIMEZONE": TIMEZONE,
    }
    done = subprocess.run([LOCKGATE, "deploy"], env=env, capture_output=True, text=True, timeout=300, cwd=stack.root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def worker(stack: Stack, deployed) -> Iterator[Program]:
    env = stack.client_env(stack.root / "worker") | {
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "LOCKGATE_EXPORT__FORMATS": '["saved_model"]',
        "LOCKGATE_VERIFY_BENTO": "false",
    }
    program = prefect_worker(stack.root, POOL, env).start()

    def worker_online() -> bool:
        with prefect_client(stack) as client:
            return bool(client.read_workers_for_work_pool(POOL))

    try:
        wait_until(worker_online, 120, "the worker polls its pool", program)
        yield program
    finally:
        program.stop()


def run_on_demand(stack: Stack, parameters: dict[str, Any], job_variables: dict[str, Any] | None = None) -> Any:
    """Create a flow run of the on-demand deployment through the API; wait until it ends."""
    with prefect_client(stack) as client:
        deployment = client.read_deployment_by_name("lockgate-retrain/on-demand")
        flow_run = client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters, job_variables=job_variables or {}
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            flow_run = client.read_flow_run(flow_run.id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            assert time.monotonic() < deadline, f"flow run still {flow_run.state} after {RUN_TIMEOUT:.0f}s"
            time.sleep(2)


def describe(stack: Stack, worker: Program, flow_run: Any) -> str:
    return f"{flow_run.state}\n--- worker log ---\n{worker.log_tail(6000)}"


@pytest.fixture(scope="module")
def first_run(stack: Stack, worker: Program) -> tuple[str, Any]:
    """The first on-demand run of a new model. The tracking server is stopped as
    soon as the run has opened its MLflow run (training is next, registration
    far off) and started again: a short outage the retries must survive."""
    name = f"stack-{uuid.uuid4().hex[:6]}"
    api = MlflowApi(stack)
    outage = _stop_mlflow_once(stack, lambda: len(api.runs(name)) > 0, "the pipeline opens its run", restart=True)
    flow_run = run_on_demand(stack, RUN_PARAMETERS | {"model_name": name})
    outage.join(timeout=300)
    assert not outage.is_alive()
    assert "Shutting down" in stack.mlflow.log_tail(200_000), "the server really went down during the run"
    assert flow_run.state.is_completed(), describe(stack, worker, flow_run)
    return name, flow_run


def test_deploy_registers_the_scheduled_deployment_with_the_cron_from_settings(stack, deployed):
    assert "lockgate-retrain/scheduled" in deployed.stdout
    with prefect_client(stack) as client:
        scheduled = client.read_deployment_by_name("lockgate-retrain/scheduled")
        on_demand = client.read_deployment_by_name("lockgate-retrain/on-demand")
    assert scheduled.work_pool_name == on_demand.work_pool_name == POOL
    [schedule] = scheduled.schedules
    assert schedule.active
    assert schedule.schedule.cron == CRON and schedule.schedule.timezone == TIMEZONE
    assert scheduled.parameters["data"] == "digits"
    assert on_demand.schedules == []


def test_the_scheduler_plans_runs_at_the_cron_times(stack, deployed):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    def planned() -> list:
        with prefect_client(stack) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["scheduled"]))
            )

    wait_until(lambda: len(planned()) > 0, 90, "the scheduler plans runs of the scheduled deployment")
    from zoneinfo import ZoneInfo

    for run in planned():
        local = run.expected_start_time.astimezone(ZoneInfo(TIMEZONE))
        assert run.state.is_scheduled()
        assert (local.weekday(), local.hour, local.minute) == (1, 4, 17)


def test_the_run_form_parameters_are_typed_bounded_and_enforced(stack, deployed):
    with prefect_client(stack) as client:
        deployment = client.read_deployment_by_name("lockgate-retrain/on-demand")
        schema = deployment.parameter_openapi_schema["properties"]
        assert schema["epochs"]["type"] == "integer"
        assert (schema["epochs"]["minimum"], schema["epochs"]["maximum"]) == (1, 1000)
        # An optional floor: a number up to 1, or null (the default: no floor).
        floor = schema["min_accuracy"]
        number = next(option for option in floor["anyOf"] if option.get("type") == "number")
        assert number["maximum"] == 1.0 and {"type": "null"} in floor["anyOf"] and floor.get("default") is None
        assert "holdout accuracy" in floor["description"]
        assert deployment.enforce_parameter_schema
        from prefect.exceptions import PrefectHTTPStatusError

        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment.id, parameters={"epochs": 0})
    assert refused.value.response.status_code in (409, 422)


def test_a_kubernetes_pool_accepts_the_gpu_job_template(stack):
    template = REPO_ROOT / "infra" / "k8s" / "base-job-template.json"
    env = stack.client_env(stack.root / "k8s")
    done = subprocess.run(
        [PREFECT, "--no-prompt", "work-pool", "create", "lockgate-k8s", "--type", "kubernetes",
         "--base-job-template", str(template)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with prefect_client(stack) as client:
        pool = client.read_work_pool("lockgate-k8s")
    assert pool.type == "kubernetes"
    assert pool.base_job_template == json.loads(template.read_text())


def test_on_demand_run_registers_a_tagged_version_and_sets_the_champion(stack, first_run):
    name, flow_run = first_run
    api = MlflowApi(stack)
    [version] = api.versions(name)
    tags = {tag["key"]: tag["value"] for tag in version["tags"]}
    assert {"data_hash", "dataset", "validation", "gate", "config_hash", "code_version", "run_id",
            "bento_tag", "bento_model"} <= set(tags)
    assert tags["dataset"] == "digits" and tags["gate"].startswith("PROMOTE")
    assert str(version["version"]) == "1" and version["status"] == "READY"
    champion = api.champion(name)
    assert champion is not None and str(champion["version"]) == "1"
    [run] = api.runs(name)
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["training.epochs"] == "4", "the run form's epochs reached the training step"
    # Artifacts went over HTTP to the server's own store, not to a client path.
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")


def test_the_tracking_server_refuses_anonymous_clients(stack):
    response = httpx.get(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search", params={"max_results": 1})
    assert response.status_code == 401


def _stop_mlflow_once(stack: Stack, ready: Callable[[], bool], what: str, restart: bool) -> threading.Thread:
    """Stop the tracking server as soon as `ready()` holds; start it again if asked."""

    def outage() -> None:
        wait_until(ready, RUN_TIMEOUT, what)
        stack.mlflow.stop()
        if restart:
            stack.restart_mlflow()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def _pointer(stack: Stack) -> dict[str, str] | None:
    """The champion pointer file (champion.json) of the worker's workspace."""
    path = stack.root / "worker" / "workspace" / "champion.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_a_short_mlflow_outage_during_training_is_survived(stack, first_run):
    """The first run lived through the outage (see `first_run`): one MLflow run,
    one version, registered whole and promoted."""
    name, _ = first_run
    api = MlflowApi(stack)
    assert len(api.runs(name)) == 1, "a retried step must not open a second MLflow run"
    [version] = api.versions(name)
    assert version["status"] == "READY"
    assert {tag["key"] for tag in version["tags"]} >= {"data_hash", "gate", "bento_tag"}
    assert str(api.champion(name)["version"]) == str(version["version"]) == "1"
    assert _pointer(stack) == {"model_name": name, "version": "1", "bento_model": _tag(version, "bento_model"),
                               "bento": _tag(version, "bento_tag")}


def _tag(version: dict[str, Any], key: str) -> str:
    return {tag["key"]: tag["value"] for tag in version["tags"]}[key]


def test_an_mlflow_outage_after_registration_fails_cleanly(stack, worker, first_run):
    """The server goes down once the new version exists, before promotion, and
    stays down longer than the retries: the run fails, the champion stays."""
    name, _ = first_run
    api = MlflowApi(stack)
    runs_before, versions_before = len(api.runs(name)), len(api.versions(name))
    champion_before, pointer_before = api.champion(name)["version"], _pointer(stack)
    assert pointer_before is not None and pointer_before["model_name"] == name
    outage = _stop_mlflow_once(stack, lambda: len(api.versions(name)) > versions_before, "a version is registered",
                               restart=False)
    # No client-side HTTP retries for this run: only the pipeline's own retry
    # budget (seconds) stands against an outage that lasts until the run ends.
    flow_run = run_on_demand(
        stack, RUN_PARAMETERS | {"model_name": name, "score_margin": 2.0},
        {"env": {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}},
    )
    outage.join(timeout=60)
    assert not outage.is_alive(), "the run ended before it registered a version"
    assert not stack.mlflow.running, "the tracking server was down while the run ended"
    stack.restart_mlflow()
    assert flow_run.state.is_failed(), describe(stack, worker, flow_run)
    versions = api.versions(name)
    assert len(versions) == versions_before + 1, "the outage began after registration"
    newest = max(versions, key=lambda v: int(v["version"]))
    assert str(api.champion(name)["version"]) == str(champion_before) != str(newest["version"])
    assert _pointer(stack) == pointer_before, "the pointer file still names the old champion"
    assert len(api.runs(name)) == runs_before + 1
