"""The retry policy every pipeline step shares, as a thin Prefect decorator."""

from __future__ import annotations

from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from lockgate.core.faults import retry_transient


def pipeline_task(name: str, timeout_seconds: float, retries: int = 3) -> Callable[[Callable[..., Any]], Any]:
    """Retries with exponential backoff and jitter, for transient faults only."""
    return task(
        name=name,
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=1),
        retry_jitter_factor=0.5,
        retry_condition_fn=retry_transient,
        timeout_seconds=timeout_seconds,
        cache_policy=NO_CACHE,
        persist_result=False,
    )
