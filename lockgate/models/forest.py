"""Gradient-boosted trees for tables, served as a Keras model.

scikit-learn's HistGradientBoosting is fitted on the same encoded rows the
neural networks take (numbers with NaN gaps, category codes: 0 missing,
1 unseen, 2.. known). The fitted ensemble is then rewritten as one Keras layer
built from ``keras.ops`` only, so the rest of the pipeline (saving as .keras,
MLflow, SavedModel, TFLite and ONNX exports with their parity checks, the
service) treats it exactly like a network: no sklearn at serving time.

Trees are evaluated with dense tensor ops (the "GEMM" strategy) rather than
by walking them: every internal node of every tree decides left or right for
every row at once, and a batched matrix product with each tree's
node-by-leaf path matrix tells which leaf each row reaches. Every op used
(Gather, comparisons, Select, BatchMatMul, sums) exists in TFLite's builtins
and in ONNX.

The translation reads sklearn's private fitted structures (``_predictors``,
``_bin_mapper``, ``_preprocessor``, ``_baseline_prediction``); the tests
check it against ``predict_proba``/``predict`` so an sklearn upgrade that
moves them fails loudly rather than serving different predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import keras

Task = Literal["classification", "regression"]

MAX_ITERATIONS = 500  # early stopping usually ends far sooner
FALLBACK_ITERATIONS = 100  # sklearn's default, when there is no validation row to stop on
NATIVE_CATEGORIES = 255  # sklearn's max_bins: more categories than this cannot be native
LAYER_NAME = "TreeEnsemble"
FOREST = "forest"  # the architecture name a table run chooses, or is asked for

_LAYERS: dict[str, type] = {}


# --------------------------------------------------------------------------- #
# Fitting
# --------------------------------------------------------------------------- #


@dataclass
class ForestFit:
    """A fitted ensemble with what the pipeline reports about it."""

    estimator: Any  # the fitted sklearn estimator, refit on train + validation
    iterations: int  # boosting iterations kept, found by early stopping
    # Outputs of the early-stopped model on x_val, before the refit (the refit
    # has seen those rows): (n_val, n_classes) probabilities in class-index
    # order, or (n_val, 1) values for regression; float32, like a model's.
    validation_outputs: np.ndarray
    seconds: float


def fit_forest(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    layout: dict,
    task: Task,
    n_classes: int,
    seed: int,
    class_weight: Literal["none", "balanced"] = "none",
) -> ForestFit:
    """Early-stop on the validation split to choose the number of iterations,
    then refit that many on train + validation so no labelled row is wasted
    (the validation outputs come from the early-stopped model, which has not
    seen them)."""
    started = time.perf_counter()
    mask = native_categorical_mask(layout)
    x_train, x_val = _rows(x_train, mask.size), _rows(x_val, mask.size)
    y_train, y_val = _targets(y_train, task), _targets(y_val, task)
    x_stop, y_stop = _stopping_rows(x_val, y_val, y_train, task)
    if len(x_stop):
        probe = _estimator(task, mask, seed, class_weight, MAX_ITERATIONS, early_stopping=True)
        probe.fit(_without_empty_columns(x_train), y_train, X_val=x_stop, y_val=y_stop)
    else:
        probe = _estimator(task, mask, seed, class_weight, FALLBACK_ITERATIONS, early_stopping=False)
        probe.fit(_without_empty_columns(x_train), y_train)
    iterations = int(probe.n_iter_)
    validation_outputs = estimator_outputs(probe, x_val, task, n_classes)
    final = _estimator(task, mask, seed, class_weight, iterations, early_stopping=False)
    final.fit(_without_empty_columns(np.concatenate([x_train, x_val])), np.concatenate([y_train, y_val]))
    return ForestFit(final, iterations, validation_outputs, time.perf_counter() - started)


def native_categorical_mask(layout: dict) -> np.ndarray:
    """Which input positions sklearn splits on as categories. A column with
    more codes than sklearn's bins is left as an ordinal number: still
    usable, only split by thresholds."""
    mask = np.zeros(int(layout["width"]), dtype=bool)
    for position, cardinality in zip(layout["categorical"], layout["cardinalities"]):
        mask[position] = cardinality <= NATIVE_CATEGORIES
    return mask


def estimator_outputs(estimator: Any, x: np.ndarray, task: Task, n_classes: int) -> np.ndarray:
    """What the Keras model gives for `x`, computed by sklearn: probabilities
    in class-index order (classes the estimator never saw get 0), or values."""
    x = _rows(x, int(estimator.n_features_in_))
    if task == "regression":
        if not len(x):
            return np.zeros((0, 1), dtype="float32")
        return estimator.predict(x).astype("float32").reshape(-1, 1)
    out = np.zeros((len(x), n_classes), dtype="float32")
    if len(x):
        probabilities = estimator.predict_proba(x)
        # With one class seen, predict_proba still has two columns; the first is that class.
        for column, label in enumerate(estimator.classes_):
            out[:, int(label)] = probabilities[:, column]
    return out


def _estimator(task: Task, mask: np.ndarray, seed: int, class_weight: str, max_iter: int, early_stopping: bool) -> Any:
    """An unfitted estimator; the probe and the refit differ only in their
    iterations and early stopping, so the refit grows the same kind of trees."""
    # deferred: scikit-learn loads only where it is used
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    common = dict(
        max_iter=max(1, int(max_iter)),
        early_stopping=early_stopping,
        categorical_features=mask if mask.any() else None,
        random_state=seed,
    )
    if task == "regression":
        return HistGradientBoostingRegressor(**common)
    return HistGradientBoostingClassifier(class_weight="balanced" if class_weight == "balanced" else None, **common)


def _stopping_rows(x_val: np.ndarray, y_val: np.ndarray, y_train: np.ndarray, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Validation rows early stopping can score: sklearn refuses labels it
    did not train on, so rows of a class absent from the training split are
    left out (they still count in the refit and the validation outputs)."""
    if task == "regression":
        return x_val, y_val
    known = np.isin(y_val, np.unique(y_train))
    return x_val[known], y_val[known]


def _without_empty_columns(x: np.ndarray) -> np.ndarray:
    """The rows with every column that holds no value at all (a sparse
    column's training rows can all be gaps) set to 0: scikit-learn 1.9 fails
    to bin an all-NaN column, and a constant one gets no split, as an empty
    one would not, so the trees and their predictions are the same."""
    empty = np.isnan(x).all(axis=0) if len(x) else np.zeros(x.shape[1], dtype=bool)
    if not empty.any():
        return x
    x = x.copy()
    x[:, empty] = 0.0
    return x


def _rows(x: np.ndarray, width: int) -> np.ndarray:
    """Encoded rows as sklearn and the model take them (an empty split may
    arrive without its width)."""
    return np.asarray(x, dtype="float32").reshape(-1, width)


def _targets(y: np.ndarray, task: Task) -> np.ndarray:
    return np.asarray(y, dtype="float64" if task == "regression" else "int64").reshape(-1)


# --------------------------------------------------------------------------- #
# The fitted ensemble as arrays
# --------------------------------------------------------------------------- #


def float32_floor(threshold: float) -> float:
    """The largest float32 not above `threshold`: sklearn compares float64
    thresholds, the model float32 inputs, and for every float32 x,
    ``x <= t64`` exactly when ``x <= float32_floor(t64)``."""
    with np.errstate(over="ignore"):
        rounded = np.float32(threshold)
    if float(rounded) > threshold:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return float(rounded)


def ensemble_config(estimator: Any, task: Task, n_classes: int) -> dict[str, Any]:
    """The `TreeEnsemble` layer's arguments for a fitted estimator: per tree
    and internal node the input position read, its float32 threshold, where
    missing values go, its children; per leaf its value; and a lookup table
    of which category codes go left at each categorical split."""
    features, categories = _input_positions(estimator, int(estimator.n_features_in_))
    known, known_row = _known_categories(estimator)
    codes = max([int(raw.max()) + 1 for raw in categories.values() if len(raw)] + [1])
    table: list[list[int]] = [[0] * codes]  # row 0: unused, numeric nodes point at it
    trees = [
        _tree_arrays(predictor, features, categories, known, known_row, table, codes)
        for iteration in estimator._predictors
        for predictor in iteration
    ]
    max_nodes = max([1] + [len(t["feature"]) for t in trees])
    max_leaves = max(len(t["leaf_value"]) for t in trees)
    return {
        "outputs": int(estimator.n_trees_per_iteration_),
        "baseline": [float(v) for v in np.ravel(estimator._baseline_prediction)],
        "feature": _padded([t["feature"] for t in trees], max_nodes, 0),
        "threshold": _padded([t["threshold"] for t in trees], max_nodes, 0.0),
        "missing_left": _padded([t["missing_left"] for t in trees], max_nodes, 0),
        "category_row": _padded([t["category_row"] for t in trees], max_nodes, 0),
        "left": _padded([t["left"] for t in trees], max_nodes, 0),
        "right": _padded([t["right"] for t in trees], max_nodes, 0),
        "leaf_value": _padded([t["leaf_value"] for t in trees], max_leaves, 0.0),
        "leaf_count": [len(t["leaf_value"]) for t in trees],
        "category_left": table,
        "link": _link(estimator, task),
        "columns": _class_columns(estimator, task, n_classes),
    }


def _input_positions(estimator: Any, width: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Which input position each of sklearn's feature indices reads, and the
    raw codes behind each categorical feature's encoded categories. With
    categorical features sklearn 1.4+ runs an OrdinalEncoder first and moves
    the categorical columns to the front, so tree nodes index that
    rearranged, re-encoded matrix, not the input."""
    preprocessor = getattr(estimator, "_preprocessor", None)
    if preprocessor is None:
        return np.arange(width), {}
    mask = np.asarray(estimator.is_categorical_, dtype=bool)
    positions = np.empty(width, dtype=int)
    positions[preprocessor.output_indices_["encoder"]] = np.flatnonzero(mask)
    positions[preprocessor.output_indices_["numerical"]] = np.flatnonzero(~mask)
    encoder = preprocessor.named_transformers_["encoder"]
    categories = {}
    encoded = preprocessor.output_indices_["encoder"]
    for feature, raw in zip(range(encoded.start, encoded.stop), encoder.categories_):
        raw = np.asarray(raw, dtype="float64")
        categories[feature] = raw[~np.isnan(raw)]
    return positions, categories


def _known_categories(estimator: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bitsets of the encoded categories binning saw, per categorical feature."""
    known, row = estimator._bin_mapper.make_known_categories_bitsets()
    return np.asarray(known), np.asarray(row)


def _in_bitset(bitset: np.ndarray, value: int) -> bool:
    return bool((int(bitset[value // 32]) >> (value % 32)) & 1)


def _category_row(node: Any, raw_left: np.ndarray, raw_codes: np.ndarray, known: np.ndarray, codes: int) -> list[int]:
    """Which codes go left at one categorical split, as sklearn's predict
    decides: the code is mapped to its encoded category (a code training never
    saw has none); a category in the split's left bitset goes left, another
    known one right, and an unknown one (like a missing value) the way
    missing values go."""
    missing_left = int(node["missing_go_to_left"])
    row = [missing_left] * codes
    for encoded, code in enumerate(raw_codes):
        if code != int(code) or not 0 <= code < codes:
            continue
        if _in_bitset(raw_left, encoded):
            row[int(code)] = 1
        elif _in_bitset(known, encoded):
            row[int(code)] = 0
    return row


def _tree_arrays(
    predictor: Any,
    features: np.ndarray,
    categories: dict[int, np.ndarray],
    known: np.ndarray,
    known_row: np.ndarray,
    table: list[list[int]],
    codes: int,
) -> dict[str, list]:
    """One sklearn tree renumbered: internal nodes 0.. (root first) and leaves
    0..; a child is an internal node's number, or ``-1 - leaf`` for a leaf.
    Categorical splits append their row to `table`."""
    nodes = predictor.nodes
    internal = np.flatnonzero(nodes["is_leaf"] == 0)
    leaves = np.flatnonzero(nodes["is_leaf"] != 0)
    if len(internal) and internal[0] != 0:
        raise ValueError("an sklearn tree whose root is not its first node")
    number = {int(i): k for k, i in enumerate(internal)} | {int(i): -1 - k for k, i in enumerate(leaves)}
    out: dict[str, list] = {key: [] for key in ("feature", "threshold", "missing_left", "category_row", "left", "right")}
    for i in internal:
        node = nodes[i]
        feature = int(node["feature_idx"])
        out["feature"].append(int(features[feature]))
        out["missing_left"].append(int(node["missing_go_to_left"]))
        out["left"].append(number[int(node["left"])])
        out["right"].append(number[int(node["right"])])
        if node["is_categorical"]:
            table.append(
                _category_row(
                    node, predictor.raw_left_cat_bitsets[int(node["bitset_idx"])], categories[feature],
                    known[int(known_row[feature])], codes,
                )
            )
            out["category_row"].append(len(table) - 1)
            out["threshold"].append(0.0)
        else:
            out["category_row"].append(0)
            out["threshold"].append(float32_floor(float(node["num_threshold"])))
    out["leaf_value"] = [float(nodes[i]["value"]) for i in leaves]
    return out


def _padded(rows: list[list], size: int, fill: Any) -> list[list]:
    """Trees padded to one node (or leaf) count, so they stack into tensors."""
    return [list(row) + [fill] * (size - len(row)) for row in rows]


def _link(estimator: Any, task: Task) -> str:
    """How raw scores become outputs, as the estimator's own predict does."""
    if task == "classification":
        return "sigmoid" if estimator.n_trees_per_iteration_ == 1 else "softmax"
    loss = getattr(estimator, "loss", "squared_error")
    if loss in ("poisson", "gamma"):
        return "exp"
    if loss not in ("squared_error", "absolute_error", "quantile"):
        raise ValueError(f"no Keras form for a regressor with loss {loss!r}")
    return "identity"


def _class_columns(estimator: Any, task: Task, n_classes: int) -> list[int]:
    """For each output column (class index), the estimator's probability
    column holding it, or -1 for a class it never saw (probability 0)."""
    if task == "regression":
        return [0]
    columns = [-1] * n_classes
    for column, label in enumerate(estimator.classes_):
        columns[int(label)] = column
    return columns


def path_matrices(left: np.ndarray, right: np.ndarray, leaf_count: np.ndarray, max_leaves: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tree, the (nodes, leaves) matrix of +1 (leaf in the node's left
    subtree), -1 (right subtree), 0 (neither), and per leaf how many of its
    ancestors it is left of. A row reaches a leaf exactly when its left/right
    decisions times the matrix reach that count; padding leaves need more
    than any tree has nodes, so no row reaches them."""
    trees, nodes = left.shape
    paths = np.zeros((trees, nodes, max_leaves), dtype="float32")
    need = np.full((trees, max_leaves), nodes + 1.0, dtype="float32")
    for t in range(trees):
        if leaf_count[t] == 1:  # a lone root leaf: reached by every row
            need[t, 0] = 0.0
            continue
        stack: list[tuple[int, list[tuple[int, float]]]] = [(0, [])]
        while stack:
            node, ancestors = stack.pop()
            for child, sign in ((int(left[t, node]), 1.0), (int(right[t, node]), -1.0)):
                trail = ancestors + [(node, sign)]
                if child >= 0:
                    stack.append((child, trail))
                    continue
                leaf = -1 - child
                for ancestor, direction in trail:
                    paths[t, ancestor, leaf] = direction
                need[t, leaf] = sum(1.0 for _, direction in trail if direction > 0)
    return paths, need


# --------------------------------------------------------------------------- #
# The Keras model
# --------------------------------------------------------------------------- #


def forest_model(
    forest: ForestFit | Any, layout: dict, task: Task, n_classes: int, name: str = "lockgate_forest"
) -> "keras.Model":
    """The fitted ensemble as a compiled Keras model taking the encoded row
    (like the table networks) and giving class probabilities or the value.
    It has no trainable weights; it is compiled only so it saves, logs and
    predicts like the networks."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    estimator = forest.estimator if isinstance(forest, ForestFit) else forest
    if int(estimator.n_features_in_) != int(layout["width"]):
        raise ValueError(f"the estimator reads {estimator.n_features_in_} inputs; the layout has {layout['width']}")
    config = ensemble_config(estimator, task, n_classes)
    output = "value" if task == "regression" else "probabilities"
    inputs = keras.Input(shape=(int(layout["width"]),), name="features", dtype="float32")
    outputs = register_forest_layer()(**config, name=output, dtype="float32")(inputs)
    model = keras.Model(inputs, outputs, name=name)
    if task == "regression":
        model.compile(optimizer=keras.optimizers.Adam(), loss="mse",
                      metrics=[keras.metrics.RootMeanSquaredError(name="rmse"), "mae"])
    else:
        model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def register_forest_layer() -> type:
    """The `TreeEnsemble` layer class, defined (and made known to Keras for
    loading saved models) on first use, so importing this module stays cheap."""
    if LAYER_NAME in _LAYERS:
        return _LAYERS[LAYER_NAME]
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras
    from keras import layers, ops

    @keras.saving.register_keras_serializable(package="lockgate")
    class TreeEnsemble(layers.Layer):
        """A boosted tree ensemble evaluated with dense tensor ops.

        Its configuration is the compact tree description (per node, per
        leaf, see `ensemble_config`); the dense path matrices are rebuilt from
        it, so a saved model's config stays small. The arrays are kept as
        numpy, not lists: Keras would wrap every nested list for tracking.
        NaN is found as ``x != x`` (TFLite has no IsNan op), and a leaf is
        reached when the path sum is within 0.5 of the count it needs, so a
        quantised export's inexact sums do not flip it."""

        def __init__(self, outputs, link, columns, **kwargs):
            arrays = {name: np.asarray(kwargs.pop(name), dtype) for name, dtype in ENSEMBLE_ARRAYS.items()}
            super().__init__(**kwargs)
            self.outputs, self.link, self.columns = int(outputs), str(link), tuple(int(c) for c in columns)
            self.arrays = arrays
            self.constants = _layer_constants(arrays)

        def call(self, x):
            c = self.constants
            values = ops.take(x, c["feature"], axis=1)  # (n, trees * nodes)
            missing = ops.not_equal(values, values)
            goes_left = ops.less_equal(values, c["threshold"])
            if c["categorical"] is not None:
                goes_left = ops.where(c["categorical"], self._code_goes_left(ops.where(missing, 0.0, values)), goes_left)
            goes_left = ops.where(missing, c["missing_left"], goes_left)
            decisions = ops.reshape(ops.cast(goes_left, "float32"), (-1, c["trees"], c["nodes"]))
            reached = ops.greater_equal(ops.matmul(ops.transpose(decisions, (1, 0, 2)), c["paths"]), c["need"])
            tree_values = ops.sum(ops.where(reached, c["leaf_value"], 0.0), axis=-1)  # (trees, n)
            per_output = ops.sum(ops.reshape(tree_values, (c["trees"] // self.outputs, self.outputs, -1)), axis=0)
            return self._outputs(ops.transpose(per_output) + c["baseline"])

        def _code_goes_left(self, codes):
            """A categorical split's lookup: whole codes within the table go
            the way it says, any other value the way missing values go."""
            c = self.constants
            highest = float(c["codes"] - 1)
            whole = ops.logical_and(
                ops.logical_and(ops.greater_equal(codes, 0.0), ops.less_equal(codes, highest)),
                ops.equal(codes, ops.floor(codes)),
            )
            index = ops.cast(ops.clip(codes, 0.0, highest), "int32") + c["category_offset"]
            return ops.where(whole, ops.take(c["category_left"], index), c["missing_left"])

        def _outputs(self, raw):
            if self.link == "identity":
                return raw
            if self.link == "exp":
                return ops.exp(raw)
            if self.link == "sigmoid":
                positive = ops.sigmoid(raw)
                probabilities = ops.concatenate([1.0 - positive, positive], axis=1)
            else:
                probabilities = ops.softmax(raw, axis=-1)
            available = int(probabilities.shape[1])
            if self.columns == tuple(range(available)):
                return probabilities
            # Classes the estimator never saw read an extra column of zeros.
            padded = ops.concatenate([probabilities, ops.zeros_like(probabilities[:, :1])], axis=1)
            return ops.take(padded, np.asarray([c if c >= 0 else available for c in self.columns], "int32"), axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], len(self.columns))

        def get_config(self):
            return super().get_config() | {"outputs": self.outputs, "link": self.link, "columns": list(self.columns)} | {
                name: array.tolist() for name, array in self.arrays.items()
            }

    _LAYERS[LAYER_NAME] = TreeEnsemble
    return TreeEnsemble


# The layer's array arguments and their types: float64 where sklearn's values
# must round-trip through the config exactly, float32 thresholds (already
# rounded down), small integers for flags and lookups.
ENSEMBLE_ARRAYS = {
    "baseline": "float64",
    "feature": "int32",
    "threshold": "float32",
    "missing_left": "int8",
    "category_row": "int32",
    "left": "int32",
    "right": "int32",
    "leaf_value": "float64",
    "leaf_count": "int32",
    "category_left": "int8",
}


def _layer_constants(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The dense arrays the layer computes with, flattened over (tree, node)
    where it gathers and compares. Categorical lookups are left out of the
    graph when no split is categorical."""
    trees, nodes = arrays["feature"].shape
    paths, need = path_matrices(arrays["left"], arrays["right"], arrays["leaf_count"], arrays["leaf_value"].shape[1])
    category_row = arrays["category_row"].reshape(-1)
    codes = arrays["category_left"].shape[1]
    return {
        "trees": trees,
        "nodes": nodes,
        "feature": arrays["feature"].reshape(-1),
        "threshold": arrays["threshold"].reshape(-1),
        "missing_left": arrays["missing_left"].reshape(-1).astype(bool),
        "categorical": category_row > 0 if (category_row > 0).any() else None,
        "codes": codes,
        "category_offset": (category_row * codes).astype("int32"),
        "category_left": arrays["category_left"].reshape(-1).astype(bool),
        "paths": paths,
        "need": (need - 0.5)[:, None, :],
        "leaf_value": arrays["leaf_value"].astype("float32")[:, None, :],
        "baseline": arrays["baseline"].astype("float32"),
    }
