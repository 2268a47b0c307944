"""Step 8: move the champion alias to the verified version, if the champion
is still the one the challenger was judged against.

The last step on purpose: a run that fails anywhere before this leaves the
champion where it was. When another run moved the champion meanwhile, the
alias stays and the flow judges the challenger again, against the new one.
"""

from __future__ import annotations

from lockgate.core.records import GateDecision, PackagedService, PromotionOutcome, RegisteredModel
from lockgate.core.settings import LockgateSettings, get_settings
from lockgate.orchestration.steps import pipeline_task
from lockgate.registry.promotion import promote_if_unchanged, withdraw_version


def promote_model(
    registered: RegisteredModel,
    package: PackagedService,
    judged_against: str | None,
    decision: GateDecision,
    settings: LockgateSettings | None = None,
) -> PromotionOutcome:
    settings = settings or get_settings()
    return promote_if_unchanged(settings, registered, package, judged_against, decision.headline())


def withdraw_model(
    registered: RegisteredModel, package: PackagedService | None, reason: str, settings: LockgateSettings | None = None
) -> bool:
    settings = settings or get_settings()
    return withdraw_version(settings, registered, package, reason)


promote_task = pipeline_task("promote champion", timeout_seconds=660)(promote_model)
withdraw_task = pipeline_task("withdraw version", timeout_seconds=660, retries=1)(withdraw_model)
