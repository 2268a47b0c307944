"""The whole flow under Prefect's test harness: promotion, a second run judged
against the first, a weaker challenger, bad data, transient and deterministic
faults. Every run uses its own registered-model name."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from flows.training import ValidationFailed, training_pipeline
from lockgate.faults import DeterministicFailure
from tests.data.bad_inputs import CASES

pytestmark = [pytest.mark.flow]


def _versions(name: str) -> list:
    import mlflow

    return mlflow.MlflowClient().search_model_versions(f"name = '{name}'")


def _champion(name: str) -> str | None:
    from lockgate.settings import get_settings
    from lockgate.tracking import champion_version

    version = champion_version(get_settings(), name)
    return str(version.version) if version else None


def _task_runs(flow_run_id: UUID, expected: int, timeout: float = 30.0) -> dict[str, int]:
    """Task name -> run_count, read back from the Prefect API (it lags a little)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        counts = {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}
        settled = all(run.state is not None and run.state.is_final() for run in runs)
        if (len(counts) >= expected and settled) or time.monotonic() > deadline:
            return counts
        time.sleep(1)


@pytest.fixture(scope="module")
def digits_champion(prefect_harness):
    import uuid

    from lockgate.settings import get_settings

    name = f"digits-{uuid.uuid4().hex[:6]}"
    settings = get_settings().model_copy(deep=True)
    first = training_pipeline(data="digits", model_name=name, settings=settings)
    return name, settings, first


def test_digits_are_promoted_with_a_bento_that_answers(digits_champion):
    name, _, result = digits_champion
    import bentoml

    assert result.status == "promoted", result.gate
    assert result.evaluation.metrics["accuracy"] >= 0.95
    assert result.registered.version == "1" and _champion(name) == "1"
    assert result.package.verified_examples == 360
    assert result.package.max_abs_difference < 1e-3
    assert bentoml.get(result.package.bento_tag).info.labels["model_name"] == name


def test_second_run_is_judged_against_the_first(digits_champion):
    name, settings, first = digits_champion
    second = training_pipeline(data="digits", model_name=name, settings=settings)
    assert second.validation.seen_before
    assert second.evaluation.champion_version == "1"
    assert second.evaluation.champion_metrics["accuracy"] == pytest.approx(first.evaluation.metrics["accuracy"])
    assert second.gate.difference_ci is not None
    assert any("champion v1" in reason for reason in second.gate.reasons)
    # Same data, same seed, same code: the same model, so it passes the no-regression rule.
    assert second.evaluation.metrics["accuracy"] == pytest.approx(first.evaluation.metrics["accuracy"])
    assert second.status == "promoted" and _champion(name) == "2"


def test_weaker_challenger_is_rejected_and_the_champion_stays(digits_champion):
    name, settings, _ = digits_champion
    before_champion, before_versions = _champion(name), len(_versions(name))
    weak = settings.model_copy(deep=True)
    weak.training.epochs = 1
    weak.training.learning_rate = 1e-4
    result = training_pipeline(data="digits", model_name=name, settings=weak)
    assert result.status == "rejected"
    assert not result.gate.promote
    assert any("below the required" in r or "could be worse" in r for r in result.gate.reasons)
    assert result.registered is None and result.package is None
    assert _champion(name) == before_champion
    assert len(_versions(name)) == before_versions


@pytest.fixture(scope="module")
def wine_champion(prefect_harness, wine_csv):
    import uuid

    from lockgate.settings import get_settings

    name = f"wine-{uuid.uuid4().hex[:6]}"
    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = 40
    result = training_pipeline(data=str(wine_csv), target="target", model_name=name, settings=settings)
    assert result.status == "promoted", result.gate
    return name, settings


def test_user_csv_is_trained_and_promoted(wine_champion):
    name, _ = wine_champion
    assert _champion(name) == "1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_stops_at_validation(case, wine_champion, data_dir, wine_frame):
    name, settings = wine_champion
    writer, _, expected = CASES[case]
    folder = data_dir / "flow-bad"
    folder.mkdir(exist_ok=True)
    path = writer(folder, wine_frame)
    with pytest.raises(ValidationFailed) as failure:
        training_pipeline(data=str(path), target="target", model_name=name, settings=settings)
    assert expected in str(failure.value)
    assert len(_versions(name)) == 1
    assert _champion(name) == "1"


def test_transient_faults_in_every_step_are_retried(prefect_harness, breast_cancer_csv, model_name):
    from lockgate.settings import get_settings

    import bentoml

    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = 6
    steps = ["champion", "validate", "track", "train", "evaluate", "gate", "export", "register", "package", "promote"]
    settings.inject_faults = {step: 1 for step in steps}
    state = training_pipeline(
        data=str(breast_cancer_csv), target="target", model_name=model_name, settings=settings, return_state=True
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert result.status == "promoted"
    assert len(_versions(model_name)) == 1, "a retried step must not register twice"
    bentos = [b for b in bentoml.list("lockgate") if b.info.labels.get("model_name") == model_name]
    assert len(bentos) == 1
    counts = _task_runs(state.state_details.flow_run_id, expected=len(steps))
    assert all(counts.get(step_name) == 2 for step_name in (
        "find champion", "validate data", "open tracking run", "train model", "evaluate model",
        "gate model", "export model", "register model", "package service", "promote champion")), counts


def test_training_fault_resumes_from_checkpoint(prefect_harness, wine_csv, model_name):
    from lockgate.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = 5
    settings.training.early_stopping_patience = 50
    settings.inject_faults = {"train": 2}
    settings.gate.min_accuracy = settings.gate.min_macro_f1 = 0.0
    settings.verify_bento = False
    result = training_pipeline(data=str(wine_csv), target="target", model_name=model_name, settings=settings)
    assert result.status == "promoted"
    import mlflow

    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.metrics["epochs_run"] == 5
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "loss")
    # Two failed attempts each finished one epoch; the third resumed at epoch 3.
    assert sorted({m.step for m in history}) == [0, 1, 2, 3, 4]


def test_deterministic_failure_is_not_retried(prefect_harness, wine_csv, model_name):
    from lockgate.settings import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = 5
    settings.gate.min_accuracy = settings.gate.min_macro_f1 = 0.0
    settings.inject_failure = "package"
    state = training_pipeline(
        data=str(wine_csv), target="target", model_name=model_name, settings=settings, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(DeterministicFailure):
        state.result()
    counts = _task_runs(state.state_details.flow_run_id, expected=8)
    assert counts.get("package service") == 1, counts
    assert _champion(model_name) is None, "a failed run never moves the champion"
