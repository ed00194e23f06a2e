"""Plain Locust ``FastHttpUser`` for the self-benchmark: the same POST as servelab's REST driver,
nothing recorded beyond Locust's own statistics (Locust at its fastest). At test stop it writes
``$SELFBENCH_OUT``: requests, CPU seconds and wall seconds from the moment every user was spawned
(so Locust's start-up and ramp are not charged), and Locust's p50/p99. Run only as a Locust file:
Locust monkey-patches whatever imports it."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from locust import FastHttpUser, events, task

BODY = b'{"instances": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]}'
HEADERS = {"content-type": "application/json"}
_MARK: dict[str, float] = {}  # Locust's listeners are module-level: one mark per process
_ENVIRONMENT: list[Any] = []  # spawning_complete does not pass the environment; init does


class PlainUser(FastHttpUser):
    @task
    def predict(self) -> None:
        self.client.post("/v1/predict", data=BODY, headers=HEADERS)  # type: ignore[arg-type]  # Locust takes bytes too


@events.init.add_listener  # type: ignore[untyped-decorator]  # untyped in Locust
def _init(environment: Any, **_kwargs: Any) -> None:
    _ENVIRONMENT.append(environment)


@events.spawning_complete.add_listener  # type: ignore[untyped-decorator]
def _spawned(**_kwargs: Any) -> None:
    environment = _ENVIRONMENT[0]
    _MARK.update(
        cpu_s=time.process_time(),
        wall_s=time.perf_counter(),
        requests=environment.stats.total.num_requests,
    )


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _stopped(environment: Any, **_kwargs: Any) -> None:
    total = environment.stats.total
    started = _MARK or {"cpu_s": 0.0, "wall_s": time.perf_counter(), "requests": 0}
    report = {
        "requests_in_window": total.num_requests - started["requests"],
        "requests": total.num_requests,
        "failures": total.num_failures,
        "cpu_s": time.process_time() - started["cpu_s"],
        "wall_s": time.perf_counter() - started["wall_s"],
        "p50_ms": total.get_response_time_percentile(0.5),
        "p99_ms": total.get_response_time_percentile(0.99),
    }
    path = os.environ.get("SELFBENCH_OUT")
    if path:
        with open(path, "w") as out:
            json.dump(report, out)
