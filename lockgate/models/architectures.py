"""Model architectures: each family's input end (its module calls these),
a prediction target's head on top (lockgate.families.targets).

Keras 3 APIs only (no raw ``tf.*`` inside a model), so the same code runs on
the TensorFlow, JAX and PyTorch backends. Input scaling is part of the model:
a served model takes data exactly as it came in for training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lockgate.core.contract import TableContract
from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings
from lockgate.models.forest import register_forest_layer
from lockgate.models.tfidf import (
    BIGRAM_BUCKETS,
    bigram_buckets,
    inverse_document_frequency,
    pair_ids,
    register_tfidf_layers,
)

if TYPE_CHECKING:
    from lockgate.core.tokens import TextVocabulary
    from lockgate.families import Family


def build_model(
    family: "Family",
    meta: "DatasetMeta",
    x_train: np.ndarray,
    y_train: np.ndarray,
    settings: "TrainingSettings",
    mixed_precision: bool = False,
    width: float = 1.0,
    soft_targets: bool = False,
):
    """The family's model, compiled with its loss and metrics. Preprocessing
    (pixel scaling, feature standardisation, tokenisation, the target's scale)
    is part of the model, so it takes and gives data as users have it.

    `width` scales every layer's units (a distillation student is narrower);
    `soft_targets` trains a classifier on class distributions, not indices."""
    import keras  # deferred: Keras takes seconds to import; only building, training and loading a model need it

    architecture = family.architecture(meta, settings.architecture)
    inputs, features = family.model_inputs(meta, x_train, architecture, settings, width)
    outputs, loss, metrics = family.target.head(features, meta, y_train, soft_targets)
    model = keras.Model(inputs, outputs, name=f"lockgate_{family.name}_{architecture}")
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=loss, metrics=metrics)
    return model


def trainable_model(model, augmentable: bool, meta: "DatasetMeta", settings: "TrainingSettings"):
    """What `fit` trains: the model itself, or, with image augmentation on, the
    model behind random flips, shifts, rotations and zoom. The augmentation is
    kept out of the model that is saved, exported and served (random ops would
    otherwise be traced into SavedModel, TFLite and ONNX graphs); both share
    the same weights."""
    if not (settings.augment and augmentable):
        return model
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras
    from keras import layers

    inputs = keras.Input(shape=tuple(meta.input_shape), name="image")
    x = inputs
    if meta.input_shape[-1] == 3:  # natural photos may be mirrored; digits and letters may not
        x = layers.RandomFlip("horizontal", name="augment_flip")(x)
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="constant", name="augment_shift")(x)
    x = layers.RandomRotation(0.05, fill_mode="constant", name="augment_rotate")(x)
    x = layers.RandomZoom(0.1, fill_mode="constant", name="augment_zoom")(x)
    trainer = keras.Model(inputs, model(x), name=f"{model.name}_augmented")
    # The model's own optimizer does the training, so the saved model carries its state.
    trainer.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    return trainer


def _units(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def cnn(shape: tuple[int, ...], pixel_scale: float, architecture: str, width: float = 1.0):
    """Three CNNs: a small one (8x8 digits), the classic MNIST one, and a deeper
    VGG-style one with batch normalisation for CIFAR-style colour images."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras
    from keras import layers

    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / pixel_scale, dtype="float32")(inputs)
    if architecture == "cifar":
        for filters in (_units(32, width), _units(64, width), _units(128, width)):
            for _ in range(2):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization()(x)
                x = layers.Activation("relu")(x)
            x = layers.MaxPooling2D(2)(x)
            x = layers.Dropout(0.2)(x)
        x = layers.GlobalAveragePooling2D()(x)
        return inputs, layers.Dense(_units(128, width), activation="relu")(x)
    if architecture == "mnist":
        x = layers.Conv2D(_units(32, width), 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(_units(64, width), 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dropout(0.5)(x)
        return inputs, x
    filters = _units(32, width)
    size = min(shape[0], shape[1])
    for _ in range(3):  # pooling only while the feature map is large enough
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        if size >= 8:
            x = layers.MaxPooling2D(2)(x)
            size //= 2
        filters *= 2
        if size < 4:
            break
    x = layers.Flatten()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Dense(_units(128, width), activation="relu")(x)
    return inputs, x


def _mlp_head(x, architecture: str, units: tuple[int, int], width: float):
    """Two dense layers over a table's features, or none for `linear`."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    from keras import layers

    if architecture == "linear":
        return x
    x = layers.Dense(_units(units[0], width), activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    return layers.Dense(_units(units[1], width), activation="relu")(x)


def table_encoder(contract: "TableContract", x_train: np.ndarray, architecture: str, width: float = 1.0):
    """Encoded rows (numbers with NaN gaps, category codes, a text column's
    word codes) into the table's features: gaps imputed with the training
    mean plus a missing indicator, numbers standardised, each category column
    embedded with a width that grows with its number of categories, each text
    column's words embedded and averaged; then an MLP (or nothing: linear)."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    layout = contract.layout()
    numeric = x_train[:, layout["numeric"]].astype("float64")
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(numeric, axis=0)) if numeric.size else np.zeros(0)
        std = np.nan_to_num(np.nanstd(numeric, axis=0)) if numeric.size else np.zeros(0)
    std = np.where(std > 1e-12, std, 1.0)
    inputs = keras.Input(shape=(layout["width"],), name="features")
    table = _table_features()(
        numeric=layout["numeric"], mean=mean.tolist(), std=std.tolist(),
        categorical=layout["categorical"], cardinalities=layout["cardinalities"],
        texts=[[group["positions"], group["cardinality"]] for group in layout.get("texts", [])],
        name="table_features", dtype="float32",
    )
    return inputs, _mlp_head(table(inputs), architecture, (128, 64), width)


TEXT_EMBEDDING = 16  # width of a table's word embeddings


def embedding_width(cardinality: int) -> int:
    """As wide as one-hot for a few categories, growing slowly for many."""
    return int(min(cardinality, max(4, round(1.6 * cardinality**0.56))))


def _table_features():
    if "table" in _LAYERS:
        return _LAYERS["table"]
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    from keras import layers, ops

    @_register
    class TableFeatures(layers.Layer):
        """Numbers and category codes of a table row into one feature vector.

        NaN is found as ``x != x`` (TFLite has no IsNan op), so the exports
        impute exactly as Keras does. A text column's word codes (0 padding)
        are embedded and averaged over the words present: a bag of words
        that every export format runs."""

        def __init__(self, numeric, mean, std, categorical, cardinalities, texts=(), **kwargs):
            super().__init__(**kwargs)
            self.numeric, self.mean, self.std = list(numeric), list(mean), list(std)
            self.categorical, self.cardinalities = list(categorical), list(cardinalities)
            self.texts = [[list(positions), int(cardinality)] for positions, cardinality in texts]
            self.embeddings = [
                layers.Embedding(c, embedding_width(c), name=f"category_{i}") for i, c in enumerate(self.cardinalities)
            ]
            self.word_embeddings = [
                layers.Embedding(c, TEXT_EMBEDDING, name=f"words_{i}") for i, (_, c) in enumerate(self.texts)
            ]

        def build(self, input_shape):
            for embedding in self.embeddings + self.word_embeddings:
                embedding.build((None,))
            super().build(input_shape)

        def call(self, x):
            parts = []
            if self.numeric:
                values = ops.take(x, self.numeric, axis=1)
                missing = ops.not_equal(values, values)
                standard = (values - ops.convert_to_tensor(self.mean, "float32")) / ops.convert_to_tensor(self.std, "float32")
                parts += [ops.where(missing, ops.zeros_like(values), standard), ops.cast(missing, "float32")]
            for column, cardinality, embedding in zip(self.categorical, self.cardinalities, self.embeddings):
                code = ops.clip(ops.take(x, [column], axis=1)[:, 0], 0, cardinality - 1)
                parts.append(embedding(ops.cast(code, "int32")))
            for (positions, cardinality), embedding in zip(self.texts, self.word_embeddings):
                codes = ops.clip(ops.take(x, positions, axis=1), 0, cardinality - 1)
                present = ops.cast(ops.greater(codes, 0.5), "float32")[:, :, None]
                words = embedding(ops.cast(codes, "int32")) * present
                count = ops.maximum(ops.sum(present, axis=1), 1.0)
                parts.append(ops.sum(words, axis=1) / count)
            return ops.concatenate(parts, axis=1)

        def get_config(self):
            return super().get_config() | {
                "numeric": self.numeric, "mean": self.mean, "std": self.std,
                "categorical": self.categorical, "cardinalities": self.cardinalities, "texts": self.texts,
            }

    _LAYERS["table"] = TableFeatures
    return TableFeatures


LSTM_STEPS = 64  # words an LSTM reads: longer texts cost it time and the bag reads them whole


def text_encoder(ids_train: np.ndarray, vocabulary: "TextVocabulary", architecture: str, width: float = 1.0):
    """Token ids (lockgate/core/tokens.py) into a text's features.

    Every architecture takes one int32 input (batch, sequence_length), 0 the
    padding, and its first layer is named "embed" and gives (batch,
    sequence, width); the mask is computed from the ids, never from the
    embedding (no mask_zero), so a model from the ids and the embedding to
    the output reproduces the model: explanations integrate over "embed".

    - bag: a bag of words and hashed word pairs, each embedding weighted by
      its idf (TF-IDF inside the model), summed and normalised: the head is
      linear on it;
    - lstm: a bidirectional LSTM over the first LSTM_STEPS words;
    - transformer: one block of self-attention over words and positions."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras
    from keras import layers, ops

    ids_train = np.asarray(ids_train, dtype="int32")
    length, size = int(vocabulary.sequence_length), int(vocabulary.size)
    inputs = keras.Input(shape=(length,), dtype="int32", name="ids")
    mask = ops.not_equal(inputs, 0)
    if architecture == "bag":
        embed = _bag_embedding()(size, BIGRAM_BUCKETS, _units(64, width), name="embed")
        embed.build((None, length))
        embed.set_idf(inverse_document_frequency(ids_train, size, min_documents=1),
                      inverse_document_frequency(bigram_buckets(ids_train, BIGRAM_BUCKETS), BIGRAM_BUCKETS))
        x = embed(inputs)
        words = ops.maximum(ops.sum(ops.cast(mask, "float32"), axis=1, keepdims=True), 1.0)
        x = ops.sum(x, axis=1) / ops.sqrt(words)
        # Linear on the bag, as logistic regression on TF-IDF: a hidden layer overfitted sooner.
        return inputs, layers.Dropout(0.5)(x)
    if architecture == "transformer":
        embedding = _units(64, width)
        x = _token_and_position_embedding()(size, length, embedding, name="embed")(inputs)
        attention = layers.MultiHeadAttention(num_heads=2, key_dim=_units(32, width), dropout=0.1)(
            x, x, attention_mask=ops.logical_and(mask[:, :, None], mask[:, None, :])
        )
        x = layers.LayerNormalization(epsilon=1e-6)(x + attention)
        feed_forward = layers.Dense(embedding)(layers.Dense(_units(128, width), activation="relu")(x))
        x = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(0.1)(feed_forward))
        x = layers.GlobalAveragePooling1D()(x, mask=mask)
    else:
        x = layers.Embedding(size, _units(64, width), name="embed")(inputs)
        steps = min(length, LSTM_STEPS)
        x = layers.Bidirectional(layers.LSTM(_units(32, width)))(x[:, :steps], mask=mask[:, :steps])
    x = layers.Dropout(0.3)(x)
    return inputs, layers.Dense(_units(32, width), activation="relu")(x)


def _bag_embedding():
    """The layer class, defined on first use so importing this module stays cheap."""
    if "bag" in _LAYERS:
        return _LAYERS["bag"]
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    from keras import layers, ops

    @_register
    class BagEmbedding(layers.Layer):
        """Each position's word and word pair (it and the next word, hashed),
        embedded and weighted by their idf: summed over the text, a TF-IDF
        vector times an embedding matrix. The idf weights are counted on the
        training ids and kept, not trained. Integer ops only (multiply, add,
        modulo, gather), so every export format runs it."""

        def __init__(self, vocabulary: int, buckets: int, width: int, **kwargs):
            super().__init__(**kwargs)
            self.vocabulary, self.buckets, self.width = vocabulary, buckets, width
            self.words = layers.Embedding(vocabulary, width, name="words")
            self.pairs = layers.Embedding(buckets, width, name="pairs")

        def build(self, input_shape):
            self.words.build(input_shape)
            self.pairs.build(input_shape)
            self.word_idf = self.add_weight(shape=(self.vocabulary,), initializer="zeros", trainable=False, name="word_idf")
            self.pair_idf = self.add_weight(shape=(self.buckets,), initializer="zeros", trainable=False, name="pair_idf")
            super().build(input_shape)

        def set_idf(self, word_idf: np.ndarray, pair_idf: np.ndarray) -> None:
            self.word_idf.assign(word_idf)
            self.pair_idf.assign(pair_idf)

        def call(self, ids):
            ids = ops.cast(ids, "int32")
            pairs = pair_ids(ids, self.buckets)
            word_weight = ops.expand_dims(ops.take(self.word_idf, ids, axis=0), -1)
            pair_weight = ops.expand_dims(ops.take(self.pair_idf, pairs, axis=0), -1)
            return self.words(ids) * word_weight + self.pairs(pairs) * pair_weight

        def get_config(self):
            return super().get_config() | {"vocabulary": self.vocabulary, "buckets": self.buckets, "width": self.width}

    _LAYERS["bag"] = BagEmbedding
    return BagEmbedding


def _register(cls):
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    return keras.saving.register_keras_serializable(package="lockgate")(cls)


_LAYERS: dict = {}


def _token_and_position_embedding():
    """The layer class, defined on first use so importing this module stays cheap."""
    if "embedding" in _LAYERS:
        return _LAYERS["embedding"]
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    from keras import layers, ops

    @_register
    class TokenAndPositionEmbedding(layers.Layer):
        """Token embedding plus a learned embedding of each position."""

        def __init__(self, vocabulary: int, sequence_length: int, width: int, **kwargs):
            super().__init__(**kwargs)
            self.vocabulary, self.sequence_length, self.width = vocabulary, sequence_length, width
            self.tokens = layers.Embedding(vocabulary, width)
            self.positions = layers.Embedding(sequence_length, width)

        def build(self, input_shape):
            self.tokens.build(input_shape)
            self.positions.build((self.sequence_length,))
            super().build(input_shape)

        def call(self, ids):
            positions = ops.arange(0, ops.shape(ids)[-1], 1)
            return self.tokens(ids) + self.positions(positions)

        def get_config(self):
            return super().get_config() | {
                "vocabulary": self.vocabulary, "sequence_length": self.sequence_length, "width": self.width
            }

    _LAYERS["embedding"] = TokenAndPositionEmbedding
    return TokenAndPositionEmbedding


def register_custom_layers() -> None:
    """Make Lockgate's own layers known before a saved model is deserialised."""
    register_forest_layer()
    register_tfidf_layers()
    _token_and_position_embedding()
    _bag_embedding()
    _table_features()


def load_keras_model(path: str | Path):
    """Load a saved .keras model, Lockgate's own layers included."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    register_custom_layers()
    return keras.models.load_model(path)


def model_input(x: np.ndarray):
    """What a model call takes: text arrives as a tensor of strings (Keras
    converts numbers itself but not strings), everything else as it is."""
    if x.dtype.kind in "USO":
        # deferred: TensorFlow takes seconds to import; only the paths that run it need it
        import tensorflow as tf

        return tf.constant(np.asarray(x, dtype=str))
    return x


def predict_outputs(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The model's outputs (class probabilities, or the predicted value of a
    regression) as float32 of shape (n, outputs).

    Compiled inference in chunks: `predict_on_batch` runs the traced predict
    function (about 10x faster than an eager call on a small batch) without
    `predict`'s per-call set-up."""
    out = []
    for start in range(0, len(x), batch_size):
        batch = np.asarray(model.predict_on_batch(model_input(x[start : start + batch_size])), dtype="float32")
        out.append(batch.reshape(len(batch), -1))
    if not out:
        return np.zeros((0, 0), dtype="float32")
    return np.concatenate(out)
