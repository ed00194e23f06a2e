"""Property tests of the canonical schema (``targets.schema``) and the REST body decoder.

Whatever a client sends, the validator answers a ``PredictRequest`` or raises ``InvalidRequest``
(never a ``TypeError`` or ``OverflowError`` that a transport would turn into a 500); what it
accepts is finite numbers within the limits and survives a JSON round trip; ``response_problem``
never raises and accepts every ``build_response`` body; the REST decoder turns any bytes into a
JSON value or a ``RequestError``.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targets.errors import InvalidRequest, MalformedRequest, RequestError, RequestTooLarge
from targets.rest.app import _decode_json
from targets.schema import (
    API_VERSIONS,
    MAX_PRECISION,
    MAX_REQUEST_ID_CHARS,
    Limits,
    PredictRequest,
    build_response,
    check_body_size,
    response_problem,
    validate_request,
)

FUZZ = settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_DOUBLE_MAX = 1.7976931348623157e308

numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**400), _DOUBLE_MAX, -_DOUBLE_MAX, -0.0, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=6), numbers)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
rows = st.lists(st.one_of(numbers, numbers, numbers, json_values), max_size=8)
options = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {}, optional={"precision": st.one_of(st.integers(-3, 15), scalars), "x": scalars}
    ),
)
# Mostly request-shaped objects (so the deep checks are reached), plus anything at all.
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "instances": st.one_of(rows, json_values),
            "rows": st.one_of(st.lists(rows, max_size=5), json_values),
            "request_id": st.one_of(st.text(max_size=MAX_REQUEST_ID_CHARS + 4), scalars),
            "model_version": st.one_of(st.text(max_size=4), scalars),
            "options": options,
            "extra": json_values,
        },
    ),
)
limits = st.builds(Limits, max_instances=st.integers(1, 12))
apis = st.sampled_from(API_VERSIONS)


def _validated(body: object, api: Any, bound: Limits) -> PredictRequest | None:
    """The accepted request, or ``None`` after checking the refusal explains itself."""
    refusal: InvalidRequest | None = None
    try:
        return validate_request(body, api, bound)
    except InvalidRequest as exc:  # any other exception fails the calling test
        refusal = exc
    assert refusal is not None
    assert refusal.message
    assert refusal.to_body()["error"]
    return None


@FUZZ
@given(body=bodies, api=apis, bound=limits)
def test_validator_answers_a_request_or_invalid_request_and_nothing_else(
    body: object, api: Any, bound: Limits
) -> None:
    _validated(body, api, bound)  # any other exception fails the test


@FUZZ
@given(body=bodies, api=apis, bound=limits)
def test_accepted_requests_are_finite_numbers_within_the_limits(
    body: object, api: Any, bound: Limits
) -> None:
    request = _validated(body, api, bound)
    if request is None:
        return
    assert request.api == api
    assert request.rows
    assert len(request.rows) == 1 or api == "v2"
    for row in request.rows:
        assert isinstance(row, list)
        for value in row:
            assert type(value) in (int, float)
            assert math.isfinite(float(value))  # ints in range convert; huge ones would raise
    assert request.instance_count <= bound.max_instances or len(request.rows) == 1
    assert all(len(row) <= bound.max_instances for row in request.rows)
    assert request.precision is None or 0 <= request.precision <= MAX_PRECISION
    for text in (request.request_id, request.model_version):
        assert text is None or (isinstance(text, str) and len(text) <= MAX_REQUEST_ID_CHARS)


def _as_doubles(rows: list[list[float]]) -> list[list[float]]:
    return [[float(value) for value in row] for row in rows]


@FUZZ
@given(body=bodies, api=apis, bound=limits)
def test_accepted_requests_survive_a_json_round_trip(body: object, api: Any, bound: Limits) -> None:
    request = _validated(body, api, bound)
    if request is None:
        return
    wire: dict[str, Any] = {"instances": request.rows[0]} if api == "v1" else {"rows": request.rows}
    if request.precision is not None:
        wire["options"] = {"precision": request.precision}
    again = validate_request(_decode_json(json.dumps(wire).encode()), api, bound)
    # Compared as the doubles every transport carries: orjson reads an integer beyond 64 bits
    # as the nearest double, which is the value the model sees anyway.
    assert _as_doubles(again.rows) == _as_doubles(request.rows)
    assert again.precision == request.precision


@FUZZ
@given(body=json_values, expected=st.one_of(st.none(), st.integers(-1, 6)))
def test_response_problem_never_raises(body: object, expected: int | None) -> None:
    problem = response_problem(body, expected)
    assert problem is None or (isinstance(problem, str) and problem)


@FUZZ
@given(
    predictions=st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6)),
        max_size=20,
    ),
    text=st.text(max_size=20),
    api=apis,
    extra=st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)
def test_response_problem_accepts_every_built_response(
    predictions: list[float], text: str, api: Any, extra: dict[str, Any]
) -> None:
    body = build_response(
        predictions,
        transport=text,
        model_name=text,
        model_version=text,
        request_id=text,
        api=api,
        extra=extra,
    )
    assert response_problem(body, len(predictions)) is None
    assert response_problem(body, len(predictions) + 1) is not None


def test_extra_metadata_never_replaces_a_key_the_contract_requires() -> None:
    # found by the property above: extra={"api": None} made a built response break the contract
    body = build_response(
        [1.0], transport="t", model_name="m", model_version="1", request_id="r", api="v1",
        extra={"api": None, "source": "cache"},
    )  # fmt: skip
    assert body["metadata"]["api"] == "v1"
    assert body["metadata"]["source"] == "cache"
    assert response_problem(body, 1) is None


json_texts = st.one_of(
    json_values.map(lambda value: json.dumps(value, allow_nan=True)),
    st.text(alphabet='{}[]",:0123456789.eE+-NaInfityrulsf \n\\u', max_size=40),
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    json_texts.map(str.encode),
    json_texts.map(lambda text: text.encode("utf-16")),
    st.integers(1, 5_000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.integers(1, 5_000).map(lambda depth: b'{"a":' * depth),
)


@FUZZ
@given(raw=raw_bodies)
def test_rest_decoder_answers_json_or_a_request_error(raw: bytes) -> None:
    refusal: RequestError | None = None
    try:
        _decode_json(raw)
    except RequestError as exc:  # any other exception fails the test
        refusal = exc
    if refusal is not None:
        assert isinstance(refusal, MalformedRequest)
        assert refusal.message


@FUZZ
@given(raw=raw_bodies, api=apis)
def test_rest_decode_then_validate_raises_only_request_errors(raw: bytes, api: Any) -> None:
    with contextlib.suppress(RequestError):  # any other exception fails the test
        validate_request(_decode_json(raw), api, Limits(max_instances=8))


@FUZZ
@given(size=st.integers(0, 1 << 22), limit=st.integers(64, 1 << 21))
def test_body_size_check_refuses_exactly_what_is_over_the_limit(size: int, limit: int) -> None:
    bound = Limits(max_body_bytes=limit)
    try:
        check_body_size(size, bound)
    except RequestTooLarge:
        assert size > limit
    else:
        assert size <= limit
