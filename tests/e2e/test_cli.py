"""End to end, as a user runs it: `lockgate run` in a fresh workspace, then the
packaged Bento served with `bentoml serve` and asked over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from lockgate import bento_server

pytestmark = pytest.mark.e2e

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "PREFECT_", "BENTOML_", "MLFLOW_"))}
    env.update(LOCKGATE_HOME=str(home), COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e") / "workspace"
    report = home.parent / "gate-report.md"
    result = subprocess.run([LOCKGATE, "run", "--report", str(report)], env=_env(home),
                            capture_output=True, text=True, timeout=900)
    return home, result


def test_run_promotes_a_champion_on_the_digits(fresh_run):
    home, result = fresh_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Gate: PROMOTE" in out
    assert "Champion: lockgate-digits version 1" in out
    assert (home / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    report = (home.parent / "gate-report.md").read_text()
    assert "# Gate: PROMOTE" in report and "Registered **lockgate-digits** version **1**" in report
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("lockgate-digits", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.metrics["holdout_accuracy"] >= 0.95
    assert run.info.status == "FINISHED"


def test_the_packaged_bento_answers_over_http(fresh_run):
    home, result = fresh_run
    bento = re.search(r"Bento:\s+(lockgate:\S+)", result.stdout).group(1)
    key = "e2e-key"
    env = _env(home) | {"BENTOML_HOME": str(home / "bentoml"), "LOCKGATE_API_KEYS": key}
    with tempfile.TemporaryFile() as log:
        server, base = bento_server.start(bento, env, log, timeout=120)
    try:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.images[-100:, :, :, None], digits.target[-100:]
        assert httpx.post(f"{base}/predict", json={"instances": x.tolist()}, timeout=30).status_code == 401
        answer = httpx.post(f"{base}/predict", json={"instances": x.tolist()}, timeout=30,
                            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["name"] == "lockgate-digits" and body["model"]["version"] == "1"
        assert np.mean(np.array(body["labels"]).astype(int) == y) >= 0.9
    finally:
        bento_server.stop(server)


def test_bad_file_exits_non_zero_with_the_reason(fresh_run, tmp_path):
    home, _ = fresh_run
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,x\n3,4\n5,6,y,7\n")
    report = tmp_path / "report.md"
    result = subprocess.run([LOCKGATE, "run", "--data", str(bad), "--target", "label", "--report", str(report)],
                            env=_env(home), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "FAILED" in report.read_text() and "not a well-formed table" in report.read_text()
    assert "Validation failed" in result.stdout
    assert "not a well-formed table" in result.stdout
    assert "champion is unchanged" in result.stdout
