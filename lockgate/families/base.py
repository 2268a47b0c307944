"""What every model family answers.

A family pairs a prediction target (lockgate.families.targets: head, losses, scores,
gate rule) with a kind of input, and says, for each of its users:
- data: which columns it reads and how validated data becomes model input;
- validation: what Great Expectations checks of its data, and against the
  champion's;
- training: its architectures and the input end of its model.
What the service needs (reading requests, answering) is not here but in
lockgate.serving.requests, named by `requests`, so a Bento carries none of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lockgate.core.records import DatasetMeta, FamilyName, TaskName
from lockgate.core.settings import TrainingSettings, ValidationSettings
from lockgate.families.checks import BLOCKING, WARNING, check
from lockgate.families.targets import Target
from lockgate.serving.requests import REQUESTS, Requests

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data.datasets import LoadedData


class Family:
    """The defaults every family shares; each family overrides what differs."""

    name: ClassVar[FamilyName]
    target: ClassVar[Target]  # what it predicts
    inputs: ClassVar[str]  # the kind of request input, a key of lockgate.serving.requests.REQUESTS
    architectures: ClassVar[tuple[str, ...]]  # the first is the default
    int8_quantisation: ClassVar[bool] = False  # full-integer TFLite needs a representative input range
    augmentable: ClassVar[bool] = False  # random flips, shifts and zoom keep the label
    needs_tensorflow: ClassVar[str] = ""  # why it cannot train on another Keras backend, if it cannot
    table: ClassVar[bool] = False  # reads a table through a data contract
    blendable: ClassVar[bool] = True  # candidates may be averaged into one model

    @property
    def task(self) -> TaskName:
        return self.target.name

    @property
    def requests(self) -> Requests:
        """How its served model reads requests (lockgate.serving.requests)."""
        return REQUESTS[self.inputs]

    # --- data ------------------------------------------------------------- #

    def accepts(self, data: "LoadedData") -> bool:
        """Whether settings may name this family for `data`, as read and
        recognised (images, texts and tables are told apart when read)."""
        return data.family == self.name

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

    def feature_expectations(self, data: "LoadedData", settings: ValidationSettings) -> list["gxe.Expectation"]:
        raise NotImplementedError

    def schema_expectations(self, reference: DatasetMeta) -> list["gxe.Expectation"]:
        """What must match the champion's data for the champion to be re-scored."""
        raise NotImplementedError

    def drift_expectations(self, reference: DatasetMeta, settings: ValidationSettings) -> list["gxe.Expectation"]:
        """Each profiled column's mean within `max_mean_shift_std` standard
        deviations of the champion's data; blocking or a warning by settings."""
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

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
        better validation score is kept (lockgate.training.fit.fit)."""
        return (self.architecture(meta, requested),)

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: TrainingSettings, width: float
    ) -> tuple[Any, Any]:
        """The Keras input and the feature tensor the task's head sits on."""
        raise NotImplementedError
