"""Put a registered model in the Bento store, build a Bento around it, and
prove the Bento answers like the in-process model."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lockgate.data import read_snapshot
from lockgate.families import family_for
from lockgate.faults import DeterministicFailure
from lockgate.records import (
    DatasetMeta,
    EvaluationReport,
    ExportReport,
    RegisteredModel,
    ServedMeta,
    TrainingResult,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE = "services.service:LockgateService"


def bento_version(registered: RegisteredModel) -> str:
    return f"v{registered.version}-{registered.run_id[:8]}"


def store_model(
    registered: RegisteredModel,
    training: TrainingResult,
    evaluation: EvaluationReport,
    snapshot_folder: str,
    data_hash: str,
    exports: ExportReport | None = None,
) -> str:
    """Copy the model, its serving metadata and the exports that passed their
    parity check into the Bento model store."""
    import bentoml

    tag = f"{registered.name}:{bento_version(registered)}"
    try:
        return str(bentoml.models.get(tag).tag)  # already stored by an earlier attempt
    except bentoml.exceptions.NotFound:
        pass
    meta = read_snapshot(snapshot_folder).meta
    served = ServedMeta(
        **meta.model_dump(exclude={"data_hash"}),
        data_hash=data_hash,
        model_name=registered.name,
        model_version=registered.version,
        run_id=registered.run_id,
        metrics={k: round(v, 6) for k, v in evaluation.metrics.items()},
        exports={r.format: f"exports/{Path(r.path).name}" for r in (exports.passed() if exports else []) if r.path},
    )
    # What `bentoml models get` shows; the whole record is in lockgate.json.
    shown = {"model_name", "model_version", "run_id", "data_hash", "family", "input_shape", "class_names",
             "feature_columns", "target", "metrics", "exports"}
    serving_meta = json.loads(served.model_dump_json(include=shown, exclude_none=True))
    labels = {
        "model_name": registered.name,
        "model_version": registered.version,
        "mlflow_run_id": registered.run_id,
        "data_hash": data_hash[:16],
    }
    with bentoml.models.create(
        tag, labels=labels, metadata=serving_meta
    ) as model:
        shutil.copy(training.model_path, Path(model.path) / "model.keras")
        for result in exports.passed() if exports else []:
            if result.path:
                _copy_into(Path(result.path), Path(model.path) / "exports")
        (Path(model.path) / "lockgate.json").write_text(served.model_dump_json(indent=2))
    return tag


def _copy_into(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, folder / source.name)
    else:
        shutil.copy(source, folder / source.name)


def build_bento(registered: RegisteredModel, model_tag: str, data_hash: str) -> str:
    """Build a Bento from services/ with the model tag baked in."""
    import bentoml

    tag = f"lockgate:{bento_version(registered)}"
    try:
        return str(bentoml.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="lockgate-bento-") as ctx:
        context = Path(ctx)
        for package in ("services", "lockgate"):
            shutil.copytree(REPO_ROOT / package, context / package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO_ROOT / "requirements.lock", context / "requirements.txt")
        (context / "services" / "bento_model.json").write_text(json.dumps({"tag": model_tag}))
        bento = bentoml.build(
            SERVICE,
            name="lockgate",
            version=bento_version(registered),
            build_ctx=str(context),
            include=["services/**/*.py", "services/bento_model.json", "lockgate/**/*.py"],
            models=[model_tag],
            labels={
                "model_name": registered.name,
                "model_version": registered.version,
                "mlflow_run_id": registered.run_id,
                "data_hash": data_hash[:16],
            },
            python={"requirements_txt": "requirements.txt", "lock_packages": False},
            description=f"Lockgate service for {registered.name} v{registered.version}",
        )
    return str(bento.tag)


def family_request(meta: DatasetMeta, x: "np.ndarray | pd.DataFrame") -> tuple[str, dict]:
    """The route and body a user of this family sends: texts, records or arrays.
    A table is sent as its raw rows (strings and nulls included)."""
    return family_for(meta.family).example_request(meta, x)


def served_outputs(answer: dict) -> np.ndarray:
    """Probabilities of a classifier's answer, or a regression's predicted values."""
    if "predictions" in answer:
        return np.asarray(answer["predictions"], dtype="float32")[:, np.newaxis]
    return np.asarray(answer["probabilities"], dtype="float32")


def verify_bento(bento_tag: str, meta: DatasetMeta, x: "np.ndarray | pd.DataFrame", expected: np.ndarray, timeout: float = 180.0) -> float:
    """Serve the Bento as users will, send it the holdout through the family's
    own endpoint, compare with `expected`.

    Returns the largest absolute difference of outputs; raises when any
    predicted label differs.
    """
    import httpx

    from lockgate import bento_server

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
