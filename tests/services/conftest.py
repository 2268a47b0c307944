"""Bentos built by the pipeline, served for real with `bentoml serve`."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from lockgate import bento_server
from lockgate.records import DatasetMeta

API_KEY = "test-key-" + uuid.uuid4().hex
OLD_KEY = "rotated-out-" + uuid.uuid4().hex


@dataclass
class Served:
    url: str
    bento_tag: str
    model_name: str
    version: str
    x: np.ndarray  # holdout examples
    expected: np.ndarray  # in-process probabilities for x
    meta: DatasetMeta
    log: Path

    def client(self, key: str | None = API_KEY, headers: dict[str, str] | None = None) -> httpx.Client:
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=sent | (headers or {}), timeout=60)


def start_server(target: str, log: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    env = os.environ | {"LOCKGATE_API_KEYS": f"{API_KEY},{OLD_KEY}"} | (extra_env or {})
    return bento_server.start(target, env, log.open("wb"), timeout=120, cwd=Path(__file__).resolve().parents[2])


def _build_and_serve(data: str, target: str | None, epochs: int, tmp: Path):

    from flows.training import training_pipeline
    from lockgate.data import read_snapshot, split_for
    from lockgate.models import load_keras_model, predict_outputs
    from lockgate.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = epochs
    name = f"svc-{uuid.uuid4().hex[:6]}"
    result = training_pipeline(data=data, target=target, model_name=name, settings=settings)
    assert result.status == "promoted", result.gate
    snapshot = read_snapshot(result.validation.snapshot)
    holdout = split_for(snapshot.y, settings.training)["holdout"]
    x = snapshot.x[holdout]
    model = load_keras_model(settings.runs_dir / result.run_id / "model.keras")
    log = tmp / f"{name}.log"
    process, url = start_server(result.package.bento_tag, log)
    meta = DatasetMeta.model_validate_json((Path(result.validation.snapshot) / "meta.json").read_text())
    served = Served(url, result.package.bento_tag, name, result.registered.version, x, predict_outputs(model, x), meta, log)
    return process, served


@pytest.fixture(scope="session")
def digits_service(prefect_harness, tmp_path_factory):
    process, served = _build_and_serve("digits", None, 8, tmp_path_factory.mktemp("serve-digits"))
    yield served
    bento_server.stop(process)


@pytest.fixture(scope="session")
def wine_service(prefect_harness, tmp_path_factory, wine_csv):
    process, served = _build_and_serve(str(wine_csv), "target", 40, tmp_path_factory.mktemp("serve-wine"))
    yield served
    bento_server.stop(process)
