"""Structured JSON logs, one object per line. Stdlib only, and cheap enough for the request path.

The access log bypasses ``logging`` (its record machinery costs tens of µs a line): a level check,
one ``json.dumps`` and one write.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, Final, TextIO

LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40, "off": 100}


def _encode_stdlib(record: dict[str, Any]) -> str:
    return json.dumps(record, default=str)


class JsonLogger:
    """Writes ``{"ts", "level", "event", ...}`` lines to a stream at or above ``level``."""

    def __init__(
        self,
        stream: TextIO | None = None,
        level: str = "info",
        *,
        encode: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        """``encode`` turns a record into one JSON line (default ``json.dumps``; servers that
        have orjson pass a faster one)."""
        if level not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
        self.stream = stream if stream is not None else sys.stderr
        self.level = level
        self._threshold = LEVELS[level]
        self._encode = encode or _encode_stdlib

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self._threshold

    def log(self, level: str, event: str, **fields: Any) -> None:
        if LEVELS[level] < self._threshold:
            return
        record = {"ts": round(time.time(), 6), "level": level, "event": event, **fields}
        try:  # noqa: SIM105 - suppress() costs a context manager per log line
            self.stream.write(self._encode(record) + "\n")
        except (ValueError, OSError):  # a closed stream during shutdown must not fail a request
            pass

    def access(
        self,
        *,
        transport: str,
        route: str,
        status: int | str,
        latency_ms: float,
        request_id: str | None,
    ) -> None:
        """One line per request: ts, transport, route, status, latency_ms, request_id."""
        if self._threshold > LEVELS["info"]:
            return
        self.log(
            "info",
            "request",
            transport=transport,
            route=route,
            status=status,
            latency_ms=round(latency_ms, 3),
            request_id=request_id,
        )
