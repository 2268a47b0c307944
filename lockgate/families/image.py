"""Image classification: CNNs on pixel arrays (digits, MNIST, CIFAR-10 style).

Validation looks at one row per image (pixel range, blank and duplicate
images, shape); the model scales pixels itself, so it and the service take
pixel values as they came in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings, ValidationSettings
from lockgate.families.base import Family
from lockgate.families.checks import BLOCKING, WARNING, check
from lockgate.families.targets import Classification
from lockgate.models.architectures import cnn

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data.datasets import LoadedData


class ImageFamily(Family):
    name = "image"
    target = Classification()
    inputs = "images"
    architectures = ("small_cnn", "mnist", "cifar")
    int8_quantisation: ClassVar[bool] = True
    augmentable: ClassVar[bool] = True

    def feature_columns(self, data: "LoadedData") -> list[str]:
        return []  # the pixels are the input

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return ["pixel_mean", "pixel_std"]

    def features(self, data: "LoadedData") -> np.ndarray:
        return data.x.astype("float32")

    def feature_expectations(self, data: "LoadedData", settings: ValidationSettings) -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        return [
            gxe.ExpectColumnValuesToNotBeNull(column="pixel_mean", **check("pixels are finite", BLOCKING)),
            gxe.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0, **check("pixel range", BLOCKING)),
            gxe.ExpectColumnValuesToBeBetween(column="pixel_max", max_value=data.pixel_scale, **check("pixel range", BLOCKING)),
            gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column="image_hash", min_value=1.0 - settings.max_duplicate_fraction, **check("duplicate images", WARNING)
            ),
            gxe.ExpectColumnValuesToBeBetween(column="pixel_std", min_value=1e-9, mostly=0.99, **check("blank images", WARNING)),
        ]

    def schema_expectations(self, reference: DatasetMeta) -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe  # deferred: seconds to import, and only validation builds suites

        shape = "x".join(str(d) for d in reference.input_shape)
        return [gxe.ExpectColumnValuesToBeInSet(column="shape", value_set=[shape], **check("same image shape as the champion's", BLOCKING))]

    def default_architecture(self, meta: DatasetMeta) -> str:
        height, width, channels = meta.input_shape
        if min(height, width) >= 32 and channels == 3:
            return "cifar"
        if min(height, width) >= 24:
            return "mnist"
        return "small_cnn"

    def model_inputs(
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: TrainingSettings, width: float
    ) -> tuple[Any, Any]:
        return cnn(tuple(meta.input_shape), float(meta.pixel_scale), architecture, width)
