"""Reading data sets of every supported family, and snapshotting them.

A source is a name (``digits``, ``mnist``, ``cifar10``, ``imdb``) or a path: a
CSV/TSV or Parquet table (with a target column), a ``.npz`` with ``x`` and
``y``, or a folder with one sub-folder per class holding images or ``.txt``
files (the IMDB layout). Reading is lenient on purpose: what is wrong with the
data is reported by validation, not by a crash here.

The model family follows from the data unless settings name it: images; a
table whose one feature is free text (text classification); a table whose
numeric target takes many values (regression); else table classification.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from lockgate.core.contract import TableContract, encode, infer_contract, typed_frame
from lockgate.core.locks import atomic_write_text, unique_temporary
from lockgate.core.tokens import TextVocabulary, fit_vocabulary, token_ids
from lockgate.core.records import DatasetMeta, FamilyName
from lockgate.core.settings import TrainingSettings
from lockgate.families import family_for
from lockgate.serving.preprocessing import load_image_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
TEXT_SUFFIXES = {".txt"}
BUILTIN_SOURCES = ("digits", "mnist", "cifar10", "imdb")
# A numeric target with more distinct values than this is a regression target.
REGRESSION_MIN_DISTINCT = 20


TEXTS_FILE = "texts.parquet"  # a text snapshot's texts as validated


class DataLoadError(Exception):
    """The source could not be read at all (not a table, ragged rows, ...)."""


@dataclass
class LoadedData:
    """A data set as read, before validation decides whether to use it."""

    name: str
    family: FamilyName
    frame: pd.DataFrame  # what the expectation suite looks at
    target: str
    x: np.ndarray | None = None  # images only: (n, h, w, c) raw pixel values
    pixel_scale: float = 1.0
    problems: list[str] = field(default_factory=list)  # found while reading
    text_column: str | None = None  # text only: the column holding the text
    contract: TableContract | None = None  # tables, once validation has decided the roles
    vocabulary: TextVocabulary | None = None  # text, once validation has counted the training texts' words
    # Tables: rows left out because their label is missing, and per column
    # how many cells held a token that means "missing" ('n/a', '?', ...).
    unlabelled_rows: int = 0
    missing_tokens: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def is_table(self) -> bool:
        return family_for(self.family).table

    def decide_roles(self, training: "TrainingSettings", reference: DatasetMeta | None = None) -> TableContract:
        """A table's contract: the champion's roles if there is one, else
        inferred (or set in settings); statistics from this data."""
        champion = reference.table_contract() if reference is not None else None
        self.contract = infer_contract(
            self.frame, self.target, dict(training.columns), training.max_integer_categories,
            training.max_categories, reference=champion,
        )
        return self.contract

    def decide_vocabulary(self, training: "TrainingSettings") -> TextVocabulary:
        """A text data set's vocabulary, counted on the training split only
        (the rows the network learns from): a word seen only in held-out
        texts is unknown to the model, as it will be to the served one."""
        texts = self.frame[self.text_column].astype(str).to_numpy()
        labels = self.frame[self.target].astype(str).to_numpy()
        train = split_for(class_indices(labels)[1], training)["train"]
        self.vocabulary = fit_vocabulary(texts[train], training.max_tokens, training.sequence_length)
        return self.vocabulary

    @property
    def feature_columns(self) -> list[str]:
        """Columns the model reads; images have none (their pixels are the input)."""
        return family_for(self.family).feature_columns(self)

    @property
    def profile_columns(self) -> list[str]:
        """Columns whose statistics are compared with the champion's data."""
        return family_for(self.family).profile_columns(self)

    @property
    def is_regression(self) -> bool:
        return family_for(self.family).task == "regression"


def dataset_name(source: str) -> str:
    if source in BUILTIN_SOURCES:
        return source
    stem = Path(source).stem if Path(source).suffix else Path(source).name
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in stem.lower()).strip("-")
    return cleaned or "dataset"


def table_columns(source: str) -> list[str] | None:
    """The column names of a table file, read from its header only; None for
    anything that is not a readable table."""
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            # deferred: pyarrow loads only for Parquet files
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        elif suffix in (".csv", ".tsv", ".txt") and path.is_file():
            names = list(pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0).columns)
        else:
            return None
    except Exception:  # unreadable: validation will say why
        return None
    return [str(c).strip() for c in names]


def load_source(source: str, target: str | None = None, training: "TrainingSettings | None" = None) -> LoadedData:
    """Read a source into a LoadedData, raising DataLoadError if unreadable."""
    family = training.family if training else "auto"
    image_size = training.image_size if training else None
    if source == "digits":
        data = _load_digits()
    elif source in ("mnist", "cifar10"):
        data = _load_keras_dataset(source)
    elif source == "imdb":
        data = _load_imdb()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataLoadError(f"{source}: no such file or folder (or built-in data set: {', '.join(BUILTIN_SOURCES)})")
        if path.is_dir():
            data = _load_text_folder(path) if _holds_text_files(path) else _load_image_folder(path, image_size)
        elif path.suffix.lower() == ".npz":
            data = _load_npz(path)
        elif path.suffix.lower() in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
            if not target:
                raise DataLoadError(f"{path.name} is a table: name its label column with --target COLUMN")
            tokens = (training or TrainingSettings()).missing_tokens
            data = _table_family(_load_table(path, target, tokens), family, training.text_column if training else None)
        else:
            raise DataLoadError(
                f"{path.name}: unsupported file type {path.suffix.lower() or '(none)'}; "
                "use .csv, .tsv, .parquet, .npz or a folder of images or .txt files"
            )
    return _check_family(data, family)


def _check_family(data: LoadedData, family: str) -> LoadedData:
    """A family named in settings must be one this data can train."""
    if family == "auto" or family == data.family:
        return data
    if family_for(family).accepts(data):  # an unknown name is refused, naming the known ones
        data.family = family  # e.g. the user decides whether a numeric target is a class or a value
        return data
    raise DataLoadError(f"settings ask for the {family} family, but {data.name} holds {data.family} data")


def _table_family(data: LoadedData, family: str, text_column: str | None) -> LoadedData:
    """Decide whether a table is text, regression or classification data."""
    frame, target = data.frame, data.target
    features = [c for c in frame.columns if c != target]
    if text_column or family == "text":
        column = text_column or _text_column(frame, features)
        if column is None or column not in frame.columns:
            raise DataLoadError(
                f"{data.name}: no text column {('named ' + repr(column)) if column else 'found'}; "
                "name it with training.text_column"
            )
        return _as_text(data, column)
    column = _text_column(frame, features) if family == "auto" else None
    if column is not None and len(features) == 1:
        return _as_text(data, column)
    if family == "regression" or (family == "auto" and target in frame.columns and _looks_continuous(frame[target])):
        data.family = "regression"
    return data


def _as_text(data: LoadedData, column: str) -> LoadedData:
    """A table whose one feature is text, as text data; what reading found is kept."""
    frame, target = data.frame, data.target
    text = _text_data(data.name, frame[column], frame[target] if target in frame.columns else None, target, column)
    text.unlabelled_rows, text.missing_tokens = data.unlabelled_rows, data.missing_tokens
    return text


def _text_column(frame: pd.DataFrame, columns: list[str]) -> str | None:
    """The one column of free text (strings averaging three or more words)."""
    found = []
    for col in columns:
        values = frame[col]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            continue
        strings = values.dropna()
        strings = strings[strings.map(lambda v: isinstance(v, str))]
        if len(strings) and strings.str.split().str.len().mean() >= 3:
            found.append(col)
    return found[0] if len(found) == 1 else None


def _looks_continuous(target: pd.Series) -> bool:
    """Numbers with many values; judged on the labelled rows only, so gaps in
    the target (rows left out) never turn a regression into classes."""
    target = target.dropna()
    values = pd.to_numeric(target, errors="coerce")
    if not len(values) or values.notna().mean() < 0.99:
        return False
    distinct = values.dropna().nunique()
    fractional = bool((values.dropna() % 1 != 0).any())
    return distinct > REGRESSION_MIN_DISTINCT or (fractional and distinct > 2)


def _text_data(name: str, texts: pd.Series, labels: pd.Series | None, target: str, column: str) -> LoadedData:
    """A text data set: the text, its label, and the lengths validation profiles."""
    text = texts.where(texts.isna(), texts.astype(str))
    lengths = text.str.len()
    frame = pd.DataFrame({column: text, "text_length": lengths, "word_count": text.str.split().str.len()})
    if labels is not None:
        frame[target] = labels.to_numpy()
    return LoadedData(name=name, family="text", frame=frame, target=target, text_column=column)


def _holds_text_files(path: Path) -> bool:
    return any(f.suffix.lower() in TEXT_SUFFIXES for d in path.iterdir() if d.is_dir() for f in d.iterdir())


UNLABELLED_FOLDERS = {"unsup"}  # the IMDB archive's unlabelled reviews sit beside pos/ and neg/


def _load_text_folder(path: Path) -> LoadedData:
    """One sub-folder per class of .txt files, as in the IMDB reviews archive
    (whose `unsup/` folder of unlabelled reviews is not a class)."""
    texts, labels, problems = [], [], []
    folders = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")]
    for folder in sorted(d for d in folders if d.name not in UNLABELLED_FOLDERS):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in TEXT_SUFFIXES:
                continue
            try:
                texts.append(file.read_text(encoding="utf-8"))
                labels.append(folder.name)
            except (UnicodeDecodeError, OSError) as exc:
                problems.append(f"{file.relative_to(path)}: not UTF-8 text ({exc.__class__.__name__})")
    if not texts:
        raise DataLoadError(f"{path}: no readable .txt files in its class folders")
    data = _text_data(dataset_name(str(path)), pd.Series(texts, dtype=object), pd.Series(labels), "label", "text")
    data.problems = problems
    return data


def _load_imdb() -> LoadedData:
    """The IMDB reviews through keras.datasets (downloads on first use)."""
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    try:
        (x, y), _ = keras.datasets.imdb.load_data()
        index = keras.datasets.imdb.get_word_index()
    except Exception as exc:
        raise DataLoadError(f"could not load imdb through keras.datasets (it downloads on first use): {exc}") from exc
    texts, labels = imdb_texts(x, y, index)
    return _text_data("imdb", texts, labels, "label", "text")


def imdb_texts(reviews, y, word_index: dict[str, int]) -> tuple[pd.Series, pd.Series]:
    """Keras' IMDB word ids back to text: ids are offset by 3 (0 padding, 1
    start, 2 unknown), so the text model tokenises words as users write them."""
    words = {i + 3: w for w, i in word_index.items()}
    texts = [" ".join(words[i] for i in review if i > 2 and i in words) for review in reviews]
    labels = pd.Series(np.where(np.asarray(y) == 1, "positive", "negative"))
    return pd.Series(texts, dtype=object), labels


def _load_digits() -> LoadedData:
    """scikit-learn's digits, read from the file the package ships (what
    `load_digits` reads) without importing scikit-learn, which costs a second
    or more of every run's start."""
    spec = importlib.util.find_spec("sklearn")
    shipped = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if shipped is not None and shipped.is_file():
        table = np.loadtxt(shipped, delimiter=",")
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype("int64")
    else:
        # deferred: scikit-learn loads only where it is used
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, target = digits.images, digits.target
    return _image_data("digits", images[..., np.newaxis].astype("float32"), target.astype(str), pixel_scale=16.0)


def _load_keras_dataset(name: str) -> LoadedData:
    # deferred: Keras takes seconds to import; only code that builds, trains or loads a model needs it
    import keras

    loader = {"mnist": keras.datasets.mnist, "cifar10": keras.datasets.cifar10}[name]
    try:
        (x, y), _ = loader.load_data()
    except Exception as exc:  # the download needs the internet
        raise DataLoadError(f"could not load {name} through keras.datasets (it downloads on first use): {exc}") from exc
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return _image_data(name, x.astype("float32"), np.asarray(y).reshape(-1).astype(str), pixel_scale=255.0)


def _load_npz(path: Path) -> LoadedData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise DataLoadError(f"{path.name} must hold arrays 'x' and 'y'; missing {sorted(missing)}")
            x, y = archive["x"], archive["y"]
    except (ValueError, OSError) as exc:
        raise DataLoadError(f"{path.name} is not a readable .npz archive: {exc}") from exc
    if len(x) != len(y):
        raise DataLoadError(f"{path.name}: x has {len(x)} rows but y has {len(y)}")
    y = np.asarray(y).reshape(-1).astype(str)
    if x.ndim in (3, 4):
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if not np.issubdtype(x.dtype, np.number):
            raise DataLoadError(f"{path.name}: x must be numeric, got dtype {x.dtype}")
        x = x.astype("float32")
        finite = x[np.isfinite(x)]
        scale = 1.0 if finite.size and finite.max() <= 1.0 else 255.0
        return _image_data(dataset_name(str(path)), x, y, pixel_scale=scale)
    if x.ndim == 2:
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        frame["label"] = y
        return LoadedData(name=dataset_name(str(path)), family="tabular", frame=frame, target="label")
    raise DataLoadError(f"{path.name}: x must be 2-D (table) or 3/4-D (images), got shape {x.shape}")


def _load_table(path: Path, target: str, missing_tokens: Iterable[str]) -> LoadedData:
    """A table as read, with the cells that mean "missing" turned into gaps
    (and counted), and the rows without a label left out (and counted)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            head = path.read_bytes()[:4096]
            if b"\x00" in head:
                raise DataLoadError(f"{path.name} is a binary file, not a CSV text table")
            # Every cell as written, so the tokens that mean "missing" can be
            # counted before they become gaps.
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False, na_values=[])
    except DataLoadError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataLoadError(f"{path.name} is empty: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise DataLoadError(f"{path.name} is not a well-formed table (ragged rows?): {exc}".strip()) from exc
    except UnicodeDecodeError as exc:
        raise DataLoadError(f"{path.name} is not a UTF-8 text table: {exc}") from exc
    except Exception as exc:  # pyarrow and friends raise their own types
        raise DataLoadError(f"{path.name} could not be read as a table: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    frame, tokens = missing_tokens_to_gaps(frame, missing_tokens)
    unlabelled = 0
    if target in frame.columns:
        labelled = frame[target].notna()
        unlabelled = int((~labelled).sum())
        if unlabelled:
            frame = frame[labelled].reset_index(drop=True)
    return LoadedData(name=dataset_name(str(path)), family="tabular", frame=frame, target=target,
                      unlabelled_rows=unlabelled, missing_tokens=tokens)


def missing_tokens_to_gaps(frame: pd.DataFrame, tokens: Iterable[str]) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Text cells that mean "missing" ('n/a', '?', '-', blanks: compared
    stripped and in lower case) become gaps, counted per column and token;
    a text column that then holds only numbers becomes numeric, as a reader
    that knew the tokens would have read it."""
    wanted = {str(t).strip().lower() for t in tokens}
    counts: dict[str, dict[str, int]] = {}
    out = {}
    for name in frame.columns:
        values = frame[name]
        if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
            out[name] = values
            continue
        text = values.astype(str).str.strip()
        lowered = text.str.lower()
        missing = values.notna() & lowered.isin(wanted)
        if missing.any():
            found = text[missing].value_counts()
            counts[name] = {str(token): int(n) for token, n in found.items()}
            values = values.where(~missing, np.nan).astype(object)
        present = values.dropna()
        if len(present) and present.map(lambda v: isinstance(v, str)).all():
            numbers = pd.to_numeric(present, errors="coerce")
            if numbers.notna().all():
                values = pd.to_numeric(values, errors="coerce")
        out[name] = values
    return pd.DataFrame(out, index=frame.index), counts


def _load_image_folder(path: Path, image_size: tuple[int, int] | None) -> LoadedData:
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataLoadError(f"{path}: an image folder needs one sub-folder per class")
    files = [(f, d.name) for d in class_dirs for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataLoadError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    # deferred: Pillow loads only to read image files
    from PIL import Image

    problems: list[str] = []
    modes, sizes = Counter(), Counter()
    for file, _ in files:
        try:
            with Image.open(file) as img:
                modes["L" if img.mode in ("L", "1", "I", "I;16") else "RGB"] += 1
                sizes[(img.height, img.width)] += 1
        except Exception:
            pass
    channels = 1 if modes and modes.most_common(1)[0][0] == "L" else 3
    size = tuple(image_size) if image_size else (sizes.most_common(1)[0][0] if sizes else (32, 32))
    images, labels = [], []
    for file, label in files:
        try:
            images.append(load_image_file(file.read_bytes(), size, channels, pixel_scale=255.0))
            labels.append(label)
        except ValueError as exc:
            problems.append(f"{file.relative_to(path)}: {exc}")
    if not images:
        raise DataLoadError(f"{path}: none of the {len(files)} image files could be decoded")
    data = _image_data(dataset_name(str(path)), np.stack(images), np.asarray(labels), pixel_scale=255.0)
    data.problems = problems
    return data


def _image_data(name: str, x: np.ndarray, y: np.ndarray, pixel_scale: float) -> LoadedData:
    flat = x.reshape(len(x), -1) if len(x) else np.zeros((0, 1), dtype="float32")
    with np.errstate(all="ignore"):
        frame = pd.DataFrame(
            {
                "pixel_min": flat.min(axis=1) if len(x) else [],
                "pixel_max": flat.max(axis=1) if len(x) else [],
                "pixel_mean": flat.mean(axis=1) if len(x) else [],
                "pixel_std": flat.std(axis=1) if len(x) else [],
                "image_hash": [hashlib.sha1(row.tobytes()).hexdigest()[:16] for row in flat] if len(x) else [],
                "shape": ["x".join(str(d) for d in x.shape[1:])] * len(x),
                "label": y,
            }
        )
    return LoadedData(name=name, family="image", frame=frame, target="label", x=x, pixel_scale=pixel_scale)


@dataclass
class Snapshot:
    """The validated data in its training form, kept under its content hash."""

    folder: Path
    meta: DatasetMeta
    x: np.ndarray
    y: np.ndarray  # class indices

    @property
    def class_names(self) -> list[str]:
        return self.meta.class_names

    def raw_rows(self, rows: np.ndarray) -> pd.DataFrame | None:
        """A table's rows as validated (categories as text, gaps as null), in
        the snapshot's order; None for data that is not a table."""
        features = self.folder / "features.parquet"
        if not features.is_file():
            return None
        return pd.read_parquet(features).iloc[rows].reset_index(drop=True)

    def texts(self, rows: np.ndarray) -> np.ndarray | None:
        """A text data set's texts as validated, in the snapshot's order; None
        for other data (and for text snapshots written before tokenising)."""
        texts = self.folder / TEXTS_FILE
        if not texts.is_file():
            return None
        return pd.read_parquet(texts).iloc[:, 0].to_numpy(dtype=str)[rows]

    def inputs_for(self, model_meta: DatasetMeta, rows: np.ndarray) -> np.ndarray:
        """The input of another model (the champion's) for these rows: a table
        is encoded again with that model's own contract, a text tokenised
        with its vocabulary (a text model from before, which tokenised
        itself, gets the strings); other data as is."""
        if model_meta.inputs == "texts" and self.meta.vocabulary is not None:
            texts = self.texts(rows)
            if texts is not None:
                return token_ids(texts, model_meta.vocabulary) if model_meta.vocabulary is not None else texts
        contract = model_meta.table_contract()
        frame = self.raw_rows(rows) if contract is not None else None
        if frame is None:
            return self.x[rows]
        return encode(frame, contract)


def content_hash(
    x: np.ndarray, targets: np.ndarray, columns: list[str], family: str = "", contract: dict | None = None
) -> str:
    """The snapshot's identity: the model input and targets, and what they
    mean (columns, family, a table's contract). A column's `reason` is left
    out: it says how a role was decided ("numbers", "as in the champion's
    contract"), not what the data is, and must not make the same data new."""
    if contract is not None:
        contract = {**contract, "columns": [{k: v for k, v in column.items() if k != "reason"}
                                            for column in contract.get("columns", [])]}
    digest = hashlib.sha256()
    digest.update(json.dumps([list(x.shape), columns, family, contract], sort_keys=True).encode())
    if x.dtype.kind in "USO":
        digest.update("\x1e".join(map(str, x.tolist())).encode())
    else:
        digest.update(np.ascontiguousarray(x, dtype="float32").tobytes())
    digest.update("\x1f".join(map(str, targets.tolist())).encode())
    return digest.hexdigest()


def training_arrays(data: LoadedData) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets (string labels, or float values for regression);
    only call on data that passed validation."""
    if data.is_regression:
        targets = data.frame[data.target].to_numpy(dtype="float32")
    else:
        targets = data.frame[data.target].astype(str).to_numpy()
    return family_for(data.family).features(data), targets


def column_profile(frame: pd.DataFrame, columns: list[str]) -> dict[str, dict[str, float]]:
    profile = {}
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        profile[col] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=0)),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return profile


def snapshot_digest(data: LoadedData) -> str:
    """The content hash a snapshot of `data` is stored under."""
    x, targets = training_arrays(data)
    contract = data.contract.to_dict() if data.contract is not None else None
    if data.vocabulary is not None:  # the ids mean these words
        contract = data.vocabulary.model_dump()
    return content_hash(x, targets, data.feature_columns, data.family, contract)


def write_snapshot(data: LoadedData, root: Path, digest: str | None = None) -> tuple[Path, str, bool]:
    """Store validated data under its hash; return (folder, hash, seen_before).
    `digest` is `snapshot_digest(data)` when the caller has it already; data
    stored before is not encoded again."""
    digest = digest or snapshot_digest(data)
    folder = root / digest[:16]
    seen_before = (folder / "meta.json").is_file()
    if not seen_before:
        x, targets = training_arrays(data)
        columns = data.feature_columns
        contract = data.contract.to_dict() if data.contract is not None else None
        folder.mkdir(parents=True, exist_ok=True)
        if data.is_regression:
            class_names, y = [], targets.astype("float32")
        else:
            class_names, y = class_indices(targets)
        # Two runs of the same data may write this folder at once: each writes
        # its own temporary files and renames them into place (same content),
        # and meta.json, which marks the snapshot complete, goes last.
        tmp = unique_temporary(folder / "data.npz")
        np.savez_compressed(tmp, x=x, y=y)
        tmp.replace(folder / "data.npz")
        if data.contract is not None:  # raw rows, typed, to encode again with another model's contract
            tmp = unique_temporary(folder / "features.parquet")
            typed_frame(data.frame, data.contract).to_parquet(tmp, index=False)
            tmp.replace(folder / "features.parquet")
        if data.vocabulary is not None:  # raw texts, to tokenise again with another model's vocabulary
            tmp = unique_temporary(folder / TEXTS_FILE)
            data.frame[[data.text_column]].astype(str).to_parquet(tmp, index=False)
            tmp.replace(folder / TEXTS_FILE)
        meta = DatasetMeta(
            name=data.name,
            family=data.family,
            task=family_for(data.family).task,
            inputs=family_for(data.family).inputs,
            target=data.target,
            feature_columns=columns,
            class_names=class_names,
            input_shape=list(x.shape[1:]),
            pixel_scale=data.pixel_scale,
            text_column=data.text_column,
            target_stats=column_profile(data.frame, [data.target])[data.target] if data.is_regression else None,
            rows=int(len(x)),
            contract=contract,
            model_columns=data.contract.model_columns() if data.contract is not None else None,
            vocabulary=data.vocabulary,
            data_hash=digest,
            profile=column_profile(data.frame, data.profile_columns),
        )
        atomic_write_text(folder / "meta.json", meta.model_dump_json(indent=2))
    return folder, digest, seen_before


def read_snapshot(folder: str | Path) -> Snapshot:
    folder = Path(folder)
    meta = DatasetMeta.model_validate_json((folder / "meta.json").read_text())
    with np.load(folder / "data.npz") as archive:
        return Snapshot(folder=folder, meta=meta, x=archive["x"], y=archive["y"])


def class_indices(labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The class names in order (numbers by value) and each label's index."""
    class_names = sorted(set(labels.tolist()), key=_label_sort_key)
    index = {name: i for i, name in enumerate(class_names)}
    return class_names, np.array([index[v] for v in labels], dtype="int64")


def _label_sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def split_for(y: np.ndarray, training: "TrainingSettings") -> dict[str, np.ndarray]:
    """The pipeline's split of `y`, as the training settings define it."""
    return split_indices(y, training.holdout_fraction, training.validation_fraction, training.seed)


def split_indices(y: np.ndarray, holdout: float, validation: float, seed: int) -> dict[str, np.ndarray]:
    """A deterministic, stratified train/validation/holdout split."""
    # deferred: scikit-learn loads only where it is used
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    classes = y if y.dtype.kind in "iu" else _value_bins(y)  # regression: stratify by quantile

    def _split(idx: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        labels = classes[idx]
        counts = np.bincount(labels)
        stratify = labels if counts[counts > 0].min() >= 2 else None
        try:
            return train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
        except ValueError:  # too few rows per class for a stratified split
            return train_test_split(idx, test_size=fraction, random_state=seed)

    rest, holdout_idx = _split(index, holdout)
    train_idx, val_idx = _split(rest, validation)
    return {"train": np.sort(train_idx), "validation": np.sort(val_idx), "holdout": np.sort(holdout_idx)}


def _value_bins(values: np.ndarray, bins: int = 5) -> np.ndarray:
    """Quantile bins of a regression target, so every split covers its range."""
    if len(values) < bins * 4:
        return np.zeros(len(values), dtype="int64")
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values).astype("int64")
