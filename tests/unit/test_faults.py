from __future__ import annotations

import pytest

from lockgate.core.faults import DeterministicFailure, TransientFault, is_transient


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(), TimeoutError(), TransientFault("x"), _HttpError(503), _HttpError(500)],
    ids=["refused", "timeout", "injected", "503", "500"],
)
def test_transient_faults_are_retried(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("bad data"), DeterministicFailure("gate"), _HttpError(400), _HttpError(404), KeyError("x")],
    ids=["value", "deterministic", "400", "404", "key"],
)
def test_deterministic_failures_are_not(error):
    assert not is_transient(error)


def test_cause_chain_is_followed():
    try:
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError as inner:
            raise RuntimeError("logging failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_mlflow_server_errors_count_as_transient():
    from mlflow.exceptions import MlflowException, RestException

    server = RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"})
    refused = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name"})
    assert is_transient(server)
    assert not is_transient(refused)
    assert not is_transient(MlflowException("a bug in a flavour"))
