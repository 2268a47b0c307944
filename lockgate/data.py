"""Reading data sets of every supported kind, and snapshotting them.

A source is a name (``digits``, ``mnist``, ``cifar10``) or a path: a CSV/TSV or
Parquet table (with a target column), a ``.npz`` with ``x`` and ``y``, or a
folder of images with one sub-folder per class. Reading is lenient on purpose:
what is wrong with the data is reported by validation, not by a crash here.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lockgate.preprocessing import load_image_file
from lockgate.records import DatasetKind

if TYPE_CHECKING:
    from lockgate.settings import TrainingSettings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
BUILTIN_SOURCES = ("digits", "mnist", "cifar10")


class DataLoadError(Exception):
    """The source could not be read at all (not a table, ragged rows, ...)."""


@dataclass
class LoadedData:
    """A data set as read, before validation decides whether to use it."""

    name: str
    kind: DatasetKind
    frame: pd.DataFrame  # what the expectation suite looks at
    target: str
    x: np.ndarray | None = None  # images only: (n, h, w, c) raw pixel values
    pixel_scale: float = 1.0
    problems: list[str] = field(default_factory=list)  # found while reading

    @property
    def feature_columns(self) -> list[str]:
        """Model inputs of a table; images have none (their pixels are the input)."""
        if self.kind == "image":
            return []
        return [c for c in self.frame.columns if c != self.target]

    @property
    def profile_columns(self) -> list[str]:
        """Columns whose statistics are compared with the champion's data."""
        if self.kind == "image":
            return ["pixel_mean", "pixel_std"]
        return self.feature_columns


def dataset_name(source: str) -> str:
    if source in BUILTIN_SOURCES:
        return source
    stem = Path(source).stem if Path(source).suffix else Path(source).name
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in stem.lower()).strip("-")
    return cleaned or "dataset"


def load_source(source: str, target: str | None = None, image_size: tuple[int, int] | None = None) -> LoadedData:
    """Read a source into a LoadedData, raising DataLoadError if unreadable."""
    if source == "digits":
        return _load_digits()
    if source in ("mnist", "cifar10"):
        return _load_keras_dataset(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataLoadError(f"{source}: no such file or folder (or built-in data set: {', '.join(BUILTIN_SOURCES)})")
    if path.is_dir():
        return _load_image_folder(path, image_size)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        if not target:
            raise DataLoadError(f"{path.name} is a table: name its label column with --target COLUMN")
        return _load_table(path, target)
    raise DataLoadError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv, .tsv, .parquet, .npz or a folder of images")


def _load_digits() -> LoadedData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[..., np.newaxis].astype("float32")
    return _image_data("digits", images, digits.target.astype(str), pixel_scale=16.0)


def _load_keras_dataset(name: str) -> LoadedData:
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
        return LoadedData(name=dataset_name(str(path)), kind="tabular", frame=frame, target="label")
    raise DataLoadError(f"{path.name}: x must be 2-D (table) or 3/4-D (images), got shape {x.shape}")


def _load_table(path: Path, target: str) -> LoadedData:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            head = path.read_bytes()[:4096]
            if b"\x00" in head:
                raise DataLoadError(f"{path.name} is a binary file, not a CSV text table")
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
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
    return LoadedData(name=dataset_name(str(path)), kind="tabular", frame=frame, target=target)


def _load_image_folder(path: Path, image_size: tuple[int, int] | None) -> LoadedData:
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataLoadError(f"{path}: an image folder needs one sub-folder per class")
    files = [(f, d.name) for d in class_dirs for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataLoadError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
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
    return LoadedData(name=name, kind="image", frame=frame, target="label", x=x, pixel_scale=pixel_scale)


@dataclass
class Snapshot:
    """The validated data in its training form, kept under its content hash."""

    folder: Path
    meta: dict
    x: np.ndarray
    y: np.ndarray  # class indices

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]


def content_hash(x: np.ndarray, labels: np.ndarray, columns: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([list(x.shape), columns]).encode())
    digest.update(np.ascontiguousarray(x, dtype="float32").tobytes())
    digest.update("\x1f".join(labels.tolist()).encode())
    return digest.hexdigest()


def training_arrays(data: LoadedData) -> tuple[np.ndarray, np.ndarray]:
    """Features and string labels; only call on data that passed validation."""
    labels = data.frame[data.target].astype(str).to_numpy()
    if data.kind == "image":
        return data.x.astype("float32"), labels
    return data.frame[data.feature_columns].to_numpy(dtype="float32"), labels


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


def write_snapshot(data: LoadedData, root: Path) -> tuple[Path, str, bool]:
    """Store validated data under its hash; return (folder, hash, seen_before)."""
    x, labels = training_arrays(data)
    columns = data.feature_columns
    digest = content_hash(x, labels, columns)
    folder = root / digest[:16]
    seen_before = (folder / "meta.json").is_file()
    if not seen_before:
        folder.mkdir(parents=True, exist_ok=True)
        class_names = sorted(set(labels.tolist()), key=_label_sort_key)
        index = {name: i for i, name in enumerate(class_names)}
        y = np.array([index[v] for v in labels], dtype="int64")
        tmp = folder / "data.tmp.npz"
        np.savez_compressed(tmp, x=x, y=y)
        tmp.replace(folder / "data.npz")
        meta = {
            "name": data.name,
            "kind": data.kind,
            "target": data.target,
            "feature_columns": columns,
            "class_names": class_names,
            "input_shape": list(x.shape[1:]),
            "pixel_scale": data.pixel_scale,
            "rows": int(len(x)),
            "data_hash": digest,
            "profile": column_profile(data.frame, data.profile_columns),
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return folder, digest, seen_before


def read_snapshot(folder: str | Path) -> Snapshot:
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "data.npz") as archive:
        return Snapshot(folder=folder, meta=meta, x=archive["x"], y=archive["y"])


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
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))

    def _split(idx: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        labels = y[idx]
        counts = np.bincount(labels)
        stratify = labels if counts[counts > 0].min() >= 2 else None
        try:
            return train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
        except ValueError:  # too few rows per class for a stratified split
            return train_test_split(idx, test_size=fraction, random_state=seed)

    rest, holdout_idx = _split(index, holdout)
    train_idx, val_idx = _split(rest, validation)
    return {"train": np.sort(train_idx), "validation": np.sort(val_idx), "holdout": np.sort(holdout_idx)}
