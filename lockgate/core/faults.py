"""Which failures are worth retrying.

Transient faults (a dropped connection, a timeout, a 5xx from a server) are
retried; deterministic failures (bad data, a rejected model, a bug) are not,
because running them again gives the same answer.
"""

from __future__ import annotations

import errno
from typing import Any


class TransientFault(ConnectionError):
    """A fault that may pass if the step is tried again."""


class DeterministicFailure(RuntimeError):
    """A failure that the same inputs will always reproduce."""


_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE, errno.EHOSTUNREACH}


def is_transient(exc: BaseException | None) -> bool:
    """True for connection errors, timeouts and 5xx answers from a server."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DeterministicFailure):
            return False
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        if _is_transient_library_error(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_transient_library_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("httpx") and name in {"ConnectError", "ReadTimeout", "ConnectTimeout", "RemoteProtocolError", "ReadError", "PoolTimeout"}:
        return True
    if module.startswith(("requests", "urllib3")) and ("Connection" in name or "Timeout" in name):
        return True
    status = _status_code(exc)
    return status is not None and (status >= 500 or status == 429)


def _status_code(exc: BaseException) -> int | None:
    if type(exc).__name__ == "RestException":  # an HTTP answer from an MLflow server
        code = getattr(exc, "error_code", None)
        if code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"):
            return 503
        return int(exc.get_http_status_code())  # type: ignore[attr-defined]
    for attr in ("status_code", "http_status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    if isinstance(value, int):
        return value
    return None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only transient faults."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we classify, not handle
        return is_transient(exc)
    return False
