"""What the monitor compares served traffic with: the model's own held-out rows.

The validation and holdout rows (the ones the network's weights never
learnt from) are summarised exactly as the service summarises a request
(lockgate/serving/traffic.py), with the model's outputs and the true labels.
They are written beside the run, logged with it, and copied into the Bento
model, so a served model carries its own yardstick.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.locks import atomic_write_text
from lockgate.data.datasets import Snapshot
from lockgate.models.architectures import predict_outputs
from lockgate.serving.traffic import input_features, output_features, summarise_inputs, text_vocabulary

REFERENCE_FOLDER = "monitoring"
REFERENCE_ARRAYS = "reference.npz"
REFERENCE_RECORD = "reference.json"


def write_reference(
    snapshot: Snapshot, split: dict[str, np.ndarray], model: Any, folder: Path, max_rows: int, seed: int
) -> Path:
    """Summarise up to `max_rows` held-out rows (validation and holdout) into
    `folder/monitoring/`; the folder is returned."""
    meta = snapshot.meta
    rows = np.concatenate([split["validation"], split["holdout"]])
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    vocabulary = None
    if meta.inputs == "texts" and meta.vocabulary is None:  # the training texts' words, so the held-out texts are summarised as served ones
        vocabulary = text_vocabulary([str(t) for t in snapshot.x[split["train"]].reshape(-1)])
    x = snapshot.x[rows]
    out = folder / REFERENCE_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / REFERENCE_ARRAYS,
        features=summarise_inputs(x, meta, vocabulary),
        outputs=np.asarray(predict_outputs(model, x), dtype="float32"),
        y=snapshot.y[rows],
        holdout=np.isin(rows, split["holdout"]),
    )
    record = {
        "rows": int(len(rows)),
        "features": [f.name for f in input_features(meta)],
        "outputs": [f.name for f in output_features(meta)],
        "vocabulary": vocabulary,
    }
    atomic_write_text(out / REFERENCE_RECORD, json.dumps(record))
    return out
