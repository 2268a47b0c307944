"""Text into integer ids, outside the model graph.

A text model's graph takes integer ids, not strings, so every export format
(ONNX, TFLite, SavedModel) runs the same numeric input and is checked for
parity on it, and the service runs no string ops. This module is the one
tokeniser: training, evaluation, the champion's scoring, the traffic summary
and the service all call `token_ids` with the model's `TextVocabulary`
(kept in its DatasetMeta, so it reaches the Bento).

Standardisation: lower case, apostrophes removed ("don't" is "dont"), every
other ASCII punctuation mark a break between words (a link, a hashtag or
"well-known" splits into its words, as scikit-learn's TF-IDF splits them),
then split on whitespace. Ids: 0 padding, 1 a word the vocabulary does not hold, 2.. its
words, the most frequent first.
"""

from __future__ import annotations

import string
from typing import Iterable

import numpy as np
from pydantic import BaseModel, PrivateAttr

PADDING, UNKNOWN, FIRST_WORD = 0, 1, 2
# Apostrophes are deleted (contractions stay one word); other marks break words.
_PUNCTUATION = str.maketrans({mark: " " for mark in string.punctuation if mark != "'"} | {"'": None})


def words(text: str) -> list[str]:
    """A text's words: lower case, apostrophes removed, other punctuation a break."""
    return text.lower().translate(_PUNCTUATION).split()


class TextVocabulary(BaseModel):
    """The words a text model knows, with what was counted to choose them."""

    words: list[str]  # id 2 first, in order
    document_frequency: list[int]  # training texts holding each word
    documents: int  # training texts counted
    sequence_length: int  # ids per text: its first words, padded with 0
    standardize: str = "lower case, apostrophes removed, other punctuation splits words"
    _index: dict[str, int] | None = PrivateAttr(default=None)

    @property
    def size(self) -> int:
        """Ids in use: padding, unknown and every word."""
        return FIRST_WORD + len(self.words)

    def index(self) -> dict[str, int]:
        """Word -> id, built once per vocabulary (the service looks up every request)."""
        if self._index is None:
            self._index = {word: i + FIRST_WORD for i, word in enumerate(self.words)}
        return self._index


def fit_vocabulary(texts: Iterable[str], max_tokens: int, sequence_length: int) -> TextVocabulary:
    """The `max_tokens - 2` words found in most texts (ties alphabetical), and
    a sequence length no longer than nearly all texts (the 95th percentile of
    words, at least 8, at most `sequence_length`): padding most of every
    sequence only slows a recurrent model down."""
    counts: dict[str, int] = {}
    lengths = []
    documents = 0
    for text in texts:
        found = words(str(text))
        lengths.append(len(found))
        documents += 1
        for word in set(found):
            counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, max_tokens - FIRST_WORD)]
    typical = float(np.percentile(lengths, 95)) if lengths else 8.0
    return TextVocabulary(
        words=ranked, document_frequency=[counts[w] for w in ranked], documents=documents,
        sequence_length=int(min(sequence_length, max(8, round(typical)))),
    )


def token_ids(texts: Iterable[str], vocabulary: TextVocabulary) -> np.ndarray:
    """Each text's first `sequence_length` words as ids, int32 of shape
    (n, sequence_length), 0-padded."""
    index, length = vocabulary.index(), vocabulary.sequence_length
    rows = [[index.get(w, UNKNOWN) for w in words(str(t))[:length]] for t in texts]
    ids = np.zeros((len(rows), length), dtype="int32")
    for row, found in enumerate(rows):
        ids[row, : len(found)] = found
    return ids
