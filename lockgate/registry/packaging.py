"""Put a registered model in the Bento store, build a lean Bento around it,
and prove the Bento answers like the in-process model, on the runtime it serves."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lockgate.core.faults import DeterministicFailure
from lockgate.core.records import (
    DatasetMeta,
    EvaluationReport,
    ExportReport,
    RegisteredModel,
    ServedMeta,
    ServedRuntime,
    TrainingResult,
)
from lockgate.data.datasets import read_snapshot
from lockgate.export.runtimes import choose_runtime, runtime_outputs, serve_locks
from lockgate.registry import bento_server
from lockgate.serving.model_card import CARD_FOLDER
from lockgate.serving.requests import requests_for

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "services.service:LockgateService"
# The code a served Bento holds: the service and the part of the library a
# request touches; nothing of training, tracking, validation or orchestration.
# (In a development checkout the editable install would still find a module
# left out here, so tests/services/test_lean_service.py checks that every
# Lockgate import of this code resolves inside the Bento.)
BENTO_CODE = [
    "services/__init__.py", "services/service.py", "services/edge.py", "services/runtime.py",
    "services/batching.py", "services/request_timeout.py", "services/listening.py",
    "services/bento_model.json",
    "lockgate/__init__.py", "lockgate/core/*.py", "lockgate/serving/*.py", "lockgate/export/*.py",
]
# Keras runs only the models no export could serve; they need it and its layers.
KERAS_CODE = ["lockgate/models/*.py"]
# Each runtime's locked requirements, as its format declares them (lockgate.export).
SERVE_LOCKS = serve_locks()


def bento_version(registered: RegisteredModel) -> str:
    return version_label(registered.version, registered.run_id)


def version_label(version: str, run_id: str) -> str:
    """A registered version's Bento version: its number and its run."""
    return f"v{version}-{run_id[:8]}"


def bento_model_folder(model_name: str, version: str, run_id: str) -> Path:
    """The Bento model store's folder of a registered version."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml

    return Path(bentoml.models.get(f"{model_name}:{version_label(version, run_id)}").path)


def store_model(
    registered: RegisteredModel,
    training: TrainingResult,
    evaluation: EvaluationReport,
    snapshot_folder: str,
    data_hash: str,
    exports: ExportReport | None = None,
    runtime: Literal["auto", "keras"] = "auto",
    card: str | None = None,
) -> str:
    """Copy the model, its serving metadata, its model card (the `card`
    folder) and the exports that passed their parity check into the Bento
    model store, with the runtime that will serve it (`runtime="keras"`
    keeps the Keras model whatever passed)."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml

    tag = f"{registered.name}:{bento_version(registered)}"
    try:
        return str(bentoml.models.get(tag).tag)  # already stored by an earlier attempt
    except bentoml.exceptions.NotFound:
        pass
    meta = read_snapshot(snapshot_folder).meta
    shipped = {r.format: f"exports/{Path(r.path).name}" for r in (exports.passed() if exports else []) if r.path}
    served = ServedMeta(
        **meta.model_dump(exclude={"data_hash"}),
        data_hash=data_hash,
        model_name=registered.name,
        model_version=registered.version,
        run_id=registered.run_id,
        metrics={k: round(v, 6) for k, v in evaluation.metrics.items()},
        exports=shipped,
        runtime=choose_runtime(exports, shipped, runtime),
    )
    # What `bentoml models get` shows; the whole record is in lockgate.json.
    shown = {"model_name", "model_version", "run_id", "data_hash", "family", "input_shape", "class_names",
             "feature_columns", "target", "metrics", "exports", "runtime"}
    serving_meta = json.loads(served.model_dump_json(include=shown, exclude_none=True))
    labels = {
        "model_name": registered.name,
        "model_version": registered.version,
        "mlflow_run_id": registered.run_id,
        "data_hash": data_hash[:16],
        "runtime": served.runtime.name,
    }
    with bentoml.models.create(
        tag, labels=labels, metadata=serving_meta
    ) as model:
        shutil.copy(training.model_path, Path(model.path) / "model.keras")
        if evaluation.monitoring_reference and Path(evaluation.monitoring_reference).is_dir():
            # What the service summarises texts against, and the monitor compares traffic with.
            shutil.copytree(evaluation.monitoring_reference, Path(model.path) / Path(evaluation.monitoring_reference).name)
        if card and Path(card).is_dir():  # what GET /model_card answers
            shutil.copytree(card, Path(model.path) / CARD_FOLDER)
        for result in exports.passed() if exports else []:
            if result.path:
                _copy_into(Path(result.path), Path(model.path) / "exports")
        served.write(model.path)
    return tag


def _copy_into(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, folder / source.name)
    else:
        shutil.copy(source, folder / source.name)


def build_bento(registered: RegisteredModel, model_tag: str, data_hash: str) -> str:
    """Build a lean Bento from services/ with the model tag baked in: the
    service's code, and the locked packages of the runtime it serves
    (requirements-serve.lock: no TensorFlow, Prefect, MLflow or Great
    Expectations; Keras models add TensorFlow)."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml

    tag = f"lockgate:{bento_version(registered)}"
    try:
        return str(bentoml.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    runtime = served_runtime(model_tag)
    include = BENTO_CODE + (KERAS_CODE if runtime.name == "keras" else [])
    with tempfile.TemporaryDirectory(prefix="lockgate-bento-") as ctx:
        context = Path(ctx)
        for package in ("services", "lockgate"):
            shutil.copytree(REPO_ROOT / package, context / package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO_ROOT / SERVE_LOCKS[runtime.name], context / "requirements.txt")
        (context / "services" / "bento_model.json").write_text(json.dumps({"tag": model_tag}))
        bento = bentoml.build(
            SERVICE,
            name="lockgate",
            version=bento_version(registered),
            build_ctx=str(context),
            include=include,
            models=[model_tag],
            labels={
                "model_name": registered.name,
                "model_version": registered.version,
                "mlflow_run_id": registered.run_id,
                "data_hash": data_hash[:16],
                "runtime": runtime.name,
            },
            python={"requirements_txt": "requirements.txt", "lock_packages": False},
            description=f"Lockgate service for {registered.name} v{registered.version}, served by {runtime.name}",
        )
    return str(bento.tag)


def bento_size(bento_tag: str) -> int:
    """Bytes of a built Bento on disk: its code and environment, and the
    models it carries (which `bentoml export` puts in the archive)."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml

    bento = bentoml.get(bento_tag)
    folders = [Path(bento.path)] + [Path(bentoml.models.get(m.tag).path) for m in bento.info.models]
    return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())


def served_runtime(model_tag: str) -> "ServedRuntime":
    """The runtime recorded with a Bento model."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml

    return ServedMeta.read(bentoml.models.get(model_tag).path).runtime


def served_model_outputs(model_tag: str, x: np.ndarray) -> np.ndarray:
    """What the Bento model's recorded runtime answers for `x`, in this process:
    the answers its served Bento must give."""
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml

    folder = Path(bentoml.models.get(model_tag).path)
    meta = ServedMeta.read(folder)
    return runtime_outputs(folder, meta, x, warm_up=requests_for(meta).warm_up_input(meta))


def family_request(meta: DatasetMeta, x: "np.ndarray | pd.DataFrame") -> tuple[str, dict]:
    """The route and body a user of this model sends: texts, records or arrays.
    A table is sent as its raw rows (strings and nulls included)."""
    return requests_for(meta).example_request(meta, x)


def served_outputs(answer: dict) -> np.ndarray:
    """Probabilities of a classifier's answer, or a regression's predicted values."""
    if "predictions" in answer:
        return np.asarray(answer["predictions"], dtype="float32")[:, np.newaxis]
    return np.asarray(answer["probabilities"], dtype="float32")


def verify_bento(
    bento_tag: str, meta: DatasetMeta, x: "np.ndarray | pd.DataFrame", expected: np.ndarray, timeout: float = 180.0,
    runtime: str | None = None,
) -> float:
    """Serve the Bento as users will, send it the holdout through the family's
    own endpoint, compare with `expected` (the served runtime's answers in
    process), and check /metadata names `runtime` as the one serving.

    Returns the largest absolute difference of outputs; raises when any
    predicted label differs.
    """
    # deferred: the HTTP client loads only where a served model is called
    import httpx

    key = secrets.token_urlsafe(24)
    env = os.environ | {"LOCKGATE_API_KEYS": key, "LOCKGATE_ALLOW_ANONYMOUS": "false"}
    env.pop("LOCKGATE_MODEL_TAG", None)
    log = tempfile.TemporaryFile()
    try:
        server, base = bento_server.start(bento_tag, env, log, timeout)
    except bento_server.ServerFailed as exc:
        log.close()
        raise DeterministicFailure(str(exc)) from None
    try:
        answers = []
        with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
            served_runtime = client.get("/metadata").json().get("runtime", {}).get("name")
            if runtime is not None and served_runtime != runtime:
                raise DeterministicFailure(f"Bento {bento_tag} serves {served_runtime!r}, not the recorded {runtime!r}")
            for start in range(0, len(x), 256):
                route, body = family_request(meta, x[start : start + 256])
                response = client.post(route, json=body)
                if response.status_code != 200:
                    raise DeterministicFailure(f"Bento {bento_tag} answered {response.status_code}: {response.text[:300]}")
                answers.append(served_outputs(response.json()))
    finally:
        bento_server.stop(server)
        log.close()
    served = np.concatenate(answers)
    disagreements = int((served.argmax(axis=1) != expected.argmax(axis=1)).sum())
    difference = float(np.abs(served - expected).max())
    if disagreements:
        raise DeterministicFailure(
            f"Bento {bento_tag} disagrees with the in-process model on {disagreements} of {len(x)} holdout examples"
        )
    if difference > 1e-3:
        raise DeterministicFailure(f"Bento {bento_tag} probabilities differ by up to {difference:.2e} from the in-process model")
    return difference
