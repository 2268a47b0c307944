"""Image classification: CNNs on pixel arrays (digits, MNIST, CIFAR-10 style).

Validation looks at one row per image (pixel range, blank and duplicate
images, shape); the model scales pixels itself, so it and the service take
pixel values as they came in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lockgate.families.base import Classification, Family, RequestError
from lockgate.records import DatasetMeta

if TYPE_CHECKING:
    import great_expectations.expectations as gxe

    from lockgate.data import LoadedData
    from lockgate.settings import TrainingSettings, ValidationSettings


class ImageFamily(Classification, Family):
    name = "image"
    architectures = ("small_cnn", "mnist", "cifar")
    endpoints = "/predict with arrays, or /predict_image"
    int8_quantisation: ClassVar[bool] = True
    augmentable: ClassVar[bool] = True

    def feature_columns(self, data: "LoadedData") -> list[str]:
        return []  # the pixels are the input

    def profile_columns(self, data: "LoadedData") -> list[str]:
        return ["pixel_mean", "pixel_std"]

    def features(self, data: "LoadedData") -> np.ndarray:
        return data.x.astype("float32")

    def feature_expectations(self, data: "LoadedData", settings: "ValidationSettings") -> list["gxe.Expectation"]:
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, WARNING, check

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
        from great_expectations import expectations as gxe

        from lockgate.expectations import BLOCKING, check

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
        self, meta: DatasetMeta, x_train: np.ndarray, architecture: str, settings: "TrainingSettings", width: float
    ) -> tuple[Any, Any]:
        from lockgate.models import cnn

        return cnn(tuple(meta.input_shape), float(meta.pixel_scale), architecture, width)

    def array_input(self, instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
        array = numeric_instances(instances, meta, max_rows)
        scale = float(meta.pixel_scale)
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > scale:
            raise RequestError(422, f"pixel values must lie in [0, {scale:g}]; got values from {low:g} to {high:g}")
        return array

    def binary_input(self, array: np.ndarray, meta: DatasetMeta, max_rows: int, max_chars: int) -> np.ndarray:
        """The array is checked as it came, without a detour through lists."""
        return self.array_input(array, meta, max_rows)

    def image_input(self, content: bytes, meta: DatasetMeta) -> np.ndarray:
        """One uploaded PNG/JPEG, prepared exactly as the training images were."""
        from lockgate.preprocessing import load_image_file

        if not content:
            raise RequestError(422, "the uploaded image is empty")
        height, width, channels = meta.input_shape
        try:
            array = load_image_file(content, (height, width), channels, float(meta.pixel_scale))
        except ValueError as exc:
            raise RequestError(415, f"upload a PNG or JPEG image: {exc}") from None
        return array[np.newaxis]


def numeric_instances(instances: Any, meta: DatasetMeta, max_rows: int) -> np.ndarray:
    """Nested lists of numbers (or an array, from the binary route) -> a
    finite float32 array of the model's input shape (a flat row of the right
    length is reshaped)."""
    shape = tuple(meta.input_shape)
    shape_text = ", ".join(map(str, shape))
    if isinstance(instances, np.ndarray) and instances.ndim == 0 or not isinstance(instances, (list, np.ndarray)):
        raise RequestError(422, "'instances' must be a list of examples")
    if not len(instances):
        raise RequestError(422, "'instances' is empty: send at least one example")
    if len(instances) > max_rows:
        raise RequestError(413, f"{len(instances)} examples in one request; the limit is {max_rows}")
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError(422, f"'instances' must be equally sized nested lists of numbers, shape [n, {shape_text}]") from None
    if array.dtype.kind not in "fiub":
        found = "text" if array.dtype.kind in "US" else "mixed or non-numeric values"
        raise RequestError(422, f"examples must be numbers, got {found} (dtype {array.dtype})")
    array = array.astype("float64")
    if array.shape[1:] != shape:
        if array.ndim == 2 and array.shape[1] == math.prod(shape):
            array = array.reshape((len(array), *shape))
        else:
            raise RequestError(422, f"each example must have shape [{shape_text}], got [{', '.join(map(str, array.shape[1:]))}]")
    with np.errstate(over="ignore"):
        as_float32 = array.astype("float32")
    if not np.isfinite(as_float32).all():
        bad = int((~np.isfinite(as_float32)).reshape(len(array), -1).any(axis=1).sum())
        raise RequestError(422, f"{bad} example(s) contain NaN, infinite or out-of-float32-range values")
    return as_float32
