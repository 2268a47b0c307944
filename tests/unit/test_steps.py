"""Each pipeline step on its own, through `task.fn()`, on the wine table."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from lockgate.core.records import GateDecision
from lockgate.core.settings import get_settings
from lockgate.registry.packaging import build_bento, store_model
from lockgate.scoring.metrics import classification_metrics
from tasks.evaluate import evaluate_task
from tasks.promote import promote_task
from tasks.register import register_task
from tasks.track import open_run_task
from tasks.train import train_task
from tasks.validate import validate_task


@pytest.fixture(scope="module")
def trained(wine_csv):
    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = 4
    settings.training.architecture = "mlp"  # the network's steps: epochs, curves, checkpoints
    summary = validate_task.fn(str(wine_csv), "target", None, settings)
    name = f"unit-{uuid.uuid4().hex[:6]}"
    run_id = open_run_task.fn(summary, name, f"pipeline-{uuid.uuid4().hex}", settings)
    training = train_task.fn(run_id, summary.snapshot, settings)
    return settings, summary, name, training


def test_open_run_is_idempotent(trained):
    settings, summary, name, training = trained
    import mlflow

    pipeline_id = f"pipeline-{uuid.uuid4().hex}"
    first = open_run_task.fn(summary, name, pipeline_id, settings)
    again = open_run_task.fn(summary, name, pipeline_id, settings)
    assert first == again
    client = mlflow.MlflowClient()
    run = client.get_run(first)
    assert run.data.tags["lockgate.data_hash"] == summary.data_hash
    assert run.data.params["dataset"] == summary.dataset and run.data.params["rows"] == str(summary.rows)
    assert run.data.params["training.epochs"] == "4"
    assert {a.path for a in client.list_artifacts(first, "data")} == {"data/contract.txt", "data/meta.json"}
    assert {a.path for a in client.list_artifacts(first, "validation")} == {"validation/summary.json"}


def test_train_logs_model_metrics_and_plot(trained):
    settings, summary, name, training = trained
    import mlflow

    assert training.epochs_run >= 1 and training.parameters > 0
    client = mlflow.MlflowClient()
    history = client.get_metric_history(training.run_id, "val_loss")
    assert len(history) == training.epochs_run
    artifacts = {a.path for a in client.list_artifacts(training.run_id, "plots")}
    assert "plots/training_curves.png" in artifacts
    loaded = mlflow.tensorflow.load_model(training.model_uri)
    assert loaded.output_shape[-1] == 3


def test_a_table_keeps_the_candidate_with_the_better_validation_score(trained):
    """By default a table trains a network and a forest (and their average),
    and keeps the lowest validation Brier score; the run says which and why."""
    import re

    import mlflow

    settings, summary, name, _ = trained
    settings = settings.model_copy(deep=True)
    settings.training.architecture = "auto"
    run_id = open_run_task.fn(summary, name, f"pipeline-{uuid.uuid4().hex}", settings)
    training = train_task.fn(run_id, summary.snapshot, settings)
    kept = re.match(r"(\S+), chosen on the validation split \(\d+ rows\): mean Brier score (\d\.\d{4}) against (.*)", training.choice)
    assert kept, training.choice
    scores = {kept[1]: kept[2]} | dict(re.findall(r"(mlp\+forest|mlp|forest) (\d\.\d{4})", kept[3]))
    assert set(scores) == {"mlp", "forest", "mlp+forest"}, training.choice
    assert training.architecture == min(scores, key=lambda k: float(scores[k])), training.choice
    assert training.choice.startswith(f"{training.architecture}, chosen on the validation split")
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.params["architecture"] == training.architecture
    assert run.data.tags["lockgate.architecture_choice"] == training.choice


def test_training_resumes_from_the_last_checkpoint(tmp_path, wine_csv):
    import keras

    from lockgate.data.datasets import read_snapshot
    from lockgate.training.fit import fit

    settings = get_settings().training.model_copy(update={"epochs": 5, "early_stopping_patience": 50, "architecture": "mlp"})
    snapshot = read_snapshot(validate_task.fn(str(wine_csv), "target").snapshot)

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise ConnectionError("simulated crash after epoch 3")

    with pytest.raises(ConnectionError):
        fit(snapshot, settings, backup_dir=tmp_path / "backup", callbacks=[Crash()])
    outcome = fit(snapshot, settings, backup_dir=tmp_path / "backup")
    assert outcome.resumed_from_epoch == 3
    assert outcome.epochs_run == 5
    assert len(outcome.history["loss"]) == 2, "only the remaining epochs run again"
    assert not (tmp_path / "backup" / "training_metadata.json").exists(), "backup removed after success"


def test_evaluate_scores_the_holdout(trained):
    settings, summary, name, training = trained
    import mlflow

    evaluation = evaluate_task.fn(training, summary.snapshot, None, settings)
    report = evaluation.report
    assert set(report.per_class) == {"0", "1", "2"}
    assert 0 <= report.metrics["accuracy"] <= 1 and report.metrics["log_loss"] > 0
    assert report.metrics["latency_ms_p50"] > 0
    predictions = np.load(report.predictions_file)
    assert len(predictions["y_true"]) == 36  # 20% of 178, stratified
    np.testing.assert_array_equal(evaluation.scores.challenger_loss, predictions["challenger_loss"])
    client = mlflow.MlflowClient()
    logged = client.get_run(training.run_id).data.metrics
    assert logged["holdout_accuracy"] == pytest.approx(report.metrics["accuracy"])
    assert {a.path for a in client.list_artifacts(training.run_id, "evaluation")} == {"evaluation/per_class.json"}


def test_classification_metrics_on_known_answers():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    scored = classification_metrics(y, proba, ["a", "b"])
    assert scored["metrics"]["accuracy"] == 0.75
    assert scored["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "support": 2.0}
    assert scored["confusion"].tolist() == [[1, 1], [0, 2]]


def test_register_is_idempotent_and_tagged(trained):
    settings, summary, name, training = trained
    import mlflow

    decision = GateDecision(promote=True, metric="accuracy", challenger=0.9, reasons=["test"])
    first = register_task.fn(training, decision, summary, name, settings)
    again = register_task.fn(training, decision, summary, name, settings)
    assert first.version == again.version
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1
    tags = versions[0].tags
    assert tags["data_hash"] == summary.data_hash
    assert {"validation", "gate", "config_hash", "code_version"} <= set(tags)


def test_register_refuses_a_rejected_model(trained):
    settings, summary, name, training = trained
    from lockgate.core.faults import DeterministicFailure

    rejected = GateDecision(promote=False, metric="accuracy", challenger=0.1, reasons=["bad"])
    with pytest.raises(DeterministicFailure):
        register_task.fn(training, rejected, summary, name, settings)


def test_package_store_and_build_are_idempotent_then_promote(trained):
    settings, summary, name, training = trained
    import bentoml
    import mlflow

    decision = GateDecision(promote=True, metric="accuracy", challenger=0.9, reasons=["test"])
    registered = register_task.fn(training, decision, summary, name, settings)
    report = evaluate_task.fn(training, summary.snapshot, None, settings).report
    tag = store_model(registered, training, report, summary.snapshot, summary.data_hash)
    assert store_model(registered, training, report, summary.snapshot, summary.data_hash) == tag
    bento = build_bento(registered, tag, summary.data_hash)
    assert build_bento(registered, tag, summary.data_hash) == bento
    info = bentoml.get(bento).info
    assert info.labels["model_version"] == registered.version
    assert info.labels["mlflow_run_id"] == registered.run_id
    from lockgate.core.records import PackagedService

    package = PackagedService(bento_tag=bento, model_tag=tag, verified_examples=0, max_abs_difference=0.0)
    outcome = promote_task.fn(registered, package, None, decision, settings)
    assert outcome.promoted and outcome.replaced is None
    champion = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    assert str(champion.version) == registered.version
    assert champion.tags["bento_tag"] == bento


def _another_version(trained, name):
    """A further version of `name` from the same trained model (what a second
    run registers), made straight in the registry."""
    from lockgate.core.records import RegisteredModel
    from lockgate.registry.tracking import client

    settings, _, _, training = trained
    version = client(settings).create_model_version(name, source=training.model_uri, run_id=training.run_id,
                                                    model_id=training.model_uri.removeprefix("models:/"))
    return RegisteredModel(name=name, version=str(version.version), run_id=training.run_id, uri=f"models:/{name}/{version.version}")


def test_promotion_is_a_compare_and_swap_and_the_pointer_follows_the_alias(trained):
    """The alias moves only if the champion is still the one the challenger
    was judged against; a retry after the move completes it; champion.json is
    the alias, written from it; a withdrawn version is marked, never the champion."""
    import json

    from lockgate.core.records import PackagedService
    from lockgate.registry.promotion import promote_if_unchanged, withdraw_version
    from lockgate.registry.tracking import champion_version, client

    settings, _, _, _ = trained
    name = f"cas-{uuid.uuid4().hex[:6]}"
    client(settings).create_registered_model(name)
    first, second, third = (_another_version(trained, name) for _ in range(3))
    package = PackagedService(bento_tag="lockgate:none", model_tag="lockgate-model:none", verified_examples=0,
                              max_abs_difference=0.0)
    pointer = settings.home / "champion.json"

    def alias() -> str:
        return str(champion_version(settings, name).version)

    assert promote_if_unchanged(settings, first, package, None, "PROMOTE: first").promoted
    stale = promote_if_unchanged(settings, second, package, None, "PROMOTE: judged with no champion")
    assert not stale.promoted and stale.champion_version == first.version and alias() == first.version
    moved = promote_if_unchanged(settings, second, package, first.version, "PROMOTE: against v1")
    assert moved.promoted and moved.replaced == first.version and alias() == second.version
    tags = champion_version(settings, name).tags
    assert tags["replaced"] == first.version and tags["gate"] == "PROMOTE: against v1"
    assert json.loads(pointer.read_text()) == {"model_name": name, "version": second.version,
                                               "bento_model": "lockgate-model:none", "bento": "lockgate:none"}
    pointer.unlink()  # a retry after the alias moved but before the pointer was written
    retried = promote_if_unchanged(settings, second, package, first.version, "PROMOTE: against v1")
    assert retried.promoted and retried.replaced == first.version
    assert json.loads(pointer.read_text())["version"] == second.version

    assert withdraw_version(settings, third, None, "rejected: the champion moved")
    assert client(settings).get_model_version(name, third.version).tags["lockgate.status"] == "rejected: the champion moved"
    assert not withdraw_version(settings, second, None, "never withdraw the champion") and alias() == second.version


def test_two_promotions_judged_against_the_same_champion_move_the_alias_once(trained):
    """Threads stand in for processes here (the lock is a file lock, which
    binds threads' separate open files the same way); tests/e2e runs real
    processes."""
    from concurrent.futures import ThreadPoolExecutor

    from lockgate.core.records import PackagedService
    from lockgate.registry.promotion import promote_if_unchanged
    from lockgate.registry.tracking import client

    settings, _, _, _ = trained
    name = f"race-{uuid.uuid4().hex[:6]}"
    client(settings).create_registered_model(name)
    base, *challengers = (_another_version(trained, name) for _ in range(5))
    package = PackagedService(bento_tag="lockgate:none", model_tag="lockgate-model:none", verified_examples=0,
                              max_abs_difference=0.0)
    promote_if_unchanged(settings, base, package, None, "PROMOTE")
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda v: promote_if_unchanged(settings, v, package, base.version, "PROMOTE"), challengers))
    assert sum(o.promoted for o in outcomes) == 1, outcomes
    winner = next(c for c, o in zip(challengers, outcomes) if o.promoted)
    assert all(o.champion_version == winner.version for o in outcomes)


# --- the steps' computations, with MLflow out of reach -------------------- #


class _NoTracking(Exception):
    """A computation tried to reach MLflow."""


@pytest.fixture(scope="module")
def computed(wine_csv):
    """Validation, training and evaluation as library calls, with every way
    into MLflow closed: they compute and write files, and log nothing."""
    import mlflow

    from lockgate.training.evaluation import evaluate
    from lockgate.training.fit import train
    from lockgate.validation.validate import validate

    def refuse(*args, **kwargs):
        raise _NoTracking("a computation reached MLflow")

    settings = get_settings().model_copy(deep=True)
    settings.training.epochs = 2
    settings.training.architecture = "mlp"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "__init__", refuse)
        patch.setattr(mlflow, "start_run", refuse)
        summary = validate(str(wine_csv), "target", None, settings)
        trained = train(f"compute-{uuid.uuid4().hex[:8]}", summary.snapshot, settings)
        evaluation = evaluate(trained.result, summary.snapshot, None, settings)
    return settings, summary, trained, evaluation


def test_the_computations_give_their_records_without_tracking(computed):
    from pathlib import Path

    settings, summary, trained, evaluation = computed
    assert summary.success and Path(summary.snapshot, "meta.json").is_file()
    result = trained.result
    assert Path(result.model_path).is_file() and result.model_uri == "" and result.architecture == "mlp"
    record = trained.run_record
    assert set(record.params) == {"architecture", "device", "training.processes", "training.global_batch"}
    assert set(record.metrics) == {"epochs_run", "train_seconds"} and record.metrics["epochs_run"] == result.epochs_run
    assert set(record.tags) == {"lockgate.architecture_choice"}
    assert [folder for _, folder in record.artifacts] == ["plots"] and record.model is not None

    report = evaluation.report
    assert report.run_id == result.run_id and len(evaluation.scores.y_true) == 36
    assert evaluation.scores.champion_version is None and evaluation.scores.metrics == report.metrics
    logged = evaluation.run_record()
    assert set(logged.metrics) == {f"holdout_{k}" for k in report.metrics}
    assert logged.artifacts == [(str(evaluation.figure), "plots"), (report.monitoring_reference, None)]
    assert set(logged.texts) == {"evaluation/per_class.json"}
    reference = Path(report.monitoring_reference)  # the held-out rows the monitor will compare traffic with
    assert {p.name for p in reference.iterdir()} == {"reference.npz", "reference.json"}


def test_the_gate_decides_from_the_scores_in_memory_as_from_the_file(computed):
    """The scores the evaluation hands the gate are the predictions file's,
    array for array, and give the same decision."""
    from lockgate.scoring.gate import read_holdout_scores
    from tasks.gate import decide

    settings, _, _, evaluation = computed
    report, in_memory = evaluation.report, evaluation.scores
    read_back = read_holdout_scores(report)
    for field in ("y_true", "challenger_pred", "champion_pred", "challenger_loss", "champion_loss", "baseline_loss"):
        mine, theirs = getattr(in_memory, field), getattr(read_back, field)
        assert mine.dtype == theirs.dtype, field
        np.testing.assert_array_equal(mine, theirs, err_msg=field)
    decision = decide(report, in_memory, settings.gate)
    assert decision.model_dump_json() == decide(report, read_back, settings.gate).model_dump_json()
    assert decision.no_skill is not None


def test_a_run_record_logs_files_first_then_values_in_batches():
    """Texts and files, then metrics, params and tags in batches within
    MLflow's limits, then the model (none here)."""
    from lockgate.registry.tracking import RunRecord

    calls = []

    class Client:
        def log_text(self, run_id, text, path):
            calls.append(("text", path))

        def log_artifact(self, run_id, local, artifact_path=None):
            calls.append(("artifact", artifact_path))

        def log_batch(self, run_id, metrics=(), params=(), tags=()):
            calls.append(("batch", len(metrics), len(params), len(tags)))
            assert len(metrics) + len(params) + len(tags) <= 1000

    record = RunRecord(
        metrics={f"m{i}": i for i in range(900)}, params={f"p{i}": i for i in range(150)}, tags={"t": "v"},
        texts={"a/b.json": "{}"}, artifacts=[("/tmp/x.png", "plots")],
    )
    assert record.log(Client(), "run") is None
    assert calls == [("text", "a/b.json"), ("artifact", "plots"), ("batch", 800, 100, 1), ("batch", 100, 50, 0)]


@pytest.mark.parametrize(("family", "metric"), [("tabular", "brier_score"), ("image", "brier_score"),
                                                ("regression", "mse")])
def test_the_gate_step_takes_the_rule_of_the_report_s_family(family, metric):
    from lockgate.core.records import EvaluationReport
    from lockgate.core.settings import GateSettings
    from lockgate.scoring.gate import HoldoutScores
    from tasks.gate import decide

    y = np.zeros(40)
    scores = HoldoutScores(y_true=y, challenger_pred=y, metrics={metric: 0.1}, challenger_loss=np.full(40, 0.1),
                           baseline_loss=np.full(40, 0.5))
    report = EvaluationReport(run_id="r", family=family, metrics={metric: 0.1}, per_class={}, predictions_file="unread")
    decision = decide(report, scores, GateSettings())
    assert decision.metric == metric and decision.no_skill.score == metric
