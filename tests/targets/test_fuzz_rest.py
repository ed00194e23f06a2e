"""schemathesis against the REST target's own ``/openapi.json``, in-process (ASGI, no socket).

Every documented operation gets generated requests — schema-valid ones and, where there is a
body to break, schema-violating ones — 10,000 and more in all. Every response must be no 5xx,
a documented status, the documented content type and a body matching the documented schema.
Failures are collected rather than raised, so the count of requests sent is exact and one bad
answer does not stop the run.
"""

from __future__ import annotations

import collections
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from targets.rest.app import create_app
from targets.rest.metrics import RestMetrics
from targets.service import PredictionService
from targets.spec import load_model

MIN_REQUESTS = 10_000
# Examples per (operation, mode), weighted by cost: schema-violating v2 bodies take ~3x longer to
# generate than valid v1 ones. The GET routes take no input, so one request says all of them.
EXAMPLES = {
    ("POST /v1/predict", GenerationMode.POSITIVE): 5_000,
    ("POST /v1/predict", GenerationMode.NEGATIVE): 1_700,
    ("POST /v2/predict", GenerationMode.POSITIVE): 2_600,
    ("POST /v2/predict", GenerationMode.NEGATIVE): 800,
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SHOWN_FAILURES = 10


def _modes(operation: Any) -> list[GenerationMode]:
    if len(operation.body) == 0:  # nothing to negate: negative generation is unsatisfiable
        return [GenerationMode.POSITIVE]
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def _fuzz(
    client: Any,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    statuses: collections.Counter[tuple[str, int]],
    failures: list[str],
) -> int:
    """Send ``examples`` generated requests to ``operation``; the number actually sent."""
    sent = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: CI failures replay
        phases=[Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        nonlocal sent
        sent += 1
        try:
            response = case.call(session=client)
        except Exception as exc:  # the app raised through the transport: a 500 on a socket
            failures.append(f"{operation.label} [{mode}] raised {exc!r}; body={case.body!r:.300}")
            return
        statuses[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:  # one failure per failed check
            failures.append(f"{operation.label} [{mode}] {response.status_code}: {exc!s:.600}")

    send()
    return sent


@pytest.mark.slow
def test_generated_requests_get_documented_answers_and_never_5xx() -> None:
    service = PredictionService(load_model("reference"), transport="rest")
    app = create_app(service, metrics=RestMetrics())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # an Err (a schema error) has no .ok(): it fails the test right here
    operations = [cast("Ok[Any]", result).ok() for result in schema.get_all_operations()]
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: list[str] = []
    sent = 0
    # one in-process client (and lifespan) for the run
    with asgi.get_client(cast("asgi.ASGIApp", app)) as client:
        for operation in operations:
            for mode in _modes(operation):
                examples = EXAMPLES.get((operation.label, mode), 1)
                sent += _fuzz(client, operation, mode, examples, statuses, failures)

    assert {op.label for op in operations} >= {"POST /v1/predict", "POST /v2/predict"}
    assert not failures, f"{len(failures)} bad answers, first ones:\n" + "\n".join(
        failures[:SHOWN_FAILURES]
    )
    assert sum(statuses.values()) == sent
    assert sent >= MIN_REQUESTS, f"only {sent} requests sent"
    assert not [key for key in statuses if key[1] >= 500]
    # Both outcomes were exercised on both predict routes, not just rejections.
    for route in ("POST /v1/predict", "POST /v2/predict"):
        assert statuses[(route, 200)] > 100
        assert statuses[(route, 422)] > 100


def _client_for_reference() -> Any:
    service = PredictionService(load_model("reference"), transport="rest")
    return asgi.get_client(cast("asgi.ASGIApp", create_app(service)))


@pytest.mark.parametrize("request_id", ["é-1", "a\r\nx-injected: 1", "tab\tend\t", " lead"])
def test_request_id_unfit_for_a_header_is_answered_but_not_echoed_in_one(request_id: str) -> None:
    """Found by fuzzing: a non-latin-1 request id made the x-request-id header raise (a 500)."""
    body = {"rows": [[1.0, 2.0, 3.0]], "request_id": request_id}
    with _client_for_reference() as client:
        response = client.post("/v2/predict", json=body)
    assert response.status_code == 200
    assert response.json()["metadata"]["request_id"] == request_id
    assert "x-request-id" not in response.headers
    assert "x-injected" not in response.headers


def test_finite_values_whose_sum_overflows_a_double_are_predicted() -> None:
    """Found by fuzzing: ``math.fsum`` of valid finite values can overflow; that is no 500."""
    body = {"instances": [1.7976931348623157e308] * 3}
    with _client_for_reference() as client:
        response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] == pytest.approx(0.8 * 1.7976931348623157e308)
