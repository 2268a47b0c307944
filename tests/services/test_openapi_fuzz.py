"""Fuzz every operation of the served OpenAPI schema: no input may cause a 5xx,
and no call without a key may get past authentication.

The image model is fuzzed on the real server; the table and text models (whose
validators read records and texts) on the same service class in process."""

from __future__ import annotations

from typing import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.services.conftest import API_KEY, describe, in_process

pytestmark = pytest.mark.integration

OPEN_PATHS = {"/docs.json", "/livez", "/readyz", "/metrics", "/healthz"}
ENDPOINTS = {"/predict", "/predict_records", "/predict_text", "/predict_image", "/metadata"}


def fuzz(schema: dict, send: Callable[[dict], httpx.Response], examples: int = 40) -> tuple[int, list[str]]:
    """Send `examples` generated requests to each operation; return (calls,
    problems) where a problem is a 5xx answer."""
    operations = [result.ok() for result in schemathesis.openapi.from_dict(schema).get_all_operations()]
    assert {op.path for op in operations} >= ENDPOINTS
    problems: list[str] = []
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            nonlocal calls
            response = send(case.as_transport_kwargs(base_url="http://127.0.0.1"))
            calls += 1
            if response.status_code >= 500:
                problems.append(f"{operation.method.upper()} {operation.path} -> {response.status_code}: "
                                f"{case.body!r:.200} -> {response.text[:200]}")

        call()
    return calls, problems


def _request(client: httpx.Client, kwargs: dict) -> httpx.Response:
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("data"), (bytes, str)):  # a raw body: httpx calls it content
        kwargs["content"] = kwargs.pop("data")
    kwargs.pop("allow_redirects", None)
    return client.request(**kwargs)


def test_no_input_causes_a_server_error_on_the_real_server(digits_service):
    with digits_service.client() as client:
        schema = client.get("/docs.json").json()
        calls, problems = fuzz(schema, lambda kwargs: _request(client, kwargs))
    assert calls >= 40 * len(ENDPOINTS), f"only {calls} fuzzed calls were made"
    assert not problems, "\n".join(problems[:10]) + "\n--- server log ---\n" + digits_service.log.read_text()[-6000:]


@pytest.mark.parametrize("champion", ["wine_champion", "text_champion"])
def test_records_and_texts_validators_never_fail_with_a_5xx(champion, request):
    served = describe(request.getfixturevalue(champion))
    with in_process(served.model_tag) as client:
        schema = client.get("/docs.json").json()
        calls, problems = fuzz(schema, lambda kwargs: _request(client, kwargs), examples=60)
    assert calls >= 60 * len(ENDPOINTS), f"only {calls} fuzzed calls were made"
    assert not problems, "\n".join(problems[:10])


def test_no_call_without_a_key_gets_past_authentication(digits_service):
    with digits_service.client(key=None) as client:
        schema = client.get("/docs.json").json()
        answers: list[tuple[str, int]] = []

        def send(kwargs: dict) -> httpx.Response:
            response = _request(client, kwargs)
            answers.append((kwargs["url"].removeprefix("http://127.0.0.1"), response.status_code))
            return response

        calls, problems = fuzz(schema, send, examples=10)
    assert not problems, problems[:10]
    guarded = [(path, status) for path, status in answers if path.split("?")[0] not in OPEN_PATHS]
    assert guarded and all(status == 401 for _, status in guarded), sorted(set(guarded))[:20]
