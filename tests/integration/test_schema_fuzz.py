"""Schema fuzzing: schemathesis drives the real server from its own OpenAPI document.

Every operation gets generated valid and invalid requests, with the right key and without;
every answer must be declared in the schema (status, content type, body shape, headers) and
none may be a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import API_KEY, Server, start_server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("fuzz"), tiny_checkpoint)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server):
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")


OPERATIONS = [
    "POST /infer",
    "POST /infer/video",
    "POST /infer/batch",
    "GET /health",
    "GET /ready",
    "GET /model",
    "GET /predictions",
    "GET /predictions/{prediction_id}",
    "GET /predictions/{prediction_id}/explanation.png",
    "POST /predictions/{prediction_id}/feedback",
    "DELETE /predictions/{prediction_id}",
    "POST /jobs/video",
    "POST /jobs/batch",
    "GET /jobs/{job_id}",
    "POST /jobs/{job_id}/cancel",
    "GET /webhooks/secret",
    "GET /keys/me",
    "GET /.well-known/jwks.json",
    "POST /receipts/verify",
    "GET /models",
    "GET /models/{name}",
    "POST /admin/models/{name}/versions/{version}/load",
    "POST /admin/models/{name}/versions/{version}/unload",
    "POST /admin/models/{name}/promote",
    "POST /admin/models/{name}/rollback",
    "PUT /admin/models/{name}/traffic",
    "GET /admin/drift",
    "GET /v2/health/live",
    "GET /v2/health/ready",
    "GET /v2",
    "GET /v2/models/{name}",
    "GET /v2/models/{name}/ready",
    "POST /v2/models/{name}/infer",
    "GET /v2/models/{name}/versions/{version}",
    "GET /v2/models/{name}/versions/{version}/ready",
    "POST /v2/models/{name}/versions/{version}/infer",
]


def test_every_operation_is_fuzzed(api_schema) -> None:
    found = {op.ok().label for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# schemathesis's own pytest plugin does not support this pytest yet, so each operation's
# strategy is driven with hypothesis directly.
@pytest.mark.parametrize("label", OPERATIONS)
@pytest.mark.parametrize("key", [API_KEY, None], ids=["with-key", "without-key"])
def test_every_answer_is_declared_and_never_5xx(api_schema, label: str, key: str | None) -> None:
    (operation,) = [op.ok() for op in api_schema.get_all_operations() if op.ok().label == label]
    headers = {"X-API-Key": key} if key else {}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    def check(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

    check()
