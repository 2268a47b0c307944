"""Training one model on several machines: the indexed Job of
``infra/k8s/training-job.yaml``, rendered for one training and run with
``kubectl``.

The workspace (``LOCKGATE_HOME``) is a volume that the flow's pod and every
training pod mount at the same path, so the request this process writes and
the model rank 0 writes are plain files for both sides.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import yaml

from lockgate.training.distributed import (
    DistributedTrainingError,
    RankLost,
    RankOutcome,
    WorkerRequest,
    prepare_attempt,
    read_outcomes,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "training-job.yaml"
TEMPLATE_NAME = "lockgate-train"
COORDINATOR_PORT = 1234


def render_training_job(
    template: str, name: str, processes: int, image: str, request_path: Path, workspace: Path,
    claim: str, namespace: str,
) -> list[dict[str, Any]]:
    """The template's Service and Job for one training: its own name, one pod
    per process, this image and request, the workspace volume at `workspace`."""
    if not Path(request_path).resolve().is_relative_to(Path(workspace).resolve()):
        raise ValueError(f"the request {request_path} must be in the workspace {workspace}, which every pod mounts")
    documents = [copy.deepcopy(d) for d in yaml.safe_load_all(template) if d]
    kinds = {d["kind"]: d for d in documents}
    if set(kinds) != {"Service", "Job"}:
        raise ValueError(f"the training template must hold one Service and one Job, found {sorted(kinds)}")
    service, job = kinds["Service"], kinds["Job"]
    for document in documents:
        document["metadata"]["name"] = name
        document["metadata"]["namespace"] = namespace
    service["spec"]["selector"] = {"lockgate.io/training": name}
    spec = job["spec"]
    spec["completions"] = spec["parallelism"] = processes
    pod = spec["template"]
    pod["metadata"]["labels"]["lockgate.io/training"] = name
    pod["spec"]["subdomain"] = name
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "trainer"]
    container["image"] = image
    container["command"] = ["python", "-m", "lockgate.training.rank", str(request_path)]
    values = {
        "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes),
        # Pod `index` of an indexed Job is `<job>-<index>`; the Service names it `<pod>.<service>`.
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"{name}-0.{name}:{COORDINATOR_PORT}",
        "LOCKGATE_HOME": str(workspace),
    }
    for variable in container["env"]:
        if variable["name"] in values:
            variable["value"] = values[variable["name"]]
    for mount in container["volumeMounts"]:
        if mount["name"] == "workspace":
            mount["mountPath"] = str(workspace)
    for volume in pod["spec"]["volumes"]:
        if volume["name"] == "workspace":
            volume["persistentVolumeClaim"]["claimName"] = claim
    return documents


def train_on_kubernetes(
    request: WorkerRequest, processes: int, settings: Any, progress: Callable[[str], None] = print,
    timeout_s: float = 3600, kubectl: str = "kubectl",
) -> list[RankOutcome]:
    """Run the training as an indexed Job, wait for every pod, and return the
    ranks' outcomes; a failed pod stops the Job and fails the training with
    its log."""
    if not settings.deploy.image:
        raise DistributedTrainingError("training on Kubernetes needs an image: set LOCKGATE_DEPLOY__IMAGE")
    request_path = prepare_attempt(request, processes, progress)
    out_dir = request_path.parent
    name = f"{TEMPLATE_NAME}-{uuid.uuid4().hex[:8]}"
    documents = render_training_job(
        TEMPLATE.read_text(), name, processes, settings.deploy.image, request_path, settings.home,
        settings.deploy.workspace_claim, settings.deploy.namespace,
    )
    namespace = ["--namespace", settings.deploy.namespace]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})
    _kubectl([kubectl, "apply", *namespace, "-f", "-"], manifest)
    progress(f"started Job {name}: {processes} training pods")
    succeeded = False
    try:
        succeeded = _wait_for_job(kubectl, namespace, name, processes, progress, timeout_s)
    finally:
        # The Service only serves the ranks while they train; a failed Job's pods are stopped.
        kinds = "service" if succeeded else "job,service"
        subprocess.run([kubectl, "delete", *namespace, kinds, name, "--wait=false"], capture_output=True, text=True)
    return read_outcomes(out_dir, processes)


def _wait_for_job(
    kubectl: str, namespace: list[str], name: str, processes: int, progress: Callable[[str], None], timeout_s: float
) -> bool:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        status = json.loads(_kubectl([kubectl, "get", *namespace, "job", name, "-o", "json"])).get("status", {})
        done, failed = status.get("succeeded", 0), status.get("failed", 0)
        if failed:
            logs = subprocess.run(
                [kubectl, "logs", *namespace, "-l", f"job-name={name}", "--tail", "30", "--prefix"],
                capture_output=True, text=True,
            )
            pods = json.loads(_kubectl([kubectl, "get", *namespace, "pods", "-l", f"job-name={name}", "-o", "json"]))
            lost = killed_from_outside(pods)
            error = RankLost if lost else DistributedTrainingError
            raise error(
                f"{failed} training pod(s) of Job {name} failed"
                + (f" ({', '.join(lost)})" if lost else "")
                + f"; their logs:\n{logs.stdout[-4000:]}"
            )
        if done >= processes:
            return True
        now = (status.get("active", 0), done)
        if now != last:
            progress(f"Job {name}: {now[0]} pod(s) training, {done} of {processes} done")
            last = now
        time.sleep(5)
    raise DistributedTrainingError(f"Job {name} did not finish within {timeout_s:.0f} s")


def killed_from_outside(pods: dict[str, Any]) -> list[str]:
    """The pods of a `kubectl get pods -o json` list that were stopped by the
    cluster rather than by their own error: evicted, preempted, killed for
    memory, or ended by SIGKILL/SIGTERM. Worth a retry, which resumes."""
    lost = []
    for pod in pods.get("items", []):
        name, status = pod.get("metadata", {}).get("name", "?"), pod.get("status", {})
        if status.get("reason") in {"Evicted", "Preempted", "Preempting", "Terminated", "NodeLost", "Shutdown"}:
            lost.append(f"{name}: {status['reason']}")
            continue
        for container in status.get("containerStatuses", []):
            ended = container.get("state", {}).get("terminated") or {}
            if ended.get("reason") == "OOMKilled" or ended.get("exitCode") in (137, 143):
                lost.append(f"{name}: {ended.get('reason') or 'killed'} (exit {ended.get('exitCode')})")
    return lost


def _kubectl(command: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise DistributedTrainingError(f"{command[0]} is not installed; training on Kubernetes runs kubectl") from exc
    if done.returncode != 0:
        raise DistributedTrainingError(f"{' '.join(command[:3])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout
