"""TF-IDF with logistic regression, fitted by scikit-learn and rewritten as a
Keras model over token ids.

The features are a text's words and hashed word pairs (the bag model's own
hashing), each counted and weighted by scikit-learn's smooth idf, the vector
divided by sqrt(sum of the idf^2 of its words and pairs): the same numbers in
numpy (to fit) and in `keras.ops` (to serve). The classifier is scikit-learn's
`LogisticRegression` (L-BFGS to convergence, L2), its strength C chosen on
the validation split and then refitted on the training and validation rows.
As a Keras model its weights are an embedding of width `classes` (named
"embed": a word's or pair's logit contributions), summed over the text,
divided by the norm and soft-maxed, so it saves, exports, is parity-checked,
explained and served like the networks, with no scikit-learn in the service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

TFIDF = "tfidf"
STRENGTHS = (0.25, 1.0, 4.0, 16.0)  # C, the inverse of the L2 penalty: chosen on the validation split
UNSEEN_CLASS_LOGIT = -30.0  # a class the training rows lack gets no probability


BIGRAM_BUCKETS = 1 << 16  # hashed word pairs the bag model embeds (bucket 0: no pair)
BIGRAM_MULTIPLIER = 7919  # a prime; ids up to ~270,000 keep id * it + next id within int32


def bigram_buckets(ids: np.ndarray, buckets: int = BIGRAM_BUCKETS) -> np.ndarray:
    """Each position's word pair (its word and the next) hashed to 1..buckets-1,
    0 where either is padding: numpy's twin of the bag model's own hashing,
    used to count document frequencies for its idf weights."""
    ids = np.asarray(ids, dtype="int64")
    following = np.concatenate([ids[:, 1:], np.zeros_like(ids[:, :1])], axis=1)
    hashed = (ids * BIGRAM_MULTIPLIER + following) % (buckets - 1) + 1
    return np.where((ids > 0) & (following > 0), hashed, 0)


def pair_ids(ids: Any, buckets: int) -> Any:
    """`bigram_buckets` in `keras.ops`, inside a model: each position's word
    pair hashed to 1..buckets-1, 0 where either word is padding."""
    from keras import ops  # deferred: Keras takes seconds to import; only a model's call needs it

    following = ops.concatenate([ids[:, 1:], ops.zeros_like(ids[:, :1])], axis=1)
    hashed = ops.mod(ids * BIGRAM_MULTIPLIER + following, buckets - 1) + 1
    return ops.where(ops.logical_and(ops.greater(ids, 0), ops.greater(following, 0)), hashed, 0)


def inverse_document_frequency(codes: np.ndarray, size: int, min_documents: int = 2) -> np.ndarray:
    """scikit-learn's smooth idf, log((1 + n) / (1 + df)) + 1, of every code
    in `codes` (one row a document); 0 for padding and for codes in fewer
    than `min_documents` training texts (their embeddings would stay
    untrained noise)."""
    n = len(codes)
    keys = np.unique(np.arange(n, dtype="int64")[:, None] * size + np.asarray(codes, dtype="int64"))
    df = np.bincount(keys % size, minlength=size)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    idf[df < min_documents] = 0.0
    idf[0] = 0.0
    return idf.astype("float32")


_LAYERS: dict[str, type] = {}


def _register(cls: type) -> type:
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    return keras.saving.register_keras_serializable(package="lockgate")(cls)


@dataclass(frozen=True)
class TfidfFit:
    word_idf: np.ndarray
    pair_idf: np.ndarray
    word_weights: np.ndarray  # (vocabulary, classes)
    pair_weights: np.ndarray  # (buckets, classes)
    bias: np.ndarray  # (classes,)
    strength: float  # the C kept
    validation_outputs: np.ndarray  # probabilities of the model fitted on the training rows only
    scores: dict[float, float]  # C -> validation Brier score
    seconds: float


def tfidf_features(ids: np.ndarray, word_idf: np.ndarray, pair_idf: np.ndarray) -> Any:
    """Sparse rows (vocabulary + buckets columns): counts times idf, divided
    by the norm the Keras model computes."""
    from scipy import sparse  # deferred: only fitting the model builds the matrix

    ids = np.asarray(ids, dtype="int64")
    pairs = bigram_buckets(ids, BIGRAM_BUCKETS)
    size = len(word_idf)
    rows = np.repeat(np.arange(len(ids)), ids.shape[1] * 2)
    columns = np.concatenate([ids, pairs + size], axis=1).reshape(-1)
    weights = np.concatenate([word_idf[ids], pair_idf[pairs]], axis=1)
    values = weights.reshape(-1).astype("float64")
    keep = values > 0
    matrix = sparse.csr_matrix((values[keep], (rows[keep], columns[keep])), shape=(len(ids), size + BIGRAM_BUCKETS))
    norm = np.sqrt(np.maximum((weights.astype("float64") ** 2).sum(axis=1), 1e-12))
    return sparse.diags(1.0 / norm) @ matrix


def fit_tfidf(
    ids_train: np.ndarray, y_train: np.ndarray, ids_val: np.ndarray, y_val: np.ndarray, vocabulary_size: int,
    n_classes: int, class_weight: str = "none",
) -> TfidfFit:
    """idf counted on the training rows; C chosen by the validation split's
    Brier score; the kept C refitted on training and validation rows."""
    from sklearn.linear_model import LogisticRegression  # deferred: only fitting the model needs scikit-learn

    started = time.perf_counter()
    word_idf = inverse_document_frequency(ids_train, vocabulary_size, min_documents=1)
    pair_idf = inverse_document_frequency(bigram_buckets(ids_train, BIGRAM_BUCKETS), BIGRAM_BUCKETS, min_documents=2)
    x_train, x_val = tfidf_features(ids_train, word_idf, pair_idf), tfidf_features(ids_val, word_idf, pair_idf)
    weight = "balanced" if class_weight == "balanced" else None

    def fitted(c: float, x: Any, y: np.ndarray) -> Any:
        return LogisticRegression(C=c, max_iter=2000, class_weight=weight).fit(x, y)

    def probabilities(model: Any, x: Any) -> np.ndarray:
        out = np.zeros((x.shape[0], n_classes))
        out[:, model.classes_] = model.predict_proba(x)
        return out

    scores, outputs = {}, {}
    for c in STRENGTHS:
        outputs[c] = probabilities(fitted(c, x_train, y_train), x_val)
        scores[c] = float(((outputs[c] - np.eye(n_classes)[y_val]) ** 2).sum(axis=1).mean())
    best = min(scores, key=scores.get)
    final = fitted(best, _stack(x_train, x_val), np.concatenate([y_train, y_val]))
    coef, intercept = final.coef_, final.intercept_
    if len(final.classes_) == 2:  # binary: one row of weights, for the second class
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    weights = np.zeros((vocabulary_size + BIGRAM_BUCKETS, n_classes))
    bias = np.full(n_classes, UNSEEN_CLASS_LOGIT)
    weights[:, final.classes_] = coef.T
    bias[final.classes_] = intercept
    return TfidfFit(word_idf, pair_idf, weights[:vocabulary_size].astype("float32"),
                    weights[vocabulary_size:].astype("float32"), bias.astype("float32"), best, outputs[best], scores,
                    time.perf_counter() - started)


def _stack(first: Any, second: Any) -> Any:
    from scipy import sparse  # deferred: only fitting the model builds the matrix

    return sparse.vstack([first, second]).tocsr()


def tfidf_model(fit: TfidfFit, sequence_length: int, output: str, name: str) -> Any:
    """The fitted classifier as a compiled Keras model over token ids."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    layers = register_tfidf_layers()
    inputs = keras.Input(shape=(sequence_length,), dtype="int32", name="ids")
    vocabulary, classes = fit.word_weights.shape
    embed = layers["embed"](vocabulary, BIGRAM_BUCKETS, classes, name="embed")
    contributions = embed(inputs)
    outputs = layers["head"](vocabulary, BIGRAM_BUCKETS, classes, name=output)([inputs, contributions])
    model = keras.Model(inputs, outputs, name=name)
    embed.set_weights([fit.word_weights, fit.pair_weights, fit.word_idf, fit.pair_idf])
    model.get_layer(output).set_weights([fit.word_idf, fit.pair_idf, fit.bias])
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def register_tfidf_layers() -> dict[str, type]:
    """The layer classes, defined (and made known to Keras for loading saved
    models) on first use, so importing this module stays cheap."""
    if "tfidf_embed" in _LAYERS:
        return {"embed": _LAYERS["tfidf_embed"], "head": _LAYERS["tfidf_head"]}
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    from keras import layers, ops

    @_register
    class TfidfEmbedding(layers.Layer):
        """Each position's word and word pair: idf times its logit weights
        (one per class). Integer ops and gathers only: every format runs it."""

        def __init__(self, vocabulary: int, buckets: int, classes: int, **kwargs):
            super().__init__(**kwargs)
            self.vocabulary, self.buckets, self.classes = vocabulary, buckets, classes

        def build(self, input_shape):
            self.word_weights = self.add_weight(shape=(self.vocabulary, self.classes), initializer="zeros",
                                                trainable=False, name="word_weights")
            self.pair_weights = self.add_weight(shape=(self.buckets, self.classes), initializer="zeros",
                                                trainable=False, name="pair_weights")
            self.word_idf = self.add_weight(shape=(self.vocabulary,), initializer="zeros", trainable=False, name="word_idf")
            self.pair_idf = self.add_weight(shape=(self.buckets,), initializer="zeros", trainable=False, name="pair_idf")
            super().build(input_shape)

        def call(self, ids):
            ids = ops.cast(ids, "int32")
            pairs = pair_ids(ids, self.buckets)
            words = ops.take(self.word_weights, ids, axis=0) * ops.expand_dims(ops.take(self.word_idf, ids, axis=0), -1)
            pair = ops.take(self.pair_weights, pairs, axis=0) * ops.expand_dims(ops.take(self.pair_idf, pairs, axis=0), -1)
            return words + pair

        def get_config(self):
            return super().get_config() | {"vocabulary": self.vocabulary, "buckets": self.buckets, "classes": self.classes}

    @_register
    class TfidfHead(layers.Layer):
        """Sum the contributions, divide by the text's TF-IDF norm (from the
        ids, with its own copy of the idf, so it stays fixed when
        explanations vary the contributions), add the bias, soft-max."""

        def __init__(self, vocabulary: int, buckets: int, classes: int, **kwargs):
            super().__init__(**kwargs)
            self.vocabulary, self.buckets, self.classes = vocabulary, buckets, classes

        def build(self, input_shape):
            self.word_idf = self.add_weight(shape=(self.vocabulary,), initializer="zeros", trainable=False, name="word_idf")
            self.pair_idf = self.add_weight(shape=(self.buckets,), initializer="zeros", trainable=False, name="pair_idf")
            self.bias = self.add_weight(shape=(self.classes,), initializer="zeros", trainable=False, name="bias")
            super().build(input_shape)

        def call(self, inputs):
            ids, contributions = inputs
            ids = ops.cast(ids, "int32")
            word_idf = ops.take(self.word_idf, ids, axis=0)
            pair_idf = ops.take(self.pair_idf, pair_ids(ids, self.buckets), axis=0)
            norm = ops.sqrt(ops.maximum(ops.sum(word_idf**2 + pair_idf**2, axis=1, keepdims=True), 1e-12))
            return ops.softmax(ops.sum(contributions, axis=1) / norm + self.bias, axis=-1)

        def get_config(self):
            return super().get_config() | {"vocabulary": self.vocabulary, "buckets": self.buckets, "classes": self.classes}

    _LAYERS["tfidf_embed"], _LAYERS["tfidf_head"] = TfidfEmbedding, TfidfHead
    return {"embed": TfidfEmbedding, "head": TfidfHead}
