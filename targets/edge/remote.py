"""The edge runtime's client for a remote REST target. Stdlib only (``http.client``).

One kept-alive connection; a request that finds it stale (the server closed it while idle) is
retried once on a fresh one, because that is normal keep-alive life, not an outage. Everything
else that keeps the remote from giving a canonical answer — refused, timed out, reset, 5xx, a body
that fails ``response_problem`` — is translated here, and only here, into ``RemoteUnavailable``,
which the runtime counts against its circuit breaker. A 4xx is ``RemoteRejected``: the remote is
up but declines this request (e.g. tighter limits, v2 disabled), so the breaker is not charged.

``timeout_s`` bounds the connect and each socket read or write (``http.client`` has no overall
deadline); against a server that answers or dies, that is one timeout per failed request.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from targets.errors import InputError
from targets.schema import ApiVersion, response_problem

ConnectionFactory = Callable[[str, int, float], http.client.HTTPConnection]
MAX_RESPONSE_BYTES: Final = 16 << 20
_JSON_HEADERS: Final = {"content-type": "application/json", "accept": "application/json"}
# What a kept-alive connection closed by the server looks like on the next request.
_STALE_CONNECTION: Final = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class RemoteUnavailable(Exception):
    """The remote could not answer; ``kind`` names how (for stats), the message says more."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"remote unavailable ({kind}): {message}")
        self.kind = kind


class RemoteRejected(Exception):
    """The remote answered 4xx: it is up, but will not answer this request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"remote rejected the request: HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    predictions: list[float]
    model_name: str
    model_version: str


def _default_connection(host: str, port: int, timeout_s: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(host, port, timeout=timeout_s)


def _error_message(raw: bytes) -> str:
    """The ``error.message`` of a canonical error body, else the start of the body."""
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return raw[:200].decode("utf-8", "replace")
    return str(message)


class RemoteClient:
    """POSTs canonical requests to ``{base_url}/v1/predict`` (``/v2/predict`` for several rows)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        connection_factory: ConnectionFactory | None = None,
    ) -> None:
        try:
            parts = urlsplit(base_url)
            port = parts.port
        except ValueError as exc:
            raise InputError(f"--remote {base_url!r}: {exc}") from None
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise InputError(f"--remote {base_url!r}: expected http://HOST[:PORT][/PREFIX]")
        if not timeout_s > 0:
            raise InputError(f"--timeout-ms must be > 0, got {timeout_s * 1000:g}")
        self.base_url = base_url
        self._host = parts.hostname
        self._port = port or 80
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._factory = connection_factory or _default_connection
        self._connection: http.client.HTTPConnection | None = None
        self._answered_on_connection = 0
        self.v2_available = True  # until the remote says otherwise (404 on /v2/predict)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def predict(self, rows: Sequence[Sequence[float]], api: ApiVersion) -> RemoteAnswer:
        """The remote's predictions for ``rows``; raises ``RemoteUnavailable``/``RemoteRejected``.

        One row always goes to v1 (every REST target serves it); ``api`` is then irrelevant:
        the canonical answer for a row is the same through either version.
        """
        body: dict[str, object]
        if len(rows) == 1:
            path, body = "/v1/predict", {"instances": list(rows[0])}
        elif self.v2_available:
            path, body = "/v2/predict", {"rows": [list(row) for row in rows]}
        else:
            raise RemoteRejected(404, "the remote serves API v1 only; several rows need v2")
        status, raw = self._exchange(self._prefix + path, json.dumps(body).encode())
        if status >= 500:
            raise RemoteUnavailable(f"http_{status}", _error_message(raw))
        if status != 200:
            if status == 404 and path == "/v2/predict":
                self.v2_available = False
            raise RemoteRejected(status, _error_message(raw))
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise RemoteUnavailable("invalid_answer", f"body is not JSON: {exc}") from None
        problem = response_problem(answer, expected_predictions=len(rows))
        if problem is not None:
            raise RemoteUnavailable("invalid_answer", problem)
        metadata = answer["metadata"]
        return RemoteAnswer(
            [float(value) for value in answer["predictions"]],
            metadata["model_name"],
            metadata["model_version"],
        )

    def _exchange(self, path: str, payload: bytes) -> tuple[int, bytes]:
        """One POST on the kept-alive connection: ``(status, body)``."""
        for attempt in range(2):
            reused = self._connection is not None and self._answered_on_connection > 0
            if self._connection is None:
                self._connection = self._factory(self._host, self._port, self._timeout_s)
                self._answered_on_connection = 0
            try:
                self._connection.request("POST", path, payload, _JSON_HEADERS)
                response = self._connection.getresponse()
                raw = response.read(MAX_RESPONSE_BYTES + 1)
            except _STALE_CONNECTION as exc:
                self.close()
                if reused and attempt == 0:
                    continue
                raise RemoteUnavailable(type(exc).__name__, str(exc) or "connection lost") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise RemoteUnavailable(type(exc).__name__, str(exc) or "no answer") from exc
            if len(raw) > MAX_RESPONSE_BYTES:
                self.close()
                raise RemoteUnavailable("invalid_answer", "response body over 16 MiB")
            self._answered_on_connection += 1
            if response.will_close:
                self.close()
            return response.status, raw
        raise AssertionError("unreachable: the second attempt returns or raises")
