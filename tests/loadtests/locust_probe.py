"""A test-only Locust file, loaded beside the locustfile (``-f loadtests/locustfile.py,<this>``):
it keeps every request's raw ``response_time`` and outcome, apart from servelab's recorder, and
writes them at test stop to ``$SERVELAB_PROBE_DIR/raw-<pid>.txt`` (one ``ms outcome`` line per
request). Tests compare servelab's figures with these raw samples. Never imported by pytest: it
imports Locust, which monkey-patches the process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from locust import events

_SAMPLES: list[tuple[float, int]] = []  # test-only: Locust's listeners are module-level


def _keep(response_time: float, context: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    reply = (context or {}).get("servelab_reply")
    _SAMPLES.append((response_time, int(reply[0]) if reply else 0))


def _write(**_kwargs: Any) -> None:
    directory = os.environ.get("SERVELAB_PROBE_DIR")
    if directory and _SAMPLES:
        lines = "".join(f"{ms!r} {outcome}\n" for ms, outcome in _SAMPLES)
        Path(directory, f"raw-{os.getpid()}.txt").write_text(lines)


# Locust's EventHook.add_listener is untyped.
events.request.add_listener(_keep)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_write)  # type: ignore[no-untyped-call]
