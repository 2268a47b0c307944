"""Text architectures over token ids: what explanations rely on, the bag
model's own hashing and idf weights, and export parity."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import ExportSettings, TrainingSettings
from lockgate.core.tokens import fit_vocabulary, token_ids
from lockgate.export import export_model
from lockgate.families import family_for
from lockgate.models.architectures import build_model, load_keras_model, predict_outputs
from lockgate.models.tfidf import BIGRAM_BUCKETS, bigram_buckets, inverse_document_frequency

ARCHITECTURES = [a for a in family_for("text").architectures if a != "tfidf"]  # tfidf: tests/unit/test_tfidf.py


def _sentences(n: int = 120, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The label is in one word (or in "not" before it)."""
    rng = np.random.default_rng(seed)
    good, bad = ["good", "great", "lovely", "superb"], ["bad", "awful", "poor", "dull"]
    filler = ["the", "film", "was", "really", "quite", "a", "plot", "and", "cast"]
    texts, labels = [], []
    for i in range(n):
        words = [*rng.choice(filler, int(rng.integers(3, 9))), rng.choice(good if i % 2 else bad)]
        rng.shuffle(words)
        texts.append(" ".join(words) + ("!" if i % 3 else "."))
        labels.append(i % 2)
    return texts, np.array(labels, dtype="int64")


@pytest.fixture(scope="module")
def text_data() -> tuple[DatasetMeta, np.ndarray, np.ndarray]:
    texts, y = _sentences()
    vocabulary = fit_vocabulary(texts, max_tokens=100, sequence_length=12)
    meta = DatasetMeta(name="t", family="text", target="label", feature_columns=["text"], class_names=["neg", "pos"],
                       input_shape=[vocabulary.sequence_length], vocabulary=vocabulary)
    return meta, token_ids(texts, vocabulary), y


def _model(meta: DatasetMeta, x: np.ndarray, y: np.ndarray, architecture: str, epochs: int = 0):
    import keras

    keras.utils.set_random_seed(0)
    settings = TrainingSettings(architecture=architecture)
    model = build_model(family_for("text"), meta, x, y, settings)
    if epochs:
        model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_model_from_ids_and_embeddings_reproduces_the_model(text_data, architecture):
    """Integrated gradients over the embedding need: one int32 ids input, the
    first layer "embed" giving (batch, sequence, width), and a mask computed
    from the ids (not carried by the embedding's output)."""
    import keras

    meta, x, y = text_data
    model = _model(meta, x, y, architecture, epochs=1)
    assert len(model.inputs) == 1
    ids = model.inputs[0]
    assert ids.dtype == "int32" and tuple(ids.shape) == (None, meta.vocabulary.sequence_length)
    embed = model.get_layer("embed")
    assert model.layers[1] is embed  # the first layer after the input
    assert not getattr(embed, "mask_zero", False)
    assert embed.output.shape[:2] == (None, meta.vocabulary.sequence_length) and len(embed.output.shape) == 3
    through_embeddings = keras.Model([ids, embed.output], model.output)
    batch = keras.ops.convert_to_tensor(x[:16])
    embeddings = keras.Model(ids, embed.output)(batch)
    np.testing.assert_allclose(
        np.asarray(through_embeddings([batch, embeddings])), np.asarray(model(batch)), rtol=1e-5, atol=1e-6
    )
    # Changing the embedding changes the answer: the graph does not bypass it.
    shifted = np.asarray(through_embeddings([batch, embeddings + 0.5]))
    assert not np.allclose(shifted, np.asarray(model(batch)))


def test_the_bag_model_hashes_word_pairs_as_numpy_does(text_data):
    import keras

    meta, x, y = text_data
    model = _model(meta, x, y, "bag")
    embed = model.get_layer("embed")
    buckets = bigram_buckets(x, embed.buckets)
    assert buckets.min() >= 0 and buckets.max() < embed.buckets
    # Pairs only where both words are present: the last word and the padding have none.
    assert ((buckets > 0) == ((x > 0) & (np.roll(x, -1, axis=1) > 0) & (np.arange(x.shape[1]) < x.shape[1] - 1))).all()
    # The layer's output at each position is its word's and its pair's embedding, idf weighted.
    words, pairs = np.asarray(embed.words.embeddings), np.asarray(embed.pairs.embeddings)
    word_idf, pair_idf = np.asarray(embed.word_idf), np.asarray(embed.pair_idf)
    expected = words[x] * word_idf[x][..., None] + pairs[buckets] * pair_idf[buckets][..., None]
    np.testing.assert_allclose(np.asarray(keras.Model(model.inputs[0], embed.output)(x)), expected, rtol=1e-5, atol=1e-6)
    # idf as scikit-learn's smooth idf, from the training ids; padding and one-off pairs weigh nothing.
    np.testing.assert_allclose(word_idf, inverse_document_frequency(x, meta.vocabulary.size, min_documents=1))
    assert word_idf[0] == 0 and pair_idf[0] == 0
    assert embed.buckets == BIGRAM_BUCKETS and not embed.word_idf.trainable


def test_idf_counts_documents_not_repeats():
    codes = np.array([[2, 2, 2, 0], [2, 3, 0, 0], [4, 0, 0, 0]])
    idf = inverse_document_frequency(codes, 5, min_documents=1)
    n = 3
    assert idf[2] == pytest.approx(np.log((1 + n) / (1 + 2)) + 1)
    assert idf[3] == pytest.approx(np.log((1 + n) / (1 + 1)) + 1)
    assert idf[0] == 0 and idf[1] == 0
    assert inverse_document_frequency(codes, 5)[3] == 0  # in one text only


@pytest.mark.parametrize("architecture", ["bag", "lstm"])
def test_text_models_learn_save_and_export_to_onnx_and_tflite_with_parity(text_data, tmp_path, architecture):
    meta, x, y = text_data
    model = _model(meta, x, y, architecture, epochs=25)
    accuracy = float((predict_outputs(model, x).argmax(axis=1) == y).mean())
    assert accuracy >= 0.9, accuracy
    model.save(tmp_path / "text.keras")
    np.testing.assert_allclose(predict_outputs(load_keras_model(tmp_path / "text.keras"), x), predict_outputs(model, x),
                               atol=1e-6)
    settings = ExportSettings(latency_repeats=5, representative_examples=50, formats=["onnx", "tflite_dynamic"])
    results = {r.format: r for r in export_model(
        model, "text", tmp_path / "exports", x[:60], y[:60], x[:10], settings,
        task="classification", int8_quantisation=False,
    )}
    assert results["onnx"].status == "passed", results["onnx"].reason
    assert results["onnx"].shipped
    if architecture == "bag":  # integer ops and gathers only: TFLite's builtins run it
        assert results["tflite_dynamic"].status == "passed", results["tflite_dynamic"].reason
