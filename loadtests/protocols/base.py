"""What every HTTP contract offers a driver: the request for a payload (method, path below the
base URL, headers, body — encoded once per distinct payload by the driver) and the verdict on the
answer, the same ``Reply`` every driver returns.

A contract also knows its *readiness* URL (checked before the clock starts, as the probe is) and,
where the protocol describes its model, how to read that description (``describe``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import orjson

from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError

JSON: Final = "application/json"
SCHEMA_FAILURE: Final = Reply.failure("schema")
# Deliberately invalid requests, one kind per invalid payload slot, for every protocol that
# carries a tensor: the server should refuse each with a 4xx (an expected rejection).
INVALID_KINDS: Final = ("shape", "datatype", "missing")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # below the base URL's path
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def parse_headers(given: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--header K:V`` (repeatable) as (name, value) pairs; one line naming a bad one."""
    pairs = []
    for text in given:
        name, colon, value = text.partition(":")
        if not colon or not name.strip() or any(ch in text for ch in "\r\n"):
            raise LoadOptionError(f"--header {text!r}: expected NAME:VALUE")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


@dataclass(slots=True)
class HttpContract(ABC):
    """A JSON-over-HTTP contract. Subclasses set ``name``, build requests and judge answers."""

    name: ClassVar[str]
    headers: tuple[tuple[str, str], ...] = ()
    ready_path: str | None = field(default=None)

    @abstractmethod
    def request(self, payload: Payload) -> HttpRequest: ...

    @abstractmethod
    def judge_ok(self, payload: Payload, answer: Any) -> Reply:
        """The verdict on a 200 whose body parsed as JSON (``answer``), for a valid payload."""

    def judge(self, payload: Payload, status: int, body: bytes | None) -> Reply:
        """An HTTP answer: 200 → ``judge_ok`` on the parsed body; a 4xx to a deliberately invalid
        payload → expected rejection; anything else ``http_<status>``, as for servelab's own."""
        if not payload.valid:
            if 400 <= status < 500:
                return Reply.expected_rejection()
            return Reply.failure("accepted_invalid" if status == 200 else f"http_{status}")
        if status != 200:
            return Reply.failure(f"http_{status}")
        try:
            answer = orjson.loads(body or b"")
        except orjson.JSONDecodeError:
            return SCHEMA_FAILURE
        return self.judge_ok(payload, answer)

    def describe(self, metadata: Mapping[str, Any]) -> None:
        """Adopt what the server says of its model (OIP's model metadata); most contracts need
        nothing."""
        return None

    def row_width(self) -> int | None:
        """The values a row must have, when the contract fixes it (an OIP tensor's shape)."""
        return None

    @property
    def metadata_path(self) -> str | None:
        """Where the server describes its model (``None``: the contract has no such route)."""
        return None

    def post_json(self, path: str, body: object) -> HttpRequest:
        """A JSON POST to ``path`` with the contract's headers."""
        return HttpRequest(
            "POST", path, orjson.dumps(body), (("content-type", JSON), *self.headers)
        )


def count_predictions(payload: Payload, predictions: object) -> Reply:
    """One prediction per row sent, else a ``schema`` failure."""
    if isinstance(predictions, list) and len(predictions) == payload.expected_predictions:
        return Reply.ok(payload.expected_predictions)
    return SCHEMA_FAILURE
