"""Bentos built by the pipeline, served two ways.

`digits_service` is the real thing, `bentoml serve` of the built Bento on
127.0.0.1, started once per session: for what only the real server shows (its
processes, metrics, logs, key handling end to end, concurrency). `in_process(...)`
serves the same service class as an ASGI app from a thread of the test
process, with its middleware and lifespan, for what is about the service's
own code (validation, answers): no cold start of a server process.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from lockgate.core.records import DatasetMeta
from lockgate.registry import bento_server
from lockgate.serving.requests import requests_for
from tests.pipelines import Champion

API_KEY = "test-key-" + uuid.uuid4().hex
OLD_KEY = "rotated-out-" + uuid.uuid4().hex


@dataclass
class Served:
    url: str
    bento_tag: str
    model_tag: str
    model_name: str
    version: str
    run_id: str
    x: np.ndarray  # holdout examples
    expected: np.ndarray  # in-process probabilities for x
    meta: DatasetMeta
    model_file: Path
    log: Path | None
    raw: pd.DataFrame | None = None  # a table's holdout rows as users send them
    process: subprocess.Popen | None = None  # `bentoml serve`, where it is served for real

    def records(self, rows: int | None = None) -> list[dict]:
        """Holdout rows as the packaging step sends them: strings, numbers and nulls."""
        assert self.raw is not None, "not a table model"
        frame = self.raw.head(rows) if rows else self.raw
        return requests_for(self.meta).example_request(self.meta, frame)[1]["records"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        from lockgate.models.architectures import load_keras_model, predict_outputs

        return predict_outputs(load_keras_model(self.model_file), x)

    def client(self, key: str | None = API_KEY, headers: dict[str, str] | None = None) -> httpx.Client:
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=sent | (headers or {}), timeout=60)


def start_server(target: str, log: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    env = os.environ | {"LOCKGATE_API_KEYS": f"{API_KEY},{OLD_KEY}"} | (extra_env or {})
    return bento_server.start(target, env, log.open("wb"), timeout=120, cwd=Path(__file__).resolve().parents[2])


def describe(champion: Champion, url: str = "", log: Path | None = None) -> Served:
    """The champion's holdout and what the model in process answers for it."""
    from lockgate.data.datasets import read_snapshot, split_for
    from lockgate.models.architectures import load_keras_model, predict_outputs

    result = champion.result
    snapshot = read_snapshot(result.validation.snapshot)
    holdout = split_for(snapshot.y, champion.settings.training)["holdout"]
    x = snapshot.x[holdout]
    model_file = champion.settings.runs_dir / result.run_id / "model.keras"
    return Served(url, result.package.bento_tag, result.package.model_tag, champion.name, result.registered.version,
                  result.run_id, x, predict_outputs(load_keras_model(model_file), x), snapshot.meta, model_file, log,
                  snapshot.raw_rows(holdout))


@functools.cache
def _service_app():
    """One ASGI app per process: BentoML registers its request metrics once per
    app, and each new server's lifespan makes a new service instance, which
    reads the model tag from settings."""
    from services.service import LockgateService

    return LockgateService.to_asgi()


@contextmanager
def in_process(model_tag: str, key: str | None = API_KEY) -> Iterator[httpx.Client]:
    """The service for `model_tag` as an ASGI app in this process, with its
    middleware and lifespan (which loads the model), on a loopback port; and
    an HTTP client for it that sends `key`."""
    import threading

    import uvicorn

    from lockgate.core.settings import reset_settings

    saved = {k: os.environ.get(k) for k in ("LOCKGATE_MODEL_TAG", "LOCKGATE_API_KEYS")}
    os.environ.update(LOCKGATE_MODEL_TAG=model_tag, LOCKGATE_API_KEYS=f"{API_KEY},{OLD_KEY}")
    reset_settings()  # the service reads the model tag and the keys from settings
    port = bento_server.free_port()
    config = uvicorn.Config(_service_app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"in-process {model_tag}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"the service for {model_tag} did not start"
            time.sleep(0.05)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings()


@contextmanager
def lockgate_serve(bento_tag: str, log: Path) -> Iterator[httpx.Client]:
    """`lockgate serve --bento TAG` as a user runs it, on a loopback port; an
    HTTP client for it that sends the key."""
    import sys

    port = bento_server.free_port()
    command = [str(Path(sys.executable).with_name("lockgate")), "serve", "--bento", bento_tag, "--port", str(port)]
    env = os.environ | {"LOCKGATE_API_KEYS": API_KEY}
    process, url = bento_server.start_command(command, port, env, log.open("wb"), timeout=180, name=" ".join(command[1:4]))
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
            yield client
    finally:
        bento_server.stop(process)


@pytest.fixture(scope="session")
def digits_service(digits_champion, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-digits") / "server.log"
    process, url = start_server(digits_champion.result.package.bento_tag, log)
    served = describe(digits_champion, url, log)
    served.process = process
    yield served
    bento_server.stop(process)


@pytest.fixture(scope="session")
def wine_model(wine_champion) -> Served:
    return describe(wine_champion)
