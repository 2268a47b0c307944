"""Look up the current champion and the profile of the data it was trained on."""

from __future__ import annotations

from lockgate.core.contract import table_signature
from lockgate.core.records import ChampionRef, DatasetMeta, ModelChoice, TrainingIdentity
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.data.datasets import dataset_name, table_columns
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.tracking import (
    champion_version,
    download_json,
    model_name_for,
    models_with_table,
    registered_model_exists,
)


def find_champion(model_name: str, settings: LockgateSettings | None = None) -> ChampionRef | None:
    settings = settings or get_settings()
    version = champion_version(settings, model_name)
    if version is None:
        return None
    meta = download_json(settings, version.run_id, "data/meta.json")
    tags = version.tags or {}
    identity = (
        TrainingIdentity(data_hash=tags["data_hash"], config_hash=tags["config_hash"], code_version=tags["code_version"])
        if all(tags.get(key) for key in ("data_hash", "config_hash", "code_version"))
        else None
    )
    return ChampionRef(
        name=model_name,
        version=str(version.version),
        run_id=version.run_id,
        uri=f"models:/{model_name}/{version.version}",
        data_meta=DatasetMeta.model_validate(meta),
        trained_on=identity,
    )


find_champion_task = pipeline_task("find champion", timeout_seconds=120)(find_champion)


def choose_model(
    data: str, target: str | None, model_name: str | None, settings: LockgateSettings | None = None
) -> ModelChoice:
    """The registered model this run challenges. A name given wins; else the
    model of files with this name; else an existing model whose table has the
    same columns and target (next month's export under a new file name);
    else a new model named after the file."""
    settings = settings or get_settings()
    given = model_name or settings.model_name
    if given:
        return _with_champion(ModelChoice(name=given, how="named"), settings)
    default = model_name_for(settings, dataset_name(data))
    if registered_model_exists(settings, default):
        return _with_champion(ModelChoice(name=default, how="file name"), settings)
    columns = table_columns(data)
    if columns and target and target in columns:
        matches = models_with_table(settings, table_signature(columns, target))
        if matches:
            detail = f"same {len(columns) - 1} feature columns and target '{target}'"
            if len(matches) > 1:
                detail += f" (also {', '.join(matches[1:4])}; the most recently updated is used)"
            return _with_champion(ModelChoice(name=matches[0], how="recognised", detail=detail), settings)
    return ModelChoice(name=default, how="new")


def _with_champion(choice: ModelChoice, settings: LockgateSettings) -> ModelChoice:
    version = champion_version(settings, choice.name)
    choice.champion_version = str(version.version) if version is not None else None
    return choice


choose_model_task = pipeline_task("choose model", timeout_seconds=120)(choose_model)
