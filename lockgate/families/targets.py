"""What a model predicts: class probabilities or one value.

A prediction target owns what depends only on what is predicted, whatever
the input: the model's head and loss, the holdout scores and per-row proper
score, the no-skill baseline, the gate's rule, the picture of the holdout,
how a champion's outputs line up with new classes, and distillation's soft
targets. A family pairs one target with its inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from lockgate.core.records import DatasetMeta, GateDecision
from lockgate.core.settings import DistillationSettings, GateSettings, ValidationSettings
from lockgate.families.checks import BLOCKING, NUMERIC_TYPES, check
from lockgate.scoring.gate import HoldoutScores, decide_classification, decide_regression
from lockgate.scoring.metrics import classification_metrics, regression_metrics
from lockgate.scoring.plots import confusion_matrix_image, prediction_scatter
from lockgate.scoring.stats import brier_losses, squared_errors

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

TaskName = Literal["classification", "regression"]


class Target:
    """The interface; `Classification` and `Regression` fill it in."""

    name: ClassVar[TaskName]
    proper_score: ClassVar[str]  # the per-row loss the gate compares, in words
    output: ClassVar[str]  # the name of the model's output layer

    def expectations(
        self, target: str, settings: ValidationSettings, reference: DatasetMeta | None
    ) -> list["gxe.Expectation"]:
        """What validation expects of the label column."""
        raise NotImplementedError

    def head(self, features: Any, meta: DatasetMeta, y_train: np.ndarray, soft_targets: bool) -> tuple[Any, Any, list]:
        """The output layer on `features`, the loss and the training metrics."""
        raise NotImplementedError

    def score(self, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
        """Holdout metrics, per-class figures and the predictions."""
        raise NotImplementedError

    def example_losses(self, y_true: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Each holdout row's loss under the proper score, for the gate."""
        raise NotImplementedError

    def no_skill(self, y_train: np.ndarray, rows: int, class_names: list[str]) -> tuple[np.ndarray, str]:
        """What a model that learnt nothing from the features answers on
        `rows` rows, and that baseline in words: a first model must beat it."""
        raise NotImplementedError

    def decide(self, scores: HoldoutScores, gate: GateSettings) -> GateDecision:
        raise NotImplementedError

    def holdout_figure(self, y_true: np.ndarray, scored: dict[str, Any], class_names: list[str], folder: Path) -> Path:
        raise NotImplementedError

    def align_outputs(self, raw: np.ndarray, champion_names: list[str], names: list[str]) -> np.ndarray:
        raise NotImplementedError

    def distillation_targets(self, teacher_outputs: np.ndarray, y: np.ndarray, settings: DistillationSettings) -> np.ndarray:
        raise NotImplementedError


class Classification(Target):
    """Class probabilities out, accuracy and macro-F1 in the gate."""

    name = "classification"
    proper_score = "Brier score"
    output = "probabilities"

    def expectations(
        self, target: str, settings: ValidationSettings, reference: DatasetMeta | None
    ) -> list["gxe.Expectation"]:
        """Between 2 and `max_classes` labels, all known to the champion."""
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        suite = [
            gxe.ExpectColumnUniqueValueCountToBeBetween(
                column=target, min_value=2, max_value=settings.max_classes, **check("label count", BLOCKING)
            )
        ]
        if reference is not None:
            suite.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=target, value_set=list(reference.class_names), **check("labels known to the champion", BLOCKING)
                )
            )
        return suite

    def head(self, features: Any, meta: DatasetMeta, y_train: np.ndarray, soft_targets: bool) -> tuple[Any, Any, list]:
        import keras  # deferred: the gate and the service use targets without Keras

        # Softmax in float32 even under mixed precision, for stable probabilities.
        outputs = keras.layers.Dense(len(meta.class_names), activation="softmax", dtype="float32", name=self.output)(features)
        loss = "categorical_crossentropy" if soft_targets else "sparse_categorical_crossentropy"
        return outputs, loss, ["accuracy"]

    def score(self, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
        return classification_metrics(y_true, outputs, class_names) | {"predictions": outputs.argmax(axis=1)}

    def example_losses(self, y_true: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return brier_losses(y_true, outputs)

    def no_skill(self, y_train: np.ndarray, rows: int, class_names: list[str]) -> tuple[np.ndarray, str]:
        """The training rows' class shares, answered for every row."""
        counts = np.bincount(y_train.astype("int64"), minlength=len(class_names)).astype("float64")
        shares = counts / max(counts.sum(), 1.0)
        top = ", ".join(f"{class_names[i]!s} {shares[i]:.1%}" for i in np.argsort(-shares)[:3])
        return np.tile(shares.astype("float32"), (rows, 1)), f"always the training class shares ({top})"

    def decide(self, scores: HoldoutScores, gate: GateSettings) -> GateDecision:
        return decide_classification(scores, gate)

    def holdout_figure(self, y_true: np.ndarray, scored: dict[str, Any], class_names: list[str], folder: Path) -> Path:
        return confusion_matrix_image(
            scored["confusion"], class_names, folder / "confusion_matrix.png", f"holdout confusion matrix (n={len(y_true)})"
        )

    def align_outputs(self, raw: np.ndarray, champion_names: list[str], names: list[str]) -> np.ndarray:
        """The champion's probabilities re-ordered into the classes `names` of
        the data at hand; a class it never saw gets 0."""
        aligned = np.zeros((len(raw), len(names)), dtype="float32")
        for j, name in enumerate(names):
            if name in champion_names:
                aligned[:, j] = raw[:, champion_names.index(name)]
        return aligned

    def distillation_targets(self, teacher_outputs: np.ndarray, y: np.ndarray, settings: DistillationSettings) -> np.ndarray:
        """The teacher's probabilities softened by the temperature, blended
        with the true labels (weight `1 - alpha`)."""
        softened = np.power(np.clip(teacher_outputs.astype("float64"), 1e-12, 1.0), 1.0 / settings.temperature)
        softened /= softened.sum(axis=1, keepdims=True)
        one_hot = np.eye(teacher_outputs.shape[1])[y]
        return (settings.alpha * softened + (1 - settings.alpha) * one_hot).astype("float32")


class Regression(Target):
    """One value out, in the target's units; R^2 and RMSE in the gate."""

    name = "regression"
    proper_score = "squared error"
    output = "value"

    def expectations(
        self, target: str, settings: ValidationSettings, reference: DatasetMeta | None
    ) -> list["gxe.Expectation"]:
        """A numeric target that varies."""
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        return [
            gxe.ExpectColumnValuesToBeInTypeList(column=target, type_list=NUMERIC_TYPES, **check("numeric target", BLOCKING)),
            gxe.ExpectColumnUniqueValueCountToBeBetween(column=target, min_value=2, **check("target varies", BLOCKING)),
        ]

    def head(self, features: Any, meta: DatasetMeta, y_train: np.ndarray, soft_targets: bool) -> tuple[Any, Any, list]:
        import keras  # deferred: the gate and the service use targets without Keras

        # Predict the standardised target, then map back to the target's units.
        mean, std = float(np.mean(y_train)), float(np.std(y_train)) or 1.0
        standard = keras.layers.Dense(1, dtype="float32", name="standardised_value")(features)
        outputs = keras.layers.Rescaling(scale=std, offset=mean, dtype="float32", name=self.output)(standard)
        return outputs, "mse", [keras.metrics.RootMeanSquaredError(name="rmse"), "mae"]

    def score(self, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
        predicted = outputs[:, 0]
        return {"metrics": regression_metrics(y_true, predicted), "per_class": {}, "predictions": predicted}

    def example_losses(self, y_true: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return squared_errors(y_true, outputs[:, 0])

    def no_skill(self, y_train: np.ndarray, rows: int, class_names: list[str]) -> tuple[np.ndarray, str]:
        """The training rows' mean, answered for every row."""
        mean = float(np.mean(y_train)) if len(y_train) else 0.0
        return np.full((rows, 1), mean, dtype="float32"), f"always the training mean ({mean:.4g})"

    def decide(self, scores: HoldoutScores, gate: GateSettings) -> GateDecision:
        return decide_regression(scores, gate)

    def holdout_figure(self, y_true: np.ndarray, scored: dict[str, Any], class_names: list[str], folder: Path) -> Path:
        return prediction_scatter(
            y_true, scored["predictions"], folder / "predicted_vs_actual.png", f"holdout predictions (n={len(y_true)})"
        )

    def align_outputs(self, raw: np.ndarray, champion_names: list[str], names: list[str]) -> np.ndarray:
        return raw

    def distillation_targets(self, teacher_outputs: np.ndarray, y: np.ndarray, settings: DistillationSettings) -> np.ndarray:
        """The teacher's values blended with the true ones (weight `1 - alpha`)."""
        return (settings.alpha * teacher_outputs[:, 0] + (1 - settings.alpha) * y).astype("float32")


TARGETS: dict[str, Target] = {t.name: t for t in (Classification(), Regression())}


def target_for(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown prediction target {name!r}; known: {', '.join(TARGETS)}") from None
