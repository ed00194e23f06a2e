"""A circuit breaker in front of the remote target, on an injectable clock. Stdlib only.

::

    closed ──(failure_threshold consecutive failures)──► open
      ▲                                                   │ cool-down elapsed
      │ trial succeeds                                    ▼
      └──────────────────────────────────────────────  half-open ──(trial fails)──► open

While open, ``allow()`` says no without touching the network, so an outage costs one failed
attempt per cool-down instead of one timeout per request. Half-open lets exactly one trial
request through; its outcome decides.

The default threshold is 1: every answer the edge gives while the breaker is open comes from the
same model run locally, so opening on a single failure costs nothing but the remote's answers for
one cool-down, while each extra failure tolerated costs a client a full timeout. The remote client
already retries once when a kept-alive connection turns out to be stale, so a failure that reaches
the breaker is a real one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final, Literal

BreakerState = Literal["closed", "open", "half_open"]
DEFAULT_FAILURE_THRESHOLD: Final = 1
DEFAULT_COOLDOWN_S: Final = 5.0


class CircuitBreaker:
    """Tracks consecutive remote failures; ``clock`` returns seconds (``time.monotonic``)."""

    def __init__(
        self,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if type(failure_threshold) is not int or failure_threshold < 1:
            raise ValueError(
                f"failure_threshold must be an integer >= 1, got {failure_threshold!r}"
            )
        if not (math.isfinite(cooldown_s) and cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be a finite number >= 0, got {cooldown_s!r}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._consecutive_failures = 0
        self._opened_at_s = 0.0
        self._trial_in_flight = False
        self.opens = 0
        self.closes = 0  # back to closed from open or half-open: the remote answered again
        self.trials = 0
        self.rejected = 0  # requests kept off the network while open

    def state(self) -> BreakerState:
        """The state as of now: an open breaker whose cool-down has elapsed reads half-open.

        A method, not a property: reading it consults the clock and may move open to half-open.
        """
        if self._state == "open" and self._clock() - self._opened_at_s >= self.cooldown_s:
            self._state = "half_open"
        return self._state

    def allow(self) -> bool:
        """Whether the next request may try the remote; a half-open yes is the single trial."""
        state = self.state()
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            self.trials += 1
            return True
        self.rejected += 1
        return False

    def record_success(self) -> None:
        """The remote answered: close (a half-open trial succeeded) and forget past failures."""
        if self._state != "closed":
            self.closes += 1
        self._state = "closed"
        self._consecutive_failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """The remote failed: open after the threshold, or at once when it was the trial."""
        self._consecutive_failures += 1
        if self._state == "open":
            return  # already open: a late report must not restart the cool-down
        if self._trial_in_flight or self._consecutive_failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at_s = self._clock()
        self._trial_in_flight = False
        self.opens += 1

    def stats(self) -> dict[str, object]:
        return {
            "state": self.state(),
            "opens": self.opens,
            "closes": self.closes,
            "trials": self.trials,
            "rejected": self.rejected,
            "consecutive_failures": self._consecutive_failures,
            "failure_threshold": self.failure_threshold,
            "cooldown_s": self.cooldown_s,
        }
