"""What every model family answers, and what its task (classification or
regression) decides for it.

A family is one class: how its data becomes model input, what validation
expects of it, the input end of its model, how it is scored and gated, which
exports it offers, and how the service turns a request into model input. The
task mixins hold the half that depends only on what is predicted: the output
head, metrics, gate rule, champion alignment and answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from lockgate.records import DatasetMeta, FamilyName, GateDecision

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data import LoadedData
    from lockgate.gate import HoldoutScores
    from lockgate.settings import DistillationSettings, GateSettings, TrainingSettings, ValidationSettings

Task = Literal["classification", "regression"]


class RequestError(Exception):
    """A request the model cannot take: an HTTP status and a message that
    names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Family:
    """The defaults every family shares; each family overrides what differs."""

    name: ClassVar[FamilyName]
    task: ClassVar[Task]
    architectures: ClassVar[tuple[str, ...]]  # the first is the default
    endpoints: ClassVar[str]  # which endpoints take its requests, for messages that point the way
    int8_quantisation: ClassVar[bool] = False  # full-integer TFLite needs a representative input range
    augmentable: ClassVar[bool] = False  # random flips, shifts and zoom keep the label
    needs_tensorflow: ClassVar[str] = ""  # why it cannot train on another Keras backend, if it cannot

    # --- data ------------------------------------------------------------- #

    def feature_columns(self, data: "LoadedData") -> list[str]:
        """Columns of the validated frame that the model reads."""
        return [c for c in data.frame.columns if c != data.target]

    def profile_columns(self, data: "LoadedData") -> list[str]:
        """Columns whose statistics are compared with the champion's data."""
        return self.feature_columns(data)

    def features(self, data: "LoadedData") -> np.ndarray:
        """The model's input for every row of validated data."""
        raise NotImplementedError

    # --- validation ------------------------------------------------------- #

    def feature_expectations(self, data: "LoadedData", settings: "ValidationSettings") -> list["gxe.Expectation"]:
        raise NotImplementedError

    def schema_expectations(self, reference: DatasetMeta) -> list["gxe.Expectation"]:
        """What must match the champion's data for the champion to be re-scored."""
        raise NotImplementedError

    def drift_expectations(self, reference: DatasetMeta, settings: "ValidationSettings") -> list["gxe.Expectation"]:
        """Each profiled column's mean within `max_mean_shift_std` standard
        deviations of the champion's data; blocking or a warning by settings."""
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, WARNING, check

        severity = BLOCKING if settings.drift_severity == "blocking" else WARNING
        suite = []
        for column, stats in reference.profile.items():
            spread = max(stats["std"], 1e-6 * abs(stats["mean"]), 1e-9)
            band = settings.max_mean_shift_std * spread
            suite.append(
                gxe.ExpectColumnMeanToBeBetween(
                    column=column, min_value=stats["mean"] - band, max_value=stats["mean"] + band,
                    **check("feature mean close to the champion's data", severity),
                )
            )
        return suite

    # --- model ------------------------------------------------------------ #

    def architecture(self, meta: DatasetMeta, requested: str) -> str:
        """The architecture asked for, or the family's default for this data."""
        if requested == "auto":
            return self.default_architecture(meta)
        if requested not in self.architectures:
            raise ValueError(
                f"architecture {requested!r} does not fit {self.name} data; choose one of {', '.join(self.architectures)}"
            )
        return requested

    def default_architecture(self, meta: DatasetMeta) -> str:
        return self.architectures[0]

    def candidates(self, meta: DatasetMeta, requested: str) -> tuple[str, ...]:
        """The architectures a run trains; with several, the one with the
        better validation score is kept (lockgate.training.fit)."""
        return (self.architecture(meta, requested),)

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: "TrainingSettings", width: float
    ) -> tuple[Any, Any]:
        """The Keras input and the feature tensor the task's head sits on."""
        raise NotImplementedError

    def warm_up_input(self, meta: DatasetMeta) -> np.ndarray:
        """One input that traces the served model before traffic."""
        return np.zeros((1, *meta.input_shape), dtype="float32")

    # --- the service's request adapter ------------------------------------ #

    def wrong_endpoint(self) -> RequestError:
        article = "an" if self.name[0] in "aeiou" else "a"
        return RequestError(422, f"this is {article} {self.name} model: use {self.endpoints}")

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """/predict: nested lists (or rows) -> model input."""
        raise self.wrong_endpoint()

    def binary_input(self, array: np.ndarray, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """/predict_npy: one array (a batch) -> model input, checked as /predict
        checks its rows."""
        return self.array_input(array.tolist(), meta, max_rows)

    def image_input(self, content: bytes, meta: DatasetMeta) -> np.ndarray:
        """/predict_image: one uploaded file -> model input."""
        raise self.wrong_endpoint()

    def records_input(self, records: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        """/predict_records: JSON objects keyed by column -> model input."""
        raise self.wrong_endpoint()

    def text_input(self, texts: Any, max_rows: int, max_chars: int) -> np.ndarray:
        """/predict_text: a list of strings -> model input."""
        raise self.wrong_endpoint()

    def example_request(self, meta: DatasetMeta, x: Any) -> tuple[str, dict[str, Any]]:
        """The route and body a user of this family sends for the inputs `x`."""
        return "/predict", {"instances": np.asarray(x).tolist()}

    # --- task behaviour (the mixins below) -------------------------------- #

    def target_expectations(
        self, target: str, settings: "ValidationSettings", reference: DatasetMeta | None
    ) -> list["gxe.Expectation"]:
        raise NotImplementedError

    def head(self, features: Any, meta: DatasetMeta, y_train: np.ndarray, soft_targets: bool) -> tuple[Any, Any, list]:
        raise NotImplementedError

    def score(self, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def decide(self, scores: "HoldoutScores", gate: "GateSettings") -> GateDecision:
        raise NotImplementedError

    def example_losses(self, y_true: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Each holdout row's loss under the task's proper score, for the gate."""
        raise NotImplementedError

    def no_skill(self, y_train: np.ndarray, rows: int, class_names: list[str]) -> tuple[np.ndarray, str]:
        """What a model that learnt nothing from the features answers on
        `rows` rows, and that baseline in words: a first model must beat it."""
        raise NotImplementedError

    def holdout_figure(self, y_true: np.ndarray, scored: dict[str, Any], class_names: list[str], folder: Path) -> Path:
        raise NotImplementedError

    def align_outputs(self, raw: np.ndarray, champion_names: list[str], names: list[str]) -> np.ndarray:
        raise NotImplementedError

    def distillation_targets(
        self, teacher_outputs: np.ndarray, y: np.ndarray, settings: "DistillationSettings"
    ) -> np.ndarray:
        raise NotImplementedError

    def answer(self, outputs: np.ndarray, meta: DatasetMeta) -> dict[str, Any]:
        raise NotImplementedError


class Classification:
    """Class probabilities out, accuracy and macro-F1 in the gate."""

    task: ClassVar[Task] = "classification"

    def target_expectations(
        self, target: str, settings: "ValidationSettings", reference: DatasetMeta | None
    ) -> list["gxe.Expectation"]:
        """Between 2 and `max_classes` labels, all known to the champion."""
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, check

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
        import keras

        # Softmax in float32 even under mixed precision, for stable probabilities.
        outputs = keras.layers.Dense(len(meta.class_names), activation="softmax", dtype="float32", name="probabilities")(features)
        loss = "categorical_crossentropy" if soft_targets else "sparse_categorical_crossentropy"
        return outputs, loss, ["accuracy"]

    def score(self, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
        from lockgate.metrics import classification_metrics

        return classification_metrics(y_true, outputs, class_names) | {"predictions": outputs.argmax(axis=1)}

    def example_losses(self, y_true: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        from lockgate.stats import brier_losses

        return brier_losses(y_true, outputs)

    def no_skill(self, y_train: np.ndarray, rows: int, class_names: list[str]) -> tuple[np.ndarray, str]:
        """The training rows' class shares, answered for every row."""
        counts = np.bincount(y_train.astype("int64"), minlength=len(class_names)).astype("float64")
        shares = counts / max(counts.sum(), 1.0)
        top = ", ".join(f"{class_names[i]!s} {shares[i]:.1%}" for i in np.argsort(-shares)[:3])
        return np.tile(shares.astype("float32"), (rows, 1)), f"always the training class shares ({top})"

    def decide(self, scores: "HoldoutScores", gate: "GateSettings") -> GateDecision:
        from lockgate.gate import decide_classification

        return decide_classification(scores, gate)

    def holdout_figure(self, y_true: np.ndarray, scored: dict[str, Any], class_names: list[str], folder: Path) -> Path:
        from lockgate.plots import confusion_matrix_image

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

    def distillation_targets(
        self, teacher_outputs: np.ndarray, y: np.ndarray, settings: "DistillationSettings"
    ) -> np.ndarray:
        """The teacher's probabilities softened by the temperature, blended
        with the true labels (weight `1 - alpha`)."""
        softened = np.power(np.clip(teacher_outputs.astype("float64"), 1e-12, 1.0), 1.0 / settings.temperature)
        softened /= softened.sum(axis=1, keepdims=True)
        one_hot = np.eye(teacher_outputs.shape[1])[y]
        return (settings.alpha * softened + (1 - settings.alpha) * one_hot).astype("float32")

    def answer(self, outputs: np.ndarray, meta: DatasetMeta) -> dict[str, Any]:
        names = meta.class_names
        return {
            "classes": names,
            "labels": [names[i] for i in outputs.argmax(axis=1)],
            "probabilities": np.round(outputs, 6).tolist(),
        }


class Regression:
    """One value out, in the target's units; R^2 and RMSE in the gate."""

    task: ClassVar[Task] = "regression"

    def target_expectations(
        self, target: str, settings: "ValidationSettings", reference: DatasetMeta | None
    ) -> list["gxe.Expectation"]:
        """A numeric target that varies."""
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, NUMERIC_TYPES, check

        return [
            gxe.ExpectColumnValuesToBeInTypeList(column=target, type_list=NUMERIC_TYPES, **check("numeric target", BLOCKING)),
            gxe.ExpectColumnUniqueValueCountToBeBetween(column=target, min_value=2, **check("target varies", BLOCKING)),
        ]

    def head(self, features: Any, meta: DatasetMeta, y_train: np.ndarray, soft_targets: bool) -> tuple[Any, Any, list]:
        import keras

        # Predict the standardised target, then map back to the target's units.
        mean, std = float(np.mean(y_train)), float(np.std(y_train)) or 1.0
        standard = keras.layers.Dense(1, dtype="float32", name="standardised_value")(features)
        outputs = keras.layers.Rescaling(scale=std, offset=mean, dtype="float32", name="value")(standard)
        return outputs, "mse", [keras.metrics.RootMeanSquaredError(name="rmse"), "mae"]

    def score(self, y_true: np.ndarray, outputs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
        from lockgate.metrics import regression_metrics

        predicted = outputs[:, 0]
        return {"metrics": regression_metrics(y_true, predicted), "per_class": {}, "predictions": predicted}

    def no_skill(self, y_train: np.ndarray, rows: int, class_names: list[str]) -> tuple[np.ndarray, str]:
        """The training rows' mean, answered for every row."""
        mean = float(np.mean(y_train)) if len(y_train) else 0.0
        return np.full((rows, 1), mean, dtype="float32"), f"always the training mean ({mean:.4g})"

    def decide(self, scores: "HoldoutScores", gate: "GateSettings") -> GateDecision:
        from lockgate.gate import decide_regression

        return decide_regression(scores, gate)

    def example_losses(self, y_true: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        from lockgate.stats import squared_errors

        return squared_errors(y_true, outputs[:, 0])

    def holdout_figure(self, y_true: np.ndarray, scored: dict[str, Any], class_names: list[str], folder: Path) -> Path:
        from lockgate.plots import prediction_scatter

        return prediction_scatter(
            y_true, scored["predictions"], folder / "predicted_vs_actual.png", f"holdout predictions (n={len(y_true)})"
        )

    def align_outputs(self, raw: np.ndarray, champion_names: list[str], names: list[str]) -> np.ndarray:
        return raw

    def distillation_targets(
        self, teacher_outputs: np.ndarray, y: np.ndarray, settings: "DistillationSettings"
    ) -> np.ndarray:
        """The teacher's values blended with the true ones (weight `1 - alpha`)."""
        return (settings.alpha * teacher_outputs[:, 0] + (1 - settings.alpha) * y).astype("float32")

    def answer(self, outputs: np.ndarray, meta: DatasetMeta) -> dict[str, Any]:
        return {"target": meta.target, "predictions": [round(float(v), 6) for v in outputs[:, 0]]}
