"""What the service keeps of the traffic it serves, for the monitor.

Every served request can be logged (sampled by `serving.traffic_sample`) as
one JSON line: an id the client may send labels back for, the model version,
a *summary* of each input row and the model's outputs. The summary is the
same pure function here and on the champion's holdout
(`summarise_inputs`), so the monitor compares like with like:

- a table row: its model columns as the contract encodes them (numbers,
  category codes, datetime parts); a text cell becomes its word count, its
  share of words outside the column's vocabulary, and the mean log rank of
  its known words;
- an image: its mean, contrast (standard deviation), mean of each channel and
  sharpness (mean absolute difference of neighbouring pixels);
- a text: its characters and words, its share of words outside the
  vocabulary kept with the model, and the mean log rank of its known words;
  a model that takes token ids (its vocabulary in its meta) is summarised
  from the ids the service computed: words (up to its sequence length),
  unknown share and the mean log rank of known words (ids are ranks), as
  the characters are no longer at hand;
- other arrays: each value when there are at most 32, else the row's mean
  and standard deviation.

Nothing of the request's headers is kept (no keys, no addresses), and an
image or a text is kept only as its summary. Each worker appends to its own
file and starts a new one past `max_bytes`, keeping the newest `keep` files;
requests are queued and written about once a second (`TrafficLog`).

Numpy and pandas only: the service imports this module.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from lockgate.core.contract import FIRST_CODE, UNSEEN_CODE, TableContract
from lockgate.core.records import DatasetMeta
from lockgate.core.tokens import FIRST_WORD, UNKNOWN
from lockgate.serving.requests import RequestError

FeatureRole = Literal["numeric", "categorical"]
MAX_ARRAY_COLUMNS = 32  # arrays wider than this are summarised by row mean and spread
VOCABULARY_SIZE = 2000  # words kept with a text model for its monitored vocabulary
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class MonitoredFeature:
    """One monitored value per row: what it summarises and how it is tested
    (numbers by their distribution, categories by their shares)."""

    name: str
    role: FeatureRole
    source: str  # the column or input it comes from ("image", "text", "prediction", a table column)
    labels: tuple[str, ...] = ()  # categorical: the name of each code, for reports


# ---------------------------------------------------------------- inputs


def input_features(meta: DatasetMeta) -> list[MonitoredFeature]:
    """The monitored features of a model's input, by its kind of request."""
    if meta.inputs == "tables" and meta.table_contract() is not None:
        return _table_features(meta.table_contract())
    if meta.inputs == "images":
        channels = meta.input_shape[-1] if len(meta.input_shape) == 3 else 1
        names = ["mean", "contrast", "sharpness"] + ([f"channel{c}" for c in range(channels)] if channels > 1 else [])
        return [MonitoredFeature(f"image.{n}", "numeric", "image") for n in names]
    if meta.inputs == "texts":
        names = ("words", "unknown_share", "word_rank") if meta.vocabulary is not None else (
            "characters", "words", "unknown_share", "word_rank")
        return [MonitoredFeature(f"text.{n}", "numeric", "text") for n in names]
    width = int(np.prod(meta.input_shape)) if meta.input_shape else 1
    if width <= MAX_ARRAY_COLUMNS:
        names = (meta.feature_columns if len(meta.feature_columns) == width else [f"x{i}" for i in range(width)])
        return [MonitoredFeature(str(n), "numeric", str(n)) for n in names]
    return [MonitoredFeature(f"input.{n}", "numeric", "input") for n in ("mean", "spread")]


def summarise_inputs(x: np.ndarray, meta: DatasetMeta, vocabulary: dict[str, int] | None = None) -> np.ndarray:
    """One row of monitored values (float32, NaN where missing) per input row,
    in the order of `input_features(meta)`. `vocabulary` (word -> rank) is
    the text model's; without it a text's unknown share and rank are NaN."""
    if meta.inputs == "tables" and meta.table_contract() is not None:
        return _summarise_table(np.asarray(x, dtype="float32"), meta.table_contract())
    if meta.inputs == "images":
        return _summarise_images(np.asarray(x, dtype="float32"), meta)
    if meta.inputs == "texts" and meta.vocabulary is not None:
        return summarise_token_ids(np.asarray(x))
    if meta.inputs == "texts":
        return summarise_texts([str(t) for t in np.asarray(x, dtype=object).reshape(-1)], vocabulary)
    flat = np.asarray(x, dtype="float32").reshape(len(x), -1)
    if flat.shape[1] <= MAX_ARRAY_COLUMNS:
        return flat
    return np.stack([flat.mean(axis=1), flat.std(axis=1)], axis=1)


def _table_features(contract: TableContract) -> list[MonitoredFeature]:
    features = []
    for spec in contract.used:
        if spec.role == "numeric":
            features.append(MonitoredFeature(spec.name, "numeric", spec.name))
        elif spec.role == "datetime":
            features += [MonitoredFeature(f"{spec.name}.{part}", "numeric", spec.name) for part in spec.parts]
        elif spec.role == "text":
            features += [MonitoredFeature(f"{spec.name}.{n}", "numeric", spec.name)
                         for n in ("words", "unknown_share", "word_rank")]
        else:
            labels = ("(missing)", "(unseen)", *spec.vocabulary)
            features.append(MonitoredFeature(spec.name, "categorical", spec.name, labels))
    return features


def _summarise_table(x: np.ndarray, contract: TableContract) -> np.ndarray:
    blocks, position = [], 0
    for spec in contract.used:
        if spec.role == "text":
            blocks.append(_token_summary(x[:, position:position + spec.tokens]))
            position += spec.tokens
            continue
        width = len(spec.model_columns())
        blocks.append(x[:, position:position + width])
        position += width
    if not blocks:
        return np.zeros((len(x), 0), dtype="float32")
    return np.concatenate(blocks, axis=1).astype("float32")


def _token_summary(codes: np.ndarray) -> np.ndarray:
    """Word count, unknown share and mean log rank of known words, from a
    text cell's codes (0 padding, 1 unknown, 2.. known by frequency)."""
    words = (codes > 0).sum(axis=1).astype("float64")
    unknown = (codes == UNSEEN_CODE).sum(axis=1)
    known = codes >= FIRST_CODE
    log_rank = np.where(known, np.log1p(np.maximum(codes - FIRST_CODE, 0)), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unknown_share = np.where(words > 0, unknown / np.maximum(words, 1), np.nan)
        word_rank = np.where(known.sum(axis=1) > 0, log_rank / np.maximum(known.sum(axis=1), 1), np.nan)
    return np.stack([words, unknown_share, word_rank], axis=1).astype("float32")


def _summarise_images(x: np.ndarray, meta: DatasetMeta) -> np.ndarray:
    images = x.reshape(len(x), *meta.input_shape) if meta.input_shape else x
    if images.ndim == 3:
        images = images[..., None]
    flat = images.reshape(len(images), -1)
    sharpness = np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3)) if images.shape[2] > 1 else np.zeros(len(images))
    columns = [flat.mean(axis=1), flat.std(axis=1), sharpness]
    if images.shape[-1] > 1:
        columns += list(images.mean(axis=(1, 2)).T)
    return np.stack(columns, axis=1).astype("float32")


def text_vocabulary(texts: list[str], size: int = VOCABULARY_SIZE) -> dict[str, int]:
    """The `size` words found in most texts, each with its rank (0 the most
    common): kept with a text model so served texts are summarised against
    its training texts' words."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in set(_WORD.findall(text.lower())):
            counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:size]
    return {word: rank for rank, word in enumerate(ranked)}


def summarise_token_ids(ids: np.ndarray) -> np.ndarray:
    """Words, unknown share and mean log rank of the known words of each row
    of token ids (lockgate/core/tokens.py: 0 padding, 1 unknown, 2.. by rank)."""
    ids = np.asarray(ids, dtype="int64").reshape(len(ids), -1)
    present = ids > 0
    count = present.sum(axis=1).astype("float64")
    known = ids >= FIRST_WORD
    with np.errstate(invalid="ignore", divide="ignore"):
        unknown_share = np.where(count > 0, (ids == UNKNOWN).sum(axis=1) / count, np.nan)
        ranks = np.where(known, np.log1p(np.maximum(ids - FIRST_WORD, 0)), 0.0).sum(axis=1)
        word_rank = np.where(known.any(axis=1), ranks / known.sum(axis=1), np.nan)
    return np.stack([count, unknown_share, word_rank], axis=1).astype("float32")


def summarise_texts(texts: list[str], vocabulary: dict[str, int] | None) -> np.ndarray:
    rows = []
    for text in texts:
        words = _WORD.findall(text.lower())
        unknown_share = word_rank = np.nan
        if vocabulary is not None and words:
            ranks = [vocabulary[w] for w in words if w in vocabulary]
            unknown_share = 1.0 - len(ranks) / len(words)
            word_rank = float(np.mean(np.log1p(ranks))) if ranks else np.nan
        rows.append((len(text), len(words), unknown_share, word_rank))
    return np.asarray(rows, dtype="float32").reshape(len(texts), 4)


# ---------------------------------------------------------------- outputs


def output_features(meta: DatasetMeta) -> list[MonitoredFeature]:
    """The monitored features of a model's answers: the predicted class and
    the confidence in it, or the predicted value."""
    if meta.class_names:
        return [MonitoredFeature("prediction.class", "categorical", "prediction", tuple(meta.class_names)),
                MonitoredFeature("prediction.confidence", "numeric", "prediction")]
    return [MonitoredFeature("prediction.value", "numeric", "prediction")]


def summarise_outputs(outputs: np.ndarray, meta: DatasetMeta) -> np.ndarray:
    outputs = np.asarray(outputs, dtype="float32")
    if meta.class_names:
        return np.stack([outputs.argmax(axis=1).astype("float32"), outputs.max(axis=1)], axis=1)
    return outputs.reshape(len(outputs), -1)[:, :1]


# ---------------------------------------------------------------- the log


@dataclass
class RotatingLog:
    """Appends JSON lines to `<folder>/<prefix>-<pid>-<start>.jsonl`, one file
    per process, a new one past `max_bytes`; keeps this process's newest
    `keep` files. One `os.write` per call, so what was written is in the page
    cache even if the worker dies next."""

    folder: Path
    prefix: str
    max_bytes: int = 64 * 1024 * 1024
    keep: int = 8
    _fd: int = -1
    _written: int = 0
    _files: list[Path] = field(default_factory=list)

    def write(self, record: dict[str, Any]) -> None:
        self.write_many([record])

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Append the records as lines in one write (a new file first when they would pass `max_bytes`)."""
        lines = b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE) for r in records)
        if self._fd < 0 or (self._written and self._written + len(lines) > self.max_bytes):
            self._rotate()
        os.write(self._fd, lines)
        self._written += len(lines)

    def _rotate(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.prefix}-{os.getpid()}-{time.time_ns()}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._written = 0
        self._files.append(path)
        while len(self._files) > self.keep:
            self._files.pop(0).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def traffic_folder(home: Path, model_name: str) -> Path:
    """Where the traffic and the labels of one model's service are kept."""
    return Path(home) / "traffic" / model_name


class TrafficLog:
    """The service's log of what it served: for a sampled share of requests,
    the id, time, model version, endpoint, each row's summary and outputs.

    A request only queues its arrays (about a microsecond); the summaries
    are computed for everything queued at once, and written in one
    `os.write`, every `flush_s` by a daemon thread or as soon as
    `flush_rows` requests wait. Summarising and writing each request as it
    came cost a worker 12-17% more CPU a request on the digits model;
    queued, the numpy calls are paid once per flush. At most `flush_s` of
    records is in memory; the queue is also written when the process exits."""

    def __init__(self, folder: Path, meta: DatasetMeta, version: str, sample: float,
                 vocabulary: dict[str, int] | None = None, max_bytes: int = 64 * 1024 * 1024, keep: int = 8,
                 flush_s: float = 1.0, flush_rows: int = 1024) -> None:
        self.meta, self.version, self.sample, self.vocabulary = meta, version, sample, vocabulary
        self.log = RotatingLog(folder, "traffic", max_bytes, keep)
        self.labels = RotatingLog(folder, "labels", max_bytes, keep)
        self.flush_rows = flush_rows
        self._random = random.Random()
        self._queue: list[tuple[str, float, str, np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()
        if sample > 0.0:
            self._stop = threading.Event()
            threading.Thread(target=self._flush_every, args=(flush_s,), name="lockgate-traffic", daemon=True).start()
            atexit.register(self.flush)

    def record(self, endpoint: str, x: np.ndarray, outputs: np.ndarray) -> str | None:
        """Queue one answered request when it is sampled; its id, else None."""
        if self.sample <= 0.0 or (self.sample < 1.0 and self._random.random() >= self.sample):
            return None
        request_id = os.urandom(16).hex()
        self._queue.append((request_id, time.time(), endpoint, x, outputs))
        if len(self._queue) >= self.flush_rows:
            self.flush()
        return request_id

    def flush(self) -> None:
        """Summarise and write every queued request."""
        with self._lock:
            queued, self._queue = self._queue, []
            if not queued:
                return
            sizes = [len(item[3]) for item in queued]
            try:
                summaries = summarise_inputs(np.concatenate([item[3] for item in queued]), self.meta, self.vocabulary)
                outputs = np.concatenate([np.asarray(item[4], dtype="float32") for item in queued])
            except ValueError:  # requests of differing shapes (not from one model's checks): one at a time
                summaries = np.concatenate([summarise_inputs(item[3], self.meta, self.vocabulary) for item in queued])
                outputs = np.concatenate([np.asarray(item[4], dtype="float32") for item in queued])
            bounds = np.cumsum([0, *sizes])
            self.log.write_many([
                {"id": request_id, "at": round(at, 3), "version": self.version, "endpoint": endpoint,
                 "features": np.ascontiguousarray(summaries[bounds[i]:bounds[i + 1]]),
                 "outputs": np.ascontiguousarray(outputs[bounds[i]:bounds[i + 1]])}
                for i, (request_id, at, endpoint, _, _) in enumerate(queued)
            ])

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the log must never take the service down
                logging.getLogger("lockgate.traffic").warning("traffic log not written: %s", exc)

    def record_labels(self, labels: list[dict[str, Any]]) -> None:
        """Keep true labels sent for logged requests (already checked)."""
        with self._lock:
            self.labels.write({"at": round(time.time(), 3), "labels": labels})


def model_vocabulary(model_folder: Path) -> dict[str, int] | None:
    """The text vocabulary kept with a model (lockgate/training/reference.py), if any."""
    record = Path(model_folder) / "monitoring" / "reference.json"
    if not record.is_file():
        return None
    return orjson.loads(record.read_bytes()).get("vocabulary")


_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def checked_labels(labels: Any, meta: DatasetMeta, max_items: int) -> list[dict[str, Any]]:
    """The true labels a client sends to /feedback, checked: each names a
    logged request by its `request_id`, the row of that request (0 for the
    first), and its label, one of the model's classes or, for a regression,
    a finite number. A RequestError names the first problem."""
    if not isinstance(labels, list) or not labels:
        raise RequestError(400, "'labels' must be a non-empty list of {request_id, row, label} objects")
    if len(labels) > max_items:
        raise RequestError(413, f"{len(labels)} labels in one request; the limit is {max_items}")
    classes = set(meta.class_names)
    checked = []
    for i, item in enumerate(labels):
        if not isinstance(item, dict):
            raise RequestError(400, f"labels[{i}] must be an object with request_id, row and label")
        unknown = set(item) - {"request_id", "row", "label"}
        if unknown:
            raise RequestError(400, f"labels[{i}] has unknown fields: {', '.join(sorted(map(str, unknown)))}")
        request_id, row, label = item.get("request_id"), item.get("row", 0), item.get("label")
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            raise RequestError(400, f"labels[{i}].request_id must be the 32-hex-digit id an answer gave")
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise RequestError(400, f"labels[{i}].row must be a whole number from 0 (the row of that request)")
        if classes:
            if str(label) not in classes or label is None or isinstance(label, (dict, list)):
                shown = ", ".join(sorted(classes)[:10])
                raise RequestError(422, f"labels[{i}].label {label!r} is not one of the model's classes ({shown})")
            label = str(label)
        else:
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not np.isfinite(label):
                raise RequestError(422, f"labels[{i}].label must be a finite number for this regression model")
            label = float(label)
        checked.append({"request_id": request_id, "row": row, "label": label})
    return checked
