"""servelab's own contract: ``POST {base}/v1/predict`` or ``/v2/predict`` with the canonical
body (targets/schema.py), judged by the canonical validator — what ``--protocol servelab`` (the
default) speaks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from loadtests.engine.driver import EXPECTED_REJECTION, Reply
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload
from loadtests.protocols.base import JSON, HttpContract, HttpRequest
from targets.schema import response_problem

OK_REPLY_SCHEMA_BAD: str = "schema"


def judge_answer(payload: Payload, status_ok: bool, body: object, rejected: bool) -> Reply:
    """The common verdict on an answer, whatever the transport.

    ``status_ok``: the transport said success (HTTP 200, gRPC OK); ``rejected``: it said the
    client's request was invalid (4xx / INVALID_ARGUMENT). A deliberately invalid payload that is
    rejected is an expected rejection; a valid one rejected is a failure; a success whose body
    misses the canonical contract is a ``schema`` failure.
    """
    if not payload.valid:
        if rejected:
            return EXPECTED_REJECTION
        return Reply.failure("accepted_invalid")
    if not status_ok:
        return Reply.failure("rejected" if rejected else "error")
    problem = response_problem(body, payload.expected_predictions)
    if problem is not None:
        return Reply.failure(OK_REPLY_SCHEMA_BAD)
    return Reply.ok(payload.expected_predictions)


def judge_http(payload: Payload, status: int, body: bytes | None) -> Reply:
    """An HTTP answer, classified alike by every HTTP client (the REST drivers, Locust's
    ``RestUser``): 200 → the canonical check, 4xx → expected rejection for an invalid payload,
    anything else ``http_<status>``."""
    if status == 200:
        answer: object
        try:
            answer = orjson.loads(body or b"")
        except orjson.JSONDecodeError:
            answer = None
        return judge_answer(payload, True, answer, False)
    if 400 <= status < 500:
        reply = judge_answer(payload, False, None, True)
        if reply.outcome != Outcome.FAILURE:
            return reply
    return Reply.failure(f"http_{status}")


@dataclass(slots=True)
class ServelabHttp(HttpContract):
    name: ClassVar[str] = "servelab"

    def request(self, payload: Payload) -> HttpRequest:
        return HttpRequest(
            "POST",
            f"/{payload.api}/predict",
            orjson.dumps(payload.body),
            (("content-type", JSON), *self.headers),
        )

    def judge(self, payload: Payload, status: int, body: bytes | None) -> Reply:
        return judge_http(payload, status, body)

    def judge_ok(self, payload: Payload, answer: Any) -> Reply:
        return judge_answer(payload, True, answer, False)
