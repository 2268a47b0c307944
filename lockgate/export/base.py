"""What an export format declares, and the helpers every format shares.

A format is one object: its name, the file or folder it writes, how it is
produced from the Keras model, how it is loaded back as a function of a
batch, and, where a served Bento can run on it, the runtime and that
runtime's locked requirements. The export check and the service both go
through these, so a format is described once.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REASON_LIMIT = 400

Predict = Callable[[np.ndarray], np.ndarray]


class ExportUnavailable(Exception):
    """An export that cannot be checked, with a reason that needs no rewording."""


@dataclass(frozen=True)
class Produced:
    """What producing a format wrote, and the ops its converter reported it
    could not convert although it wrote a file (to explain a load failure)."""

    path: Path
    unconverted_ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sources:
    """What a format may be made from besides the model itself."""

    saved_model: Callable[[], Path]  # the SavedModel conversions start from, written at most once
    x_representative: np.ndarray  # calibration examples for full-integer quantisation


@dataclass(frozen=True)
class ExportFormat:
    """One export format. Subclasses implement `produce` and `load`."""

    name: str
    artifact: str  # the file or folder it writes in the export folder
    runtime: str | None = None  # the serving runtime a Bento can run this artifact on, if any
    serve_lock: str | None = None  # that runtime's locked requirements, for the Bento
    needs_representative_input: bool = False  # full-integer quantisation calibrates on the input's range
    check_chunk: int = 512  # holdout rows per call when the export is checked

    def __post_init__(self) -> None:
        if self.runtime and not self.serve_lock:
            raise ValueError(f"export format {self.name!r} is served by {self.runtime!r} but names no lock file")

    def produce(self, model: Any, target: Path, sources: Sources) -> Produced:
        """Write the format from the Keras `model` at `target` (replacing what is there)."""
        raise NotImplementedError

    def load(self, path: Path, threads: int | None = None) -> Predict:
        """The artifact at `path` as a function of a batch of model inputs.
        `threads`: what a served runtime may use; None leaves the runtime's
        default."""
        raise NotImplementedError

    def load_produced(self, produced: Produced) -> Predict:
        """What the export check runs: `load`; a format may override it to
        explain a load failure with what producing it reported."""
        return self.load(produced.path)


def describe_exception(exc: BaseException) -> str:
    """Exception type and its first meaningful line. TensorFlow converter
    messages are MLIR dumps: their `error:` lines are kept, without locations."""
    text = str(exc)
    errors = []
    for line in text.splitlines():
        if "error:" not in line:
            continue
        message = _strip_location(line.split("error:", 1)[1].strip())
        if message and message not in errors:
            errors.append(message)
    if errors:
        detail = "; ".join(errors)
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = lines[0] if lines else repr(exc)
    return trim(f"{type(exc).__name__}: {detail}")


def _strip_location(message: str) -> str:
    """Drop a leading MLIR `loc(...)` (nested brackets) and the colon after it."""
    if not message.startswith("loc("):
        return message
    depth = 0
    for i, char in enumerate(message):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return message[i + 1 :].lstrip(":").strip()
    return message


def trim(text: str, limit: int = REASON_LIMIT) -> str:
    text = " ".join(text.replace("\\n", " ").split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def folder_size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def plain_input(x: np.ndarray) -> np.ndarray:
    """Strings as UTF-8 bytes in an object array, integers (token ids) as
    int32, other numbers as float32."""
    x = np.asarray(x)
    if x.dtype.kind in "USO":
        return np.asarray([text(v).encode("utf-8") for v in x.reshape(-1)], dtype=object).reshape(x.shape)
    if x.dtype.kind in "iu":
        return x.astype("int32", copy=False)
    return x.astype("float32", copy=False)


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
