"""Look up the current champion and the profile of the data it was trained on."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from lockgate.faults import maybe_inject
from lockgate.settings import LockgateSettings, get_settings
from lockgate.steps import pipeline_task
from lockgate.tracking import champion_version, download_json


class ChampionRef(BaseModel):
    name: str
    version: str
    run_id: str
    uri: str
    data_meta: dict  # schema, labels and feature profile of its training data


def find_champion(model_name: str, settings: LockgateSettings | None = None) -> ChampionRef | None:
    settings = settings or get_settings()
    maybe_inject("champion", settings)
    version = champion_version(settings, model_name)
    if version is None:
        return None
    meta = download_json(settings, version.run_id, "data/meta.json")
    return ChampionRef(
        name=model_name,
        version=str(version.version),
        run_id=version.run_id,
        uri=f"models:/{model_name}/{version.version}",
        data_meta=meta,
    )


def champion_outputs(champion: ChampionRef, x: np.ndarray, names: list[str], kind: str) -> np.ndarray:
    """The champion's outputs on `x`; class probabilities are re-ordered into
    the classes `names` of the data at hand (a class it never saw gets 0)."""
    import mlflow.tensorflow

    from lockgate.models import predict_outputs, register_custom_layers

    register_custom_layers()
    raw = predict_outputs(mlflow.tensorflow.load_model(champion.uri), x)
    if kind == "regression":
        return raw
    champion_names = list(champion.data_meta["class_names"])
    aligned = np.zeros((len(x), len(names)), dtype="float32")
    for j, name in enumerate(names):
        if name in champion_names:
            aligned[:, j] = raw[:, champion_names.index(name)]
    return aligned


find_champion_task = pipeline_task("find champion", timeout_seconds=120)(find_champion)
