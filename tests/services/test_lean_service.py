"""The service process imports what serving needs and nothing of training:
no TensorFlow, Keras, Prefect, MLflow or Great Expectations when the ONNX
export serves. Checked in a fresh interpreter, as a worker starts."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ["tensorflow", "keras", "prefect", "mlflow", "great_expectations", "tf2onnx", "flows", "tasks"]

PROBE = """
import gc, json, sys
from services.service import LockgateService
service = LockgateService()
from bentoml._internal.server.http.traffic import TimeoutMiddleware
print(json.dumps({"runtime": service.spec.meta.runtime.name,
                  "imported": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:])),
                  "gc": gc.get_threshold(), "request_timeout": TimeoutMiddleware.__call__.__module__}))
"""


def test_an_onnx_worker_imports_no_training_stack(digits_champion):
    env = os.environ | {"LOCKGATE_MODEL_TAG": digits_champion.result.package.model_tag}
    done = subprocess.run([sys.executable, "-c", PROBE, *HEAVY], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    # The collector thresholds and the request timeout's timers are set up
    # once the model is loaded (see LockgateService).
    from lockgate.core.settings import ServingSettings

    assert probe == {"runtime": "onnx", "imported": [], "gc": list(ServingSettings().gc_thresholds),
                     "request_timeout": "services.request_timeout"}


def test_the_bento_holds_only_the_serving_code_and_lock(digits_champion):
    import bentoml

    bento = Path(bentoml.get(digits_champion.result.package.bento_tag).path)
    code = sorted(str(p.relative_to(bento / "src")) for p in (bento / "src").rglob("*.py"))
    assert "services/service.py" in code and "lockgate/export/runtimes.py" in code
    assert not [p for p in code if p.startswith(("flows/", "tasks/", "cli/"))], code
    assert not {"lockgate/models/architectures.py", "lockgate/registry/tracking.py", "lockgate/validation/expectations.py", "lockgate/training/fit.py"} & set(code)
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    pinned = {line.split("==")[0] for line in requirements.splitlines() if "==" in line}
    assert {"bentoml", "onnxruntime", "orjson"} <= pinned
    assert not {"tensorflow", "tensorflow-cpu", "keras", "prefect", "mlflow", "great-expectations"} & pinned
    assert json.loads((bento / "src" / "services" / "bento_model.json").read_text())["tag"] == \
        digits_champion.result.package.model_tag


def test_every_lockgate_import_of_the_bento_s_code_is_in_the_bento(digits_champion):
    """The editable install of a checkout would quietly supply a module the
    Bento lacks, so a served check here cannot show one is missing: every
    `lockgate.*`/`services.*` import in the Bento's code (lazy ones included)
    must name a file the Bento holds."""
    import bentoml

    src = Path(bentoml.get(digits_champion.result.package.bento_tag).path) / "src"
    missing = []
    for file in src.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.split(".")[0] not in ("lockgate", "services") or name in KERAS_ONLY:
                    continue
                path = src / Path(*name.split("."))
                if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
                    missing.append(f"{file.relative_to(src)}: {name}")
    assert not missing, missing


# Imported only by the Keras runtime, which Bentos of Keras models carry
# (lockgate/models/); nothing else of training is imported by the serving side.
KERAS_ONLY = {"lockgate.models.architectures"}
