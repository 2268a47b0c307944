"""Where a model's gradients start, per kind of input.

Integrated gradients need a continuous input. Pixels are one; a table row's
category codes and a text's token ids are not, so for those the path runs
through what the model makes of them first: the table's feature vector
(standardised numbers, missing flags, category embeddings) and the text's
token embeddings. Attributions there are summed back to what a person reads:
a column, a pixel, a token. A kind is one class and one line in `STARTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from lockgate.core.records import DatasetMeta


class NotDifferentiable(Exception):
    """The model's output has no useful gradient (trees), or no continuous
    input to start from; the message says which, in words for a report."""


@dataclass(frozen=True)
class GradientStart:
    """The continuous input the path runs along, and how its dimensions add
    up to the features people read."""

    call: Callable[[Any, Any], Any]  # (explained input, context), backend tensors -> the model's outputs
    x: np.ndarray  # float32, (n, ...)
    baseline: np.ndarray  # float32, broadcastable to x
    baseline_words: str  # what the baseline is, for the card
    feature_names: list[str]  # of per_feature's columns; empty where they differ by example (tokens)
    grouping: np.ndarray | None = None  # (input dims, features) 0/1, or None: sum the last axis
    context: np.ndarray | None = None  # per example, fixed along the path (a text's token ids)

    def per_feature(self, values: np.ndarray) -> np.ndarray:
        """Attributions of the input's dimensions summed per feature: (n, features)."""
        if self.grouping is not None:
            return values.reshape(len(values), -1) @ self.grouping
        return values.sum(axis=-1).reshape(len(values), -1)


def _layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _layers(layer)
    return found


def refuse_trees(model: Any) -> None:
    """Trees are step functions: their gradient is zero almost everywhere, so
    integrated gradients would say nothing (permutation importance still does)."""
    if any(type(layer).__name__ == "TreeEnsemble" for layer in _layers(model)):
        raise NotDifferentiable(
            "the model contains gradient-boosted trees, whose gradient is zero almost everywhere: "
            "integrated gradients do not apply, permutation importance is the explanation"
        )


def _called(model: Any) -> Callable[[Any, Any], Any]:
    return lambda tensor, context: model(tensor, training=False)


class Start:
    kind: ClassVar[str]

    def start(self, model: Any, x: np.ndarray, meta: DatasetMeta) -> GradientStart:
        raise NotImplementedError


class Pixels(Start):
    """Images: the pixels themselves, from a black image."""

    kind = "images"

    def start(self, model: Any, x: np.ndarray, meta: DatasetMeta) -> GradientStart:
        refuse_trees(model)
        shape = x.shape[1:]
        names = [f"pixel ({r}, {c})" for r in range(shape[0]) for c in range(shape[1])]
        return GradientStart(_called(model), x.astype("float32"), np.zeros(shape, "float32"),
                             "a black image (every pixel 0)", names)


class Values(Start):
    """Plain arrays: each value, from all zeros."""

    kind = "arrays"

    def start(self, model: Any, x: np.ndarray, meta: DatasetMeta) -> GradientStart:
        refuse_trees(model)
        flat = x.reshape(len(x), -1).astype("float32")
        width = flat.shape[1]
        return GradientStart(_called(model), flat, np.zeros(width, "float32"), "all zeros",
                             [f"x{i}" for i in range(width)], np.eye(width, dtype="float32"))


class TableColumns(Start):
    """Tables: the feature vector the table layer makes of a row, from the
    vector of an average row (every number at its training mean, nothing
    missing, every category embedding zero); summed back per source column."""

    kind = "tables"

    def start(self, model: Any, x: np.ndarray, meta: DatasetMeta) -> GradientStart:
        import keras  # deferred: Keras takes seconds to import; only explaining a model needs it

        refuse_trees(model)
        try:
            table = model.get_layer("table_features")
        except ValueError:
            raise NotDifferentiable("the model has no table feature layer to start the gradients from") from None
        body = keras.Model(table.output, model.output)
        features = np.asarray(table(x.astype("float32")), dtype="float32")
        contract = meta.table_contract()
        columns = source_columns(contract)
        names = [spec.name for spec in contract.used]
        grouping = np.zeros((features.shape[1], len(names)), dtype="float32")
        dim = 0
        for position in table.numeric:  # standardised values, then their missing flags
            grouping[dim, names.index(columns[position])] = 1.0
            dim += 1
        for position in table.numeric:
            grouping[dim, names.index(columns[position])] = 1.0
            dim += 1
        for position, embedding in zip(table.categorical, table.embeddings):
            grouping[dim : dim + embedding.output_dim, names.index(columns[position])] = 1.0
            dim += embedding.output_dim
        for (positions, _), embedding in zip(table.texts, table.word_embeddings):
            grouping[dim : dim + embedding.output_dim, names.index(columns[positions[0]])] = 1.0
            dim += embedding.output_dim
        return GradientStart(_called(body), features, np.zeros(features.shape[1], "float32"),
                             "an average row: every number at its training mean, nothing missing, "
                             "every category embedding zero", names, grouping)


def source_columns(contract: Any) -> list[str]:
    """The source column of each position of an encoded row."""
    return [spec.name for spec in contract.used for _ in spec.model_columns()]


class TokenEmbeddings(Start):
    """Texts: the embeddings of a text's tokens, from all-zero embeddings at
    the same positions (padding stays padding); summed per token."""

    kind = "texts"

    def start(self, model: Any, x: np.ndarray, meta: DatasetMeta) -> GradientStart:
        import keras  # deferred: Keras takes seconds to import; only explaining a model needs it

        refuse_trees(model)
        ids = np.asarray(x)
        if ids.dtype.kind in "USO":
            raise NotDifferentiable("the model tokenises text inside its graph, so there is no embedding to start from")
        try:
            embed = model.get_layer("embed")
        except ValueError:
            raise NotDifferentiable("the text model has no 'embed' layer to start the gradients from") from None
        body = keras.Model([model.inputs[0], embed.output], model.output)
        embeddings = np.asarray(embed(ids), dtype="float32")
        return GradientStart(lambda e, tokens: body([tokens, e], training=False), embeddings,
                             np.zeros(embeddings.shape[1:], "float32"),
                             "zero embeddings at every token position (the same padding)", [],
                             context=ids.astype("int32"))


STARTS: dict[str, Start] = {s.kind: s for s in (Pixels(), Values(), TableColumns(), TokenEmbeddings())}


def gradient_start(kind: str, model: Any, x: np.ndarray, meta: DatasetMeta) -> GradientStart:
    if kind not in STARTS:
        raise NotDifferentiable(f"no gradient start is registered for {kind!r} inputs")
    return STARTS[kind].start(model, x, meta)
