"""Model architectures, chosen by the data set's kind.

Keras 3 APIs only (no raw ``tf.*`` inside a model), so the same code runs on
the TensorFlow, JAX and PyTorch backends. Input scaling is part of the model:
a served model takes data exactly as it came in for training.
"""

from __future__ import annotations

import numpy as np


def build_model(meta: dict, x_train: np.ndarray, learning_rate: float, mixed_precision: bool = False):
    import keras

    classes = len(meta["class_names"])
    if meta["kind"] == "image":
        body = _cnn(tuple(meta["input_shape"]), float(meta["pixel_scale"]))
    else:
        body = _mlp(x_train)
    inputs, features = body
    # Softmax in float32 even under mixed precision, for stable probabilities.
    outputs = keras.layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(features)
    model = keras.Model(inputs, outputs, name=f"lockgate_{meta['kind']}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _cnn(shape: tuple[int, ...], pixel_scale: float):
    """A small CNN; pooling only while the feature map is large enough."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / pixel_scale)(inputs)
    filters = 32
    size = min(shape[0], shape[1])
    for _ in range(3):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        if size >= 8:
            x = layers.MaxPooling2D(2)(x)
            size //= 2
        filters *= 2
        if size < 4:
            break
    x = layers.Flatten()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Dense(128, activation="relu")(x)
    return inputs, x


def _mlp(x_train: np.ndarray):
    import keras
    from keras import layers

    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    norm = layers.Normalization(name="standardise")
    norm.adapt(x_train)
    x = norm(inputs)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(32, activation="relu")(x)
    return inputs, x


def predict_proba(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Compiled inference in chunks: `predict_on_batch` runs the traced predict
    function (about 10x faster than an eager call on a small batch) without
    `predict`'s per-call set-up."""
    out = []
    for start in range(0, len(x), batch_size):
        out.append(np.asarray(model.predict_on_batch(x[start : start + batch_size]), dtype="float32"))
    if not out:
        return np.zeros((0, 0), dtype="float32")
    return np.concatenate(out)
