"""The production stack as files: docker-compose.yml against the Compose
Specification schema (vendored in infra/compose-spec/, no network and no
Docker engine needed), the Dockerfile, the Kubernetes job template and the CI
workflows. The same programs are started for real in tests/integration/test_stack.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "infra" / "compose-spec" / "compose-spec.json"
SECRETS = ("POSTGRES_PASSWORD", "PREFECT_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD",
           "MLFLOW_SECRET_KEY", "LOCKGATE_API_KEYS")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
PINNED_TAG = re.compile(r"^[a-z0-9./-]+:[0-9][0-9A-Za-z.-]*$")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, enough to render this file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op in ("?", ":?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op in ("-", ":-") else ""

    return VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_specification(compose, validator):
    assert _errors(validator, compose) == []
    rendered = interpolate(compose, {name: "x" * 24 for name in SECRETS})
    assert _errors(validator, rendered) == []


def test_the_validator_really_rejects_a_broken_file(compose, validator):
    broken = json.loads(json.dumps(compose))
    broken["services"]["postgres"]["healthchek"] = {"test": ["CMD", "true"]}
    broken["services"]["worker"]["depends_on"]["mlflow"]["condition"] = "service_ready"
    assert len(_errors(validator, broken)) == 2


def test_the_stack_has_every_server_the_issue_names(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "mlflow", "worker", "bento"}
    assert "--app-name" in (ROOT / "infra" / "mlflow" / "start-mlflow.sh").read_text()
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_env = services["mlflow"]["environment"]
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert mlflow_env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql://")
    assert "prefect worker start" in " ".join(services["worker"]["command"])
    assert services["bento"]["build"]["target"] == "serving"
    assert "serve-champion" in " ".join(services["bento"]["command"])


@pytest.mark.parametrize("secret", SECRETS)
def test_every_secret_is_required_and_has_no_default(compose, secret):
    text = COMPOSE.read_text()
    uses = [m for m in VARIABLE.finditer(text) if m["name"] == secret]
    assert uses, f"{secret} is not used"
    assert all(m["op"] == ":?" for m in uses), f"{secret} must be ${{{secret}:?...}} everywhere"
    others = {name: "x" * 24 for name in SECRETS if name != secret}
    with pytest.raises(KeyError, match=secret):
        interpolate(compose, others)
    with pytest.raises(KeyError, match=secret):
        interpolate(compose, others | {secret: ""})


def test_no_service_carries_a_literal_secret(compose):
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|API_KEYS", key):
                assert "${" in str(value), f"{name}.{key} holds a literal value"


def test_every_image_is_built_in_infra_or_a_pinned_public_image(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            assert PINNED_TAG.match(service["image"]), f"{name}: {service['image']} is not pinned to a version"
            assert ":latest" not in service["image"]
            continue
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file() and dockerfile.parent.relative_to(ROOT).parts[0] == "infra", name
        stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE | re.IGNORECASE)
        assert build["target"] in stages, f"{name}: no stage {build['target']} in {dockerfile}"


def test_the_dockerfile_is_multi_stage_pinned_and_installs_from_the_lock():
    text = (ROOT / "infra" / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.MULTILINE)[1]
    assert PINNED_TAG.match(base), base
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) >= 4
    assert re.search(r"uv pip sync .*requirements\.lock", text)
    for stage in ("prefect-build", "mlflow-build"):
        body = text.split(f"AS {stage}", 1)[1].split("FROM ", 1)[0]
        assert "--constraint requirements.lock" in body, stage
    for runtime in ("prefect-server", "mlflow-server", "pipeline", "serving"):
        body = text.split(f"AS {runtime}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "USER lockgate" in body, f"{runtime} runs as root"
    lock = (ROOT / "requirements.lock").read_text()
    assert "flask-wtf==" in lock, "the MLflow server's basic-auth app needs Flask-WTF from the lock"

def test_the_serving_image_holds_only_a_serve_lock_and_its_command(compose):
    """What tests/services/test_serving_image.py runs is what the image holds."""
    text = (ROOT / "infra" / "Dockerfile").read_text()
    build = text.split("AS serving-build\n", 1)[1].split("\nFROM ", 1)[0]
    assert "ARG SERVE_LOCK=requirements-serve.lock" in build
    assert re.search(r"uv pip sync --python /opt/venv/bin/python serve\.lock", build)
    serving = text.split("AS serving\n", 1)[1]
    assert "COPY --from=serving-build /opt/venv /opt/venv" in serving
    copied = re.findall(r"^COPY (?!--from)(\S+)", serving, flags=re.MULTILINE)
    assert copied == ["infra/serving/serve_champion.py"], copied
    bento = compose["services"]["bento"]
    assert bento["build"]["args"]["SERVE_LOCK"].endswith(":-requirements-serve.lock}")
    assert not {k for k in bento["environment"] if k.startswith(("MLFLOW_", "PREFECT_"))}


def test_services_start_in_order_of_health(compose):
    services = compose["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule == {"condition": "service_healthy"}, f"{name} -> {dependency}"
    assert set(services["worker"]["depends_on"]) == {"prefect-server", "mlflow"}
    assert set(services["prefect-server"]["depends_on"]) == set(services["mlflow"]["depends_on"]) == {"postgres"}


def test_the_kubernetes_job_template_requests_gpus():
    template = json.loads((ROOT / "infra" / "k8s" / "base-job-template.json").read_text())
    manifest = template["job_configuration"]["job_manifest"]
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    variables = template["variables"]["properties"]
    assert variables["gpu_count"]["type"] == "integer" and variables["gpu_count"]["default"] >= 1
    assert "image" in template["variables"]["required"]
    placeholders = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert placeholders <= set(variables), placeholders - set(variables)


def test_the_ci_workflows_run_the_tests_and_retrain_with_a_summary():
    workflows = ROOT / ".github" / "workflows"
    ci = yaml.safe_load((workflows / "ci.yml").read_text())
    retrain = yaml.safe_load((workflows / "retrain.yml").read_text())
    ci_steps = [step for job in ci["jobs"].values() for step in job["steps"]]
    assert any(step.get("run", "") == "bash .ci/run" for step in ci_steps)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    triggers = retrain[True] if True in retrain else retrain["on"]  # YAML 1.1 reads `on` as True
    assert {"workflow_dispatch", "schedule", "push"} <= set(triggers)
    assert any(path.startswith(("data", "lockgate", "tasks", "flows")) for path in triggers["push"]["paths"])
    steps = [step for job in retrain["jobs"].values() for step in job["steps"]]
    assert any("GITHUB_STEP_SUMMARY" in step.get("run", "") for step in steps)
    for step in ci_steps + steps:
        if "uses" in step:
            assert re.search(r"@v\d+(\.\d+)*$", step["uses"]), f"{step['uses']} is not pinned to a version"


# The Kubernetes API's own OpenAPI schemas (kubernetes-validate ships them),
# strict: an unknown field, such as a Job field put in the pod's spec, fails.
KUBERNETES_VERSION = "1.31.0"
TRAINING_JOB = ROOT / "infra" / "k8s" / "training-job.yaml"


def kubernetes_errors(document: dict[str, Any]) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error).splitlines()[0]
    return None


def test_the_kubernetes_validator_really_rejects_a_misplaced_field():
    job = next(d for d in yaml.safe_load_all(TRAINING_JOB.read_text()) if d["kind"] == "Job")
    job["spec"]["template"]["spec"]["parallelism"] = 2
    assert "parallelism" in (kubernetes_errors(job) or "")


def test_the_training_job_template_follows_the_kubernetes_schema():
    documents = list(yaml.safe_load_all(TRAINING_JOB.read_text()))
    assert sorted(d["kind"] for d in documents) == ["Job", "Service"]
    for document in documents:
        assert kubernetes_errors(document) is None, kubernetes_errors(document)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container["env"]}


def test_a_rendered_training_job_is_valid_and_wires_every_rank_to_rank_zero(tmp_path):
    from lockgate.training.kubernetes import render_training_job

    request = tmp_path / "runs" / "abc" / "workers" / "worker-request.json"
    documents = render_training_job(
        TRAINING_JOB.read_text(), "lockgate-train-1a2b3c4d", 4, "registry.example.com/lockgate-pipeline:0.2.0",
        request, tmp_path, "team-workspace", "ml",
    )
    for document in documents:
        assert kubernetes_errors(document) is None, kubernetes_errors(document)
        assert document["metadata"] == {**document["metadata"], "name": "lockgate-train-1a2b3c4d", "namespace": "ml"}
    service = next(d for d in documents if d["kind"] == "Service")
    job = next(d for d in documents if d["kind"] == "Job")
    spec, pod = job["spec"], job["spec"]["template"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    # Pod i of an indexed Job is named <job>-i; the headless Service makes it <pod>.<service>.
    assert service["spec"]["clusterIP"] == "None" and pod["spec"]["subdomain"] == "lockgate-train-1a2b3c4d"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [container] = pod["spec"]["containers"]
    env = _env(container)
    assert env["KERAS_DISTRIBUTION_JOB_ADDRESSES"] == "lockgate-train-1a2b3c4d-0.lockgate-train-1a2b3c4d:1234"
    assert env["KERAS_DISTRIBUTION_NUM_PROCESSES"] == "4" and env["KERAS_BACKEND"] == "jax"
    assert env["KERAS_DISTRIBUTION_PROCESS_ID"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }
    assert {p["containerPort"] for p in container["ports"]} == {1234}
    assert container["command"] == ["python", "-m", "lockgate.training.rank", str(request)]
    assert container["image"] == "registry.example.com/lockgate-pipeline:0.2.0"
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == env["LOCKGATE_HOME"] == str(tmp_path)
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "team-workspace"


def test_a_training_request_outside_the_shared_workspace_is_refused(tmp_path):
    from lockgate.training.kubernetes import render_training_job

    with pytest.raises(ValueError, match="must be in the workspace"):
        render_training_job(TRAINING_JOB.read_text(), "t", 2, "i:1", tmp_path / "elsewhere.json",
                            tmp_path / "workspace", "c", "default")


def test_the_work_pool_job_manifest_with_its_defaults_follows_the_kubernetes_schema():
    template = json.loads((ROOT / "infra" / "k8s" / "base-job-template.json").read_text())
    variables = template["variables"]["properties"]
    values = {name: spec.get("default") for name, spec in variables.items()}
    values |= {"image": "registry.example.com/lockgate-pipeline:0.1.0", "name": "lockgate",
               "command": "prefect flow-run execute", "service_account_name": "lockgate", "labels": {}}

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        whole = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value) if isinstance(value, str) else None
        return values[whole[1]] if whole else value

    manifest = fill(template["job_configuration"]["job_manifest"])
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    # Prefect's worker turns these into the pod's form: env as a list, the command as args.
    container["env"] = [{"name": k, "value": v} for k, v in container["env"].items()]
    container["args"] = container["args"].split()
    assert kubernetes_errors(manifest) is None, kubernetes_errors(manifest)


def test_pods_stopped_by_the_cluster_are_told_from_pods_that_failed_on_their_own():
    from lockgate.training.kubernetes import killed_from_outside

    def pod(name, reason=None, terminated=None):
        status = {"phase": "Failed", **({"reason": reason} if reason else {})}
        if terminated:
            status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": terminated}}]
        return {"metadata": {"name": name}, "status": status}

    pods = {"items": [
        pod("t-0", terminated={"reason": "Error", "exitCode": 1}),
        pod("t-1", terminated={"reason": "OOMKilled", "exitCode": 137}),
        pod("t-2", reason="Evicted"),
        pod("t-3", terminated={"reason": "Error", "exitCode": 143}),
    ]}
    assert killed_from_outside(pods) == ["t-1: OOMKilled (exit 137)", "t-2: Evicted", "t-3: Error (exit 143)"]
    assert killed_from_outside({"items": [pod("t-0", terminated={"reason": "Error", "exitCode": 1})]}) == []
