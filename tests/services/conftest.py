"""Bentos built by the pipeline, served for real with `bentoml serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

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
    meta: dict
    log: Path

    def client(self, key: str | None = API_KEY, headers: dict[str, str] | None = None) -> httpx.Client:
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=sent | (headers or {}), timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(target: str, log: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = os.environ | {"LOCKGATE_API_KEYS": f"{API_KEY},{OLD_KEY}"} | (extra_env or {})
    bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
    process = subprocess.Popen(
        [bentoml_cli, "serve", target, "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"bentoml serve not ready after 120 s: {log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _build_and_serve(data: str, target: str | None, epochs: int, tmp: Path):
    import json

    import keras

    from flows.training import training_pipeline
    from lockgate.data import read_snapshot, split_indices
    from lockgate.models import predict_proba
    from lockgate.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = epochs
    name = f"svc-{uuid.uuid4().hex[:6]}"
    result = training_pipeline(data=data, target=target, model_name=name, settings=settings)
    assert result.status == "promoted", result.gate
    snapshot = read_snapshot(result.validation.snapshot)
    t = settings.training
    holdout = split_indices(snapshot.y, t.holdout_fraction, t.validation_fraction, t.seed)["holdout"]
    x = snapshot.x[holdout]
    model = keras.models.load_model(settings.runs_dir / result.run_id / "model.keras")
    log = tmp / f"{name}.log"
    process, url = start_server(result.package.bento_tag, log)
    meta = json.loads((Path(result.validation.snapshot) / "meta.json").read_text())
    served = Served(url, result.package.bento_tag, name, result.registered.version, x, predict_proba(model, x), meta, log)
    return process, served


@pytest.fixture(scope="session")
def digits_service(prefect_harness, tmp_path_factory):
    process, served = _build_and_serve("digits", None, 8, tmp_path_factory.mktemp("serve-digits"))
    yield served
    stop_server(process)


@pytest.fixture(scope="session")
def wine_service(prefect_harness, tmp_path_factory, wine_csv):
    process, served = _build_and_serve(str(wine_csv), "target", 40, tmp_path_factory.mktemp("serve-wine"))
    yield served
    stop_server(process)
