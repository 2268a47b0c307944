from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.core.settings import LockgateSettings


def test_environment_and_yaml(tmp_path, monkeypatch):
    config = tmp_path / "lockgate.yaml"
    config.write_text("gate:\n  min_accuracy: 0.91\ntraining:\n  epochs: 7\n")
    monkeypatch.setenv("LOCKGATE_CONFIG", str(config))
    monkeypatch.setenv("LOCKGATE_TRAINING__EPOCHS", "9")  # environment beats the file
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "ws"))
    settings = LockgateSettings()
    assert settings.gate.min_accuracy == 0.91
    assert settings.training.epochs == 9
    assert settings.home == (tmp_path / "ws").resolve()
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'ws' / 'mlflow' / 'mlflow.db'}"


def test_server_uri_overrides_embedded_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    settings = LockgateSettings()
    assert settings.tracking_uri == "http://127.0.0.1:5999"
    assert settings.artifact_location is None


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("LOCKGATE_GATE__MIN_ACCURACY", "1.5")
    with pytest.raises(ValueError, match="min_accuracy"):
        LockgateSettings()


def test_missing_config_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCKGATE_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        LockgateSettings()


def test_importing_does_nothing(tmp_path):
    """No directories, no tracking URI, no clients at import time."""
    code = (
        "import lockgate.core.settings, lockgate.data.datasets, lockgate.registry.packaging, lockgate.data.samples\n"
        "import tasks.package, flows.training, cli.main, services.runtime\n"
        "import mlflow, os\n"
        "assert not os.path.exists('.lockgate'), 'workspace created at import'\n"
        "assert 'MLFLOW_TRACKING_URI' not in os.environ\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "p"),
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (Path(tmp_path) / ".lockgate").exists()


def test_the_service_s_short_names_are_settings(monkeypatch):
    """LOCKGATE_API_KEYS, LOCKGATE_ALLOW_ANONYMOUS and LOCKGATE_MODEL_TAG, as
    `bentoml serve` passes them, land in `serving`; the nested names win."""
    monkeypatch.setenv("LOCKGATE_API_KEYS", "new, old")
    monkeypatch.setenv("LOCKGATE_ALLOW_ANONYMOUS", "true")
    monkeypatch.setenv("LOCKGATE_MODEL_TAG", "lockgate-digits:v3")
    monkeypatch.setenv("LOCKGATE_SERVING__MAX_BATCH_SIZE", "8")  # merged with them, not replaced
    settings = LockgateSettings()
    assert settings.api_key_list() == ["new", "old"]
    assert settings.serving.allow_anonymous is True and settings.serving.model_tag == "lockgate-digits:v3"
    assert settings.serving.max_batch_size == 8
    monkeypatch.setenv("LOCKGATE_SERVING__API_KEYS", "nested")
    assert LockgateSettings().api_key_list() == ["nested"]
    monkeypatch.setenv("LOCKGATE_ALLOW_ANONYMOUS", "perhaps")
    with pytest.raises(ValueError, match="allow_anonymous"):
        LockgateSettings()


def test_batching_takes_auto_or_a_boolean(monkeypatch):
    assert LockgateSettings().serving.batching == "auto"
    monkeypatch.setenv("LOCKGATE_SERVING__BATCHING", "false")
    assert LockgateSettings().serving.batching is False
    monkeypatch.setenv("LOCKGATE_SERVING__MODEL_CALLS", "sideways")
    with pytest.raises(ValueError, match="model_calls"):
        LockgateSettings()
