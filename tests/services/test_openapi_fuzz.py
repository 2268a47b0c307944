"""Fuzz every operation of the served OpenAPI schema: no input may cause a 5xx,
and no call without a key may get past authentication.

The image model is fuzzed on the real server, every operation; the table and
text models (whose validators read records and texts) on the same service
class in process, every prediction endpoint."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.services.conftest import API_KEY, describe, in_process


OPEN_PATHS = {"/docs.json", "/livez", "/readyz", "/metrics", "/healthz"}
ENDPOINTS = {"/predict", "/predict_records", "/predict_text", "/predict_image", "/metadata"}


def fuzz(client: httpx.Client, key: str | None, examples: int,
         paths: set[str] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """Send `examples` generated requests to each operation of the schema the
    service publishes (or those of `paths`); return every (path, status) and
    the 5xx answers."""
    schema = schemathesis.openapi.from_dict(client.get("/docs.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= ENDPOINTS
    operations = [op for op in operations if paths is None or op.path in paths]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answers: list[tuple[str, int]] = []
    problems: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            response = case.call(base_url=str(client.base_url).rstrip("/"), headers=headers)
            answers.append((operation.path, response.status_code))
            if response.status_code >= 500:
                problems.append(f"{operation.method.upper()} {operation.path} -> {response.status_code}: "
                                f"{case.body!r:.200} -> {response.text[:200]}")

        call()
    return answers, problems


def test_no_input_causes_a_server_error_on_the_real_server(digits_service):
    with digits_service.client() as client:
        answers, problems = fuzz(client, API_KEY, examples=40)
    assert len(answers) >= 40 * len(ENDPOINTS), f"only {len(answers)} fuzzed calls were made"
    assert not problems, "\n".join(problems[:10]) + "\n--- server log ---\n" + digits_service.log.read_text()[-6000:]


@pytest.mark.parametrize("family", ["tabular", "text"])
def test_records_and_texts_validators_never_fail_with_a_5xx(family, wine_champion, text_champion):
    served = describe({"tabular": wine_champion, "text": text_champion}[family])
    with in_process(served.model_tag) as client:
        answers, problems = fuzz(client, API_KEY, examples=60, paths=ENDPOINTS)
    assert len(answers) >= 60 * len(ENDPOINTS), f"only {len(answers)} fuzzed calls were made"
    assert not problems, "\n".join(problems[:10])


def test_no_call_without_a_key_gets_past_authentication(digits_service):
    with digits_service.client(key=None) as client:
        answers, problems = fuzz(client, None, examples=10)
    assert not problems, problems[:10]
    guarded = [(path, status) for path, status in answers if path not in OPEN_PATHS]
    assert len(guarded) >= 10 * len(ENDPOINTS)
    assert all(status == 401 for _, status in guarded), sorted(set(guarded))[:20]
