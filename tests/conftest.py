"""Every tool gets a throwaway home: one workspace per test session.

The environment is set in `pytest_configure`, before any test module imports
Prefect, MLflow or BentoML (they read their homes when first used).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import pytest

SESSION_HOME = Path(tempfile.mkdtemp(prefix="lockgate-tests-"))
TESTS = Path(__file__).resolve().parent
# Promoted once per session (per worker under xdist) and shared across modules.
SHARED_CHAMPIONS = {"digits_champion", "wine_champion", "text_champion"}


def pytest_configure(config: pytest.Config) -> None:
    for key in list(os.environ):
        if key.startswith("LOCKGATE_") or key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "BENTOML_HOME"):
            del os.environ[key]
    os.environ["LOCKGATE_HOME"] = str(SESSION_HOME / "workspace")
    os.environ["PREFECT_HOME"] = str(SESSION_HOME / "prefect")
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
    from lockgate.core.settings import apply_environment, get_settings, reset_settings

    reset_settings()
    apply_environment(get_settings())


def pytest_itemcollected(item: pytest.Item) -> None:
    """The tier is the directory: tests/flows/... is marked `flows`. Under
    xdist (`make test`), a module's tests stay on one worker, so its module
    fixtures (a stack of servers, a trained model) start once; and every test
    of a shared champion goes to the same worker, which promotes it once.
    (Marked as each item is collected: xdist reads the groups in its own
    collection hook.)"""
    tier = Path(item.path).resolve().relative_to(TESTS).parts[0]
    item.add_marker(getattr(pytest.mark, tier))
    shared = SHARED_CHAMPIONS & set(getattr(item, "fixturenames", ()))
    item.add_marker(pytest.mark.xdist_group("shared-champions" if shared else item.module.__name__))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture
def settings():
    """The session's settings; tests change copies, never the shared object."""
    from lockgate.core.settings import get_settings

    return get_settings().model_copy(deep=True)


@pytest.fixture
def fast_settings(settings):
    """Few epochs: enough to exercise training, not to win a gate."""
    settings.training.epochs = 3
    return settings


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = SESSION_HOME / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def wine_frame() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


@pytest.fixture(scope="session")
def wine_csv(data_dir: Path, wine_frame: pd.DataFrame) -> Path:
    path = data_dir / "wine.csv"
    wine_frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def breast_cancer_csv(data_dir: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    path = data_dir / "breast_cancer.csv"
    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for every flow test in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def digits_champion(prefect_harness):
    """The digits CNN, promoted once per session: served in tests/services (on
    onnxruntime, from its ONNX export), challenged in tests/flows, distilled in
    tests/flows/test_distillation.py."""
    from tests.pipelines import pipeline_settings, promote

    return promote("digits", None, "digits", pipeline_settings(8, formats=["saved_model", "onnx"]))


@pytest.fixture(scope="session")
def wine_champion(prefect_harness, wine_csv):
    """A table champion promoted once per session with every export and the
    served Bento check on: the tabular family's end-to-end run, and the
    champion that bad files are refused against."""
    from tests.pipelines import pipeline_settings, promote

    return promote(str(wine_csv), "target", "wine", pipeline_settings(40, exports=True, verify_bento=True))


@pytest.fixture(scope="session")
def text_champion(prefect_harness, reviews_csv):
    """The text family's end-to-end run (every export, the served check), kept
    for the service tests that fuzz its text endpoint."""
    from tests.pipelines import pipeline_settings, promote

    return promote(str(reviews_csv), "sentiment", "reviews", pipeline_settings(12, exports=True, verify_bento=True))


@pytest.fixture(scope="session")
def diabetes_csv(data_dir: Path) -> Path:
    """A regression table shipped with scikit-learn (442 patients)."""
    from sklearn.datasets import load_diabetes

    path = data_dir / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def reviews_csv(data_dir: Path) -> Path:
    from lockgate.data.samples import make_reviews

    path = data_dir / "reviews.csv"
    make_reviews().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def reviews_folder(data_dir: Path) -> Path:
    from tests.generated import write_review_folder

    return write_review_folder(data_dir / "reviews")


@pytest.fixture(scope="session")
def colour_images_npz(data_dir: Path) -> Path:
    import numpy as np

    from lockgate.data.samples import make_colour_images

    x, y = make_colour_images()
    path = data_dir / "shapes.npz"
    np.savez(path, x=x, y=y)
    return path
