"""One training worker for the TF_CONFIG tests: fit on the digits in this
process (MultiWorkerMirroredStrategy must be made at process start) and print
the outcome as JSON on the last line."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(snapshot_root: str, epochs: int) -> None:
    from lockgate.core.settings import TrainingSettings
    from lockgate.data.datasets import load_source, read_snapshot, write_snapshot
    from lockgate.training.fit import fit

    folder, _, _ = write_snapshot(load_source("digits"), Path(snapshot_root))
    outcome = fit(read_snapshot(folder), TrainingSettings(epochs=epochs, device="cpu"))
    print(json.dumps({
        "placement": outcome.placement.description,
        "replicas": outcome.placement.replicas,
        "epochs_run": outcome.epochs_run,
        "val_accuracy": outcome.history["val_accuracy"][-1],
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
