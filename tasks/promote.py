"""Step 8: move the champion alias to the verified version.

The last step on purpose: a run that fails anywhere before this leaves the
champion where it was.
"""

from __future__ import annotations

import json

from lockgate.records import PackagedService, RegisteredModel
from lockgate.settings import LockgateSettings, get_settings
from lockgate.steps import pipeline_task
from lockgate.tracking import CHAMPION_ALIAS, client


def promote_model(
    registered: RegisteredModel, package: PackagedService, settings: LockgateSettings | None = None
) -> RegisteredModel:
    settings = settings or get_settings()
    mlflow_client = client(settings)
    mlflow_client.set_model_version_tag(registered.name, registered.version, "bento_tag", package.bento_tag)
    mlflow_client.set_model_version_tag(registered.name, registered.version, "bento_model", package.model_tag)
    mlflow_client.set_registered_model_alias(registered.name, CHAMPION_ALIAS, registered.version)
    pointer = settings.home / "champion.json"
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps({
        "model_name": registered.name, "version": registered.version,
        "bento_model": package.model_tag, "bento": package.bento_tag,
    }, indent=2))
    tmp.replace(pointer)  # atomic: a reader never sees half a file
    return registered


promote_task = pipeline_task("promote champion", timeout_seconds=120)(promote_model)
