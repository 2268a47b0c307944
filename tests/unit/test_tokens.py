"""The one tokeniser: the same ids in training, evaluation and the service."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from lockgate.core.records import DatasetMeta
from lockgate.core.settings import TrainingSettings
from lockgate.core.tokens import FIRST_WORD, UNKNOWN, fit_vocabulary, token_ids, words
from lockgate.data.datasets import LoadedData, class_indices, split_for
from lockgate.families import family_for
from lockgate.serving.requests import requests_for

TEXTS = ["The film was GREAT!", "the plot: dull, dull & dull...", "a great cast; the end", "Great film."]


def test_words_are_lower_case_and_punctuation_breaks_them_except_apostrophes():
    assert words("Don't STOP: it's (really) good!!") == ["dont", "stop", "its", "really", "good"]
    assert words("See https://t.co/AbC #MAGA well-known") == ["see", "https", "t", "co", "abc", "maga", "well", "known"]
    assert words("  tabs\tand\nlines ") == ["tabs", "and", "lines"]
    assert words("...!?") == []
    assert words("café Ünïcode") == ["café", "ünïcode"]


def test_ids_are_ranked_by_document_frequency_with_padding_and_unknown_words():
    vocabulary = fit_vocabulary(TEXTS, max_tokens=100, sequence_length=6)
    # "the" and "great" are in three texts; "film" in two; ties alphabetical.
    assert vocabulary.words[:3] == ["great", "the", "film"]
    assert vocabulary.document_frequency[:3] == [3, 3, 2]
    ids = token_ids(["the GREAT, unseen film", ""], vocabulary)
    assert ids.dtype == np.int32 and ids.shape == (2, vocabulary.sequence_length)
    the, great, film = (FIRST_WORD + vocabulary.words.index(w) for w in ("the", "great", "film"))
    assert ids[0].tolist()[:4] == [the, great, UNKNOWN, film]
    assert not ids[0, 4:].any() and not ids[1].any()  # 0 pads


def test_long_texts_keep_their_first_words_and_the_vocabulary_its_most_common():
    vocabulary = fit_vocabulary(["one two three"] * 10 + ["four"], max_tokens=FIRST_WORD + 2, sequence_length=100)
    assert vocabulary.words == ["one", "three"]  # ten texts each; "four" and "two"... cut to the size
    assert vocabulary.sequence_length == 8  # at least 8, however short the texts
    ids = token_ids(["one " * 50], vocabulary)
    assert ids.shape == (1, 8) and (ids == FIRST_WORD).all()


def _text_data(texts: list[str], labels: list[str]) -> LoadedData:
    frame = pd.DataFrame({"review": texts, "label": labels})
    return LoadedData(name="t", family="text", frame=frame, target="label", text_column="review")


def test_the_service_tokenises_as_training_did():
    data = _text_data(TEXTS * 5, ["a", "b"] * 10)
    vocabulary = data.decide_vocabulary(TrainingSettings(max_tokens=100))
    trained = family_for("text").features(data)
    meta = DatasetMeta(name="t", family="text", target="label", feature_columns=["review"],
                       input_shape=[vocabulary.sequence_length], vocabulary=vocabulary)
    served = requests_for(meta).text_input(TEXTS * 5, meta, 100, 1000)
    np.testing.assert_array_equal(served, trained)
    # The vocabulary survives the trip through the Bento's lockgate.json.
    again = DatasetMeta.model_validate_json(meta.model_dump_json())
    np.testing.assert_array_equal(requests_for(again).text_input(TEXTS, again, 100, 1000), trained[:4])


def test_the_vocabulary_is_counted_on_the_training_split_only():
    texts = [f"common word{i}" for i in range(100)]
    data = _text_data(texts, ["a", "b"] * 50)
    settings = TrainingSettings(max_tokens=1000)
    vocabulary = data.decide_vocabulary(settings)
    _, y = class_indices(np.array(["a", "b"] * 50))
    train = split_for(y, settings)["train"]
    assert vocabulary.documents == len(train) < 80  # the holdout and validation rows left out
    assert sorted(vocabulary.words) == sorted(["common", *(f"word{i}" for i in train)])


def test_tokenising_a_request_is_fast():
    vocabulary = fit_vocabulary([f"word{i % 5000} other{i % 77} text" for i in range(20000)], 20000, 200)
    texts = ["a fairly ordinary review of a film, with forty words or so in it; " * 3] * 64
    started = time.perf_counter()
    for _ in range(10):
        token_ids(texts, vocabulary)
    per_text_ms = (time.perf_counter() - started) / 640 * 1000
    assert per_text_ms < 0.2, per_text_ms
