"""A small blocking REST client that speaks both API versions. Stdlib only.

``predict_rows`` asks ``/v2/predict`` for several rows in one request; against a server started
with v2 disabled (404 ``api_version_disabled``) it degrades to one ``/v1/predict`` call per row
and remembers to, so an upgraded client keeps working with an old deployment.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class RestAnswer:
    status: int
    body: Any


class RestClientError(Exception):
    """The server answered an error status the client cannot work around."""

    def __init__(self, answer: RestAnswer) -> None:
        super().__init__(f"HTTP {answer.status}: {answer.body}")
        self.answer = answer


class RestClient:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"base_url must look like http://HOST:PORT, got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self.v2_available: bool | None = None  # unknown until the first v2 attempt

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def post(self, path: str, body: object) -> RestAnswer:
        """POST JSON on a kept-alive connection (reconnecting once if the server closed it)."""
        payload = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout_s
                )
            try:
                self._connection.request("POST", path, payload, headers)
                response = self._connection.getresponse()
                return RestAnswer(response.status, json.loads(response.read() or b"null"))
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def predict(self, instances: Sequence[float]) -> dict[str, Any]:
        """One row through v1."""
        answer = self.post("/v1/predict", {"instances": list(instances)})
        if answer.status != 200:
            raise RestClientError(answer)
        body: dict[str, Any] = answer.body
        return body

    def predict_rows(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Predictions for several rows: one v2 call, or one v1 call per row on a v1-only server."""
        if self.v2_available is not False:
            answer = self.post("/v2/predict", {"rows": [list(row) for row in rows]})
            # 404: v2 disabled here (api_version_disabled) or a server that predates it.
            if answer.status != 404:
                if answer.status != 200:
                    raise RestClientError(answer)
                self.v2_available = True
                return [float(value) for value in answer.body["predictions"]]
            self.v2_available = False
        predictions: list[float] = []
        for row in rows:
            predictions.extend(float(value) for value in self.predict(row)["predictions"])
        return predictions
