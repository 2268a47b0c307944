"""Fuzz every operation of the served OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.services.conftest import API_KEY

pytestmark = pytest.mark.integration


def test_no_input_causes_a_server_error(digits_service):
    schema = schemathesis.openapi.from_url(f"{digits_service.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/predict_records", "/predict_image", "/metadata"}
    server_errors: list[str] = []
    calls = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            nonlocal calls
            response = case.call(base_url=digits_service.url, headers={"Authorization": f"Bearer {API_KEY}"})
            calls += 1
            if response.status_code >= 500:
                server_errors.append(f"{operation.method.upper()} {operation.path} -> {response.status_code}: "
                                     f"{case.body!r:.200} -> {response.text[:200]}")

        call()
    assert calls >= 40, f"only {calls} fuzzed calls were made"
    log = digits_service.log.read_text()
    assert not server_errors, "\n".join(server_errors[:10]) + "\n--- server log ---\n" + log[-6000:]
