from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.settings import LockgateSettings


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
        "import lockgate.settings, lockgate.data, lockgate.packaging, lockgate.samples\n"
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
