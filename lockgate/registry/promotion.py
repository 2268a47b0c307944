"""Moving the champion: a compare-and-swap on the registry alias, the
workspace pointer derived from it, and withdrawing a version that will not be
promoted.

The registry alias is the one source of truth for the champion.
`champion.json` (what `lockgate serve` and the compose service read) is
written from the alias, atomically, after every move.
"""

from __future__ import annotations

import json

from lockgate.core.locks import atomic_write_text, workspace_lock
from lockgate.core.records import PackagedService, PromotionOutcome, RegisteredModel
from lockgate.core.settings import LockgateSettings
from lockgate.registry.tracking import CHAMPION_ALIAS, champion_version, client

STATUS_TAG = "lockgate.status"
REPLACED_TAG = "replaced"


def champion_lock_name(model_name: str) -> str:
    return f"champion-{model_name}"


def promote_if_unchanged(
    settings: LockgateSettings,
    registered: RegisteredModel,
    package: PackagedService,
    judged_against: str | None,
    gate_headline: str,
) -> PromotionOutcome:
    """Move the alias to `registered` only if the champion is still
    `judged_against` (None: there was none). Under the model's lock, so two
    runs cannot both read the old champion and both move the alias. A retry
    after the alias already moved to this version completes the pointer."""
    mlflow_client = client(settings)
    name, version = registered.name, registered.version
    with workspace_lock(settings.home, champion_lock_name(name)):
        current = champion_version(settings, name)
        current_version = str(current.version) if current is not None else None
        if current_version == version:  # an earlier attempt moved it; finish its work
            write_champion_pointer(settings, name)
            replaced = (current.tags or {}).get(REPLACED_TAG)
            return PromotionOutcome(promoted=True, champion_version=version, replaced=None if replaced == "none" else replaced)
        if current_version != judged_against:
            return PromotionOutcome(promoted=False, champion_version=current_version)
        for key, value in {
            "bento_tag": package.bento_tag,
            "bento_model": package.model_tag,
            REPLACED_TAG: judged_against or "none",
            "gate": gate_headline[:5000],
            STATUS_TAG: "champion",
        }.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
        mlflow_client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        write_champion_pointer(settings, name)
    return PromotionOutcome(promoted=True, champion_version=version, replaced=judged_against)


def write_champion_pointer(settings: LockgateSettings, model_name: str) -> dict[str, str] | None:
    """Write `<home>/champion.json` from the registry alias of `model_name`.
    The pointer names the workspace's most recently promoted model; it is
    derived, never read back to decide anything."""
    current = champion_version(settings, model_name)
    if current is None:
        return None
    tags = current.tags or {}
    pointer = {
        "model_name": model_name,
        "version": str(current.version),
        "bento_model": tags.get("bento_model", ""),
        "bento": tags.get("bento_tag", ""),
    }
    with workspace_lock(settings.home, "champion-pointer"):
        atomic_write_text(settings.home / "champion.json", json.dumps(pointer, indent=2))
    return pointer


def withdraw_version(
    settings: LockgateSettings, registered: RegisteredModel, package: PackagedService | None, reason: str
) -> bool:
    """Mark a registered version that will not be the champion, and remove its
    Bento and Bento model, so nothing half-made looks deployable. Never
    touches the champion. Best effort: True when the mark was written."""
    with workspace_lock(settings.home, champion_lock_name(registered.name)):
        current = champion_version(settings, registered.name)
        if current is not None and str(current.version) == registered.version:
            return False  # it did become the champion: nothing to withdraw
        client(settings).set_model_version_tag(registered.name, registered.version, STATUS_TAG, reason[:5000])
    if package is not None:
        remove_bento(package)
    return True


def remove_bento(package: PackagedService) -> None:
    # deferred: BentoML takes seconds to import; only storing, building or serving a Bento needs it
    import bentoml
    from bentoml.exceptions import NotFound

    for delete, tag in ((bentoml.delete, package.bento_tag), (bentoml.models.delete, package.model_tag)):
        try:
            delete(tag)
        except NotFound:
            pass
