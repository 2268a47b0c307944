"""Faults for the retry tests, raised right after a step's side effect.

Simulated, and why: the fault that tests idempotency is a connection lost
after the server has committed a write and before the client hears back (the
version created but not tagged, the Bento stored but not built, the alias
moved but the pointer not written). A real server cannot be made to fail at
exactly that instant on purpose; stopping it (tests/integration/test_stack.py
does, for real) loses the request before or after, never between. So the real
call runs, and then the step raises the fault a dropped connection would.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import pytest

from lockgate.core.faults import DeterministicFailure, TransientFault


def current_step() -> str | None:
    """The Prefect task this call runs in, e.g. "register model"."""
    from prefect.runtime import task_run

    return task_run.task_name


class StepFaults:
    """Each `after(...)` makes the named step fail right after `owner.attribute`
    has really run, for the step's first `times` calls of it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.raised: Counter[str] = Counter()

    def after(self, owner: Any, attribute: str, step: str, times: int = 1) -> None:
        real = getattr(owner, attribute)
        key = f"{step}: {attribute}"

        @functools.wraps(real)
        def call_then_fail(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if current_step() == step and self.raised[key] < times:
                self.raised[key] += 1
                raise TransientFault(f"connection lost in '{step}' after {attribute} succeeded (simulated)")
            return result

        self.monkeypatch.setattr(owner, attribute, call_then_fail)

    def deterministic(self, owner: Any, attribute: str, message: str) -> None:
        """`owner.attribute` fails the same way every time it is called."""

        def always_fail(*args: Any, **kwargs: Any) -> Any:
            raise DeterministicFailure(message)

        self.monkeypatch.setattr(owner, attribute, always_fail)

