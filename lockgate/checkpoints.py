"""Per-epoch training checkpoints that are always whole, so a retry resumes exactly.

Keras's ``BackupAndRestore`` writes ``latest.weights.h5`` in place and then
``training_metadata.json``. A process killed between the two leaves epoch
k's weights beside metadata that says k-1, and the retry trains epoch k a
second time on top of them: a killed rank of a two-process training resumed
that way and ended 7e-3 away from the uninterrupted run. Here each epoch's
weights go to a file of their own, written under a temporary name and
renamed into place; only then is the metadata, written the same way, changed
to name that file. Wherever a process dies, the metadata names an epoch and
the whole weights of that epoch (or there is no checkpoint yet).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from lockgate.locks import atomic_write_text

METADATA = "training_metadata.json"


def _metadata(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / METADATA).read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_weights(folder: Path) -> Path | None:
    """The weights file the checkpoint in `folder` names, if it is there."""
    name = _metadata(folder).get("weights")
    if not name:
        return None
    weights = Path(folder) / name
    return weights if weights.is_file() else None


def resumable_epoch(folder: Path) -> int:
    """The epochs a checkpoint folder holds, which a retry skips (0 if none)."""
    if checkpoint_weights(folder) is None:
        return 0
    return int(_metadata(folder).get("epoch", 0))


def whole_checkpoints(folder: Path) -> Any:
    """The callback for ``fit``: a checkpoint each epoch, restored when
    training starts, removed when it ends well."""
    return _callback_class()(str(folder), delete_checkpoint=True)


@functools.cache
def _callback_class() -> type:
    import keras

    class WholeCheckpoints(keras.callbacks.BackupAndRestore):
        def _save_model(self) -> None:
            folder = Path(self.backup_dir)
            folder.mkdir(parents=True, exist_ok=True)
            name = f"epoch-{self._current_epoch}.weights.h5"
            partial = folder / f"epoch-{self._current_epoch}.partial.weights.h5"
            self.model.save_weights(str(partial), overwrite=True)
            with open(partial, "rb+") as written:  # on disk before anything names it
                os.fsync(written.fileno())
            os.replace(partial, folder / name)
            atomic_write_text(folder / METADATA, json.dumps(
                {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}))
            for older in folder.glob("epoch-*.weights.h5"):
                if older.name != name:
                    older.unlink(missing_ok=True)

        def _load_model(self) -> None:
            weights = checkpoint_weights(Path(self.backup_dir))
            if weights is None:  # nothing whole to resume from: start over
                return
            self._weights_path = str(weights)
            super()._load_model()

    return WholeCheckpoints
