"""The compose file's serving image, run as its programs: a fresh environment
holding only requirements-serve.lock (what the Dockerfile's `serving` stage
installs, with the same uv), and its command, infra/serving/serve_champion.py,
serving the champion's Bento from the store. Nothing of the checkout is
importable there: the process starts outside it, and Lockgate is not
installed, so what answers is the Bento's own code on the lean packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

from lockgate.registry import bento_server
from tests.services.conftest import API_KEY, describe

ROOT = Path(__file__).resolve().parents[2]
COMMAND = ROOT / "infra" / "serving" / "serve_champion.py"
TRAINING_STACK = ["tensorflow", "keras", "prefect", "mlflow", "great_expectations", "tf2onnx", "lockgate"]


def image_python(folder: Path, lock: str) -> Path:
    """A virtual environment synced from `lock`, as the image's build stage does."""
    venv = folder / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)
    subprocess.run([uv, "pip", "sync", "--quiet", "--python", str(venv / "bin" / "python"), str(ROOT / lock)],
                   check=True, timeout=600)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def serving_python(tmp_path_factory) -> Path:
    return image_python(tmp_path_factory.mktemp("serving-image"), "requirements-serve.lock")


@pytest.fixture(scope="module")
def keras_serving_python(tmp_path_factory) -> Path:
    """The image built with SERVE_LOCK=requirements-serve-keras.lock."""
    return image_python(tmp_path_factory.mktemp("serving-image-keras"), "requirements-serve-keras.lock")


def image_env(home: Path, **extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ} | {
        "LOCKGATE_HOME": str(home), "BENTOML_HOME": os.environ["BENTOML_HOME"], "BENTOML_DO_NOT_TRACK": "true",
    } | extra


def importable(python: Path, modules: list[str], cwd: Path) -> list[str]:
    """Which of `modules` the environment of `python` can import, asked from outside the checkout."""
    probe = ("import importlib.util, json, sys; "
             "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))")
    done = subprocess.run([str(python), "-c", probe, *modules], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=image_env(cwd))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_serving_environment_has_no_training_stack(serving_python, tmp_path):
    assert importable(serving_python, ["bentoml", "onnxruntime", *TRAINING_STACK], tmp_path) == ["bentoml", "onnxruntime"]


@contextmanager
def serving_image(python: Path, champion, tmp_path: Path) -> Iterator[httpx.Client]:
    """The image's command, with `champion` recorded as the workspace's
    champion; a client that sends the key."""
    home = tmp_path / "workspace"
    home.mkdir()
    (home / "champion.json").write_text(json.dumps({"bento": champion.result.package.bento_tag}))
    port = bento_server.free_port()
    command = [str(python), str(COMMAND), "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "server.log").open("wb+")
    process, url = bento_server.start_command(command, port, image_env(home, LOCKGATE_API_KEYS=API_KEY), log,
                                              timeout=180, cwd=tmp_path, name="serve_champion.py")
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
            yield client
    finally:
        bento_server.stop(process)


def test_the_serving_image_s_command_serves_the_champion_s_bento(serving_python, digits_champion, tmp_path):
    expected = describe(digits_champion)
    with serving_image(serving_python, digits_champion, tmp_path) as client:
        answer = client.post("/predict", json={"instances": expected.x[:64].tolist()})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["probabilities"], expected.expected[:64], atol=1e-5)
        assert answer.json()["model"]["bento_model"] == digits_champion.result.package.model_tag
        assert client.get("/metadata").json()["runtime"]["name"] == "onnx"
        assert httpx.post(f"{client.base_url}/predict", json={"instances": []}, timeout=60).status_code == 401


def test_the_keras_serving_image_serves_a_text_champion(keras_serving_python, text_champion, tmp_path):
    """The image built with the Keras lock has TensorFlow, and still no
    training stack; it serves the text champion on the runtime the champion
    was packaged for (ONNX, now that text models take token ids)."""
    import bentoml

    assert importable(keras_serving_python, TRAINING_STACK, tmp_path) == ["tensorflow", "keras"]
    texts = ["A wonderful, moving film with a superb cast.", "Dull and tedious; the plot was awful."]
    with serving_image(keras_serving_python, text_champion, tmp_path) as client:
        answer = client.post("/predict_text", json={"texts": texts})
        assert answer.status_code == 200, answer.text
        assert answer.json()["labels"] == ["positive", "negative"]
        packaged = bentoml.models.get(text_champion.result.package.model_tag).info.labels["runtime"]
        assert client.get("/metadata").json()["runtime"]["name"] == packaged == "onnx"


def test_without_a_champion_the_command_exits_saying_so(serving_python, tmp_path):
    done = subprocess.run([str(serving_python), str(COMMAND)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=image_env(tmp_path))
    assert done.returncode == 1
    assert "no champion" in done.stderr and str(tmp_path) in done.stderr


def test_a_bento_needing_packages_the_image_lacks_is_refused_by_name(serving_python, tmp_path):
    """A Bento served on Keras pins TensorFlow, which the ONNX image does not have."""
    bento = tmp_path / "bentoml" / "bentos" / "lockgate" / "v9-keras"
    (bento / "env" / "python").mkdir(parents=True)
    (bento / "env" / "python" / "requirements.txt").write_text(
        (ROOT / "requirements-serve-keras.lock").read_text())
    env = image_env(tmp_path) | {"BENTOML_HOME": str(tmp_path / "bentoml")}
    done = subprocess.run([str(serving_python), str(COMMAND), "--bento", "lockgate:v9-keras"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 3, done.stderr
    assert "tensorflow-cpu==2.21.0" in done.stderr and "keras==" in done.stderr
    assert "bentoml==" not in done.stderr  # what the image has is not listed
    assert "SERVE_LOCK=requirements-serve-keras.lock" in done.stderr
