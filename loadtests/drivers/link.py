"""The flaky link, seen from the load side: the fault proxy in a process of its own, and the
edge's answers counted by the link's state when each was given (``extra.link``).

``LinkProcess`` starts ``python -m targets.edge.faults`` between the edge runtime and its remote
(its CPU is the network's, not the edge's), reads the port and the schedule's origin from its
first line, and at ``stop`` closes its stdin and reads its counts. The schedule is a pure
function of the seed and the time (``targets.edge.link``), so the load side needs no message
from the proxy to know whether the link was down at an instant: ``answer_keys`` asks the
schedule at the instant an answer came back. ``EdgeDriver`` (``servelab run --flaky-link``) and
Locust's ``EdgeUser`` (``--flaky-link``) count the same keys; ``link_block`` turns them into the
result's ``extra.link``.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from loadtests.errors import LoadOptionError
from targets.edge.link import LinkProfile, LinkSchedule
from targets.edge.runtime import SOURCES

START_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 10.0
DEVICE_SOURCES: Final = ("cache", "local")  # answered on the device, no link needed
MAX_FLAKY_COOLDOWN_S: Final = 1.0


def flaky_cooldown_s(profile: LinkProfile) -> float:
    """The edge breaker's cool-down behind a flaky link: a third of the link's up phase, at
    most 1 s. The breaker's default 5 s equals the default link's period, so every half-open
    trial would land in the next outage and the breaker would never close."""
    return min(MAX_FLAKY_COOLDOWN_S, profile.up_s / 3)


class LinkProcess:
    """The fault proxy (``targets.edge.faults``) in a child process, forwarding to ``remote``."""

    def __init__(self, remote: str, schedule: LinkSchedule) -> None:
        parts = urlsplit(remote)
        if parts.scheme != "http" or not parts.hostname:
            raise LoadOptionError(f"--flaky-link needs an http:// remote, got {remote!r}")
        self.schedule = schedule
        self._upstream = f"{parts.hostname}:{parts.port or 80}"
        self._prefix = parts.path.rstrip("/")
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.origin_s = 0.0
        self.stats: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        """The remote as the edge reaches it: through the proxy."""
        return f"http://127.0.0.1:{self.port}{self._prefix}"

    def start(self) -> str:
        """Start the proxy and wait for its first line (the port); returns ``url``."""
        argv = [
            sys.executable, "-m", "targets.edge.faults", "--upstream", self._upstream,
            "--profile", self.schedule.profile.spec, "--seed", str(self.schedule.seed),
        ]  # fmt: skip
        process = self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        line = _first_line(process, START_TIMEOUT_S)
        try:
            hello = json.loads(line)
            self.port, self.origin_s = int(hello["port"]), float(hello["origin_s"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise RuntimeError(f"the fault proxy did not start: {line[:300]!r}") from None
        return self.url

    def stop(self) -> dict[str, Any] | None:
        """Close the proxy's stdin, wait for it to exit, and keep its counts (``stats``)."""
        process, self._process = self._process, None
        if process is None:
            return self.stats
        try:
            out, _ = process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()  # our own child, by its handle
            out, _ = process.communicate()
        for line in out.decode(errors="replace").splitlines():
            with_stats = _json_object(line)
            if "stats" in with_stats:
                self.stats = with_stats["stats"]
        return self.stats

    def now_s(self) -> float:
        """Seconds since the schedule's origin (``CLOCK_MONOTONIC`` is one clock machine-wide)."""
        return time.monotonic() - self.origin_s


def _first_line(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """The child's first stdout line, or what it said on stderr if it exits or stalls first."""
    if process.stdout is None or process.stderr is None:
        raise RuntimeError("the fault proxy's stdout and stderr must be pipes")
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout_s)
    if ready:
        line = process.stdout.readline()
        if line:
            return line
    process.kill()
    _, err = process.communicate()
    return err or b"no output"


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def answer_keys(schedule: LinkSchedule, t_s: float, source: str | None, failed: bool) -> list[str]:
    """The counters one answer adds: ``down:SOURCE`` / ``up:SOURCE`` (``refused``: an error
    body, e.g. an expected rejection), ``outage:K`` while down, ``lost`` when it failed."""
    state = schedule.state_at(t_s)
    keys = [f"{'up' if state.up else 'down'}:{source or 'refused'}"]
    if state.outage is not None:
        keys.append(f"outage:{state.outage}")
    if failed:
        keys.append("lost")
    return keys


def window_keys(schedule: LinkSchedule, start_s: float, end_s: float) -> dict[str, float]:
    """What the schedule alone says of a window: outages overlapping it and seconds down."""
    outages = schedule.outages_overlapping(start_s, end_s)
    period_s, up_s = schedule.profile.period_s, schedule.profile.up_s
    down_s = sum(
        max(min(end_s, (k + 1) * period_s) - max(start_s, k * period_s + up_s), 0.0)
        for k in outages
    )
    return {"scheduled": float(len(outages)), "down_s": down_s}


def _split(counts: Mapping[str, float], state: str) -> dict[str, Any]:
    by_source = {source: int(counts.get(f"{state}:{source}", 0)) for source in SOURCES}
    refused = int(counts.get(f"{state}:refused", 0))
    answers = sum(by_source.values())
    device = sum(by_source[source] for source in DEVICE_SOURCES)
    return {
        "answers": answers,
        **by_source,
        "refused": refused,
        "device_share": device / answers if answers else None,
        "local_share": by_source["local"] / answers if answers else None,
    }


def link_block(
    counts: Mapping[str, float], schedule: LinkSchedule, proxy: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``extra.link`` from the counted keys (``answer_keys``, ``window_keys``,
    ``breaker_opens``/``breaker_closes``) and the proxy's own counts (``None``: not known)."""
    outages = sorted(int(key.partition(":")[2]) for key in counts if key.startswith("outage:"))
    return {
        "profile": schedule.profile.spec,
        "seed": schedule.seed,
        "outages": len(outages),  # outages in the window during which the edge answered
        "outages_scheduled": int(counts.get("scheduled", 0)),
        "down_s": counts.get("down_s", 0.0),
        "while_down": _split(counts, "down"),
        "while_up": _split(counts, "up"),
        "fallbacks": int(counts.get("down:local", 0) + counts.get("up:local", 0)),
        "breaker": {
            "opens": int(counts.get("breaker_opens", 0)),
            "closes": int(counts.get("breaker_closes", 0)),
            "cooldown_s": flaky_cooldown_s(schedule.profile),
        },
        "lost": int(counts.get("lost", 0)),
        "proxy": dict(proxy) if proxy is not None else None,
    }


class LinkTally:
    """The counted keys of one measured window, on ``clock`` (seconds since the link's
    origin: ``LinkProcess.now_s``)."""

    def __init__(self, schedule: LinkSchedule, clock: Callable[[], float]) -> None:
        self.schedule = schedule
        self._clock = clock
        self.counts: Counter[str] = Counter()
        self.start_s = clock()
        self.end_s: float | None = None

    def restart(self) -> None:
        """A new window from now (the warm-up ended)."""
        self.counts.clear()
        self.start_s, self.end_s = self._clock(), None

    def finish(self) -> None:
        """The window ends now (the load stopped); later answers are not counted."""
        if self.end_s is None:
            self.end_s = self._clock()

    def observe(self, source: str | None, failed: bool) -> None:
        """One answer (``source`` ``None``: an error body or no answer), given now."""
        if self.end_s is None:
            self.counts.update(answer_keys(self.schedule, self._clock(), source, failed))

    def block(self, breaker: tuple[int, int], proxy: Mapping[str, Any] | None) -> dict[str, Any]:
        """``extra.link`` of the window; ``breaker``: (opens, closes) in it."""
        end_s = self._clock() if self.end_s is None else self.end_s
        counts: dict[str, float] = dict(self.counts)
        counts |= window_keys(self.schedule, self.start_s, end_s)
        counts |= {"breaker_opens": breaker[0], "breaker_closes": breaker[1]}
        return link_block(counts, self.schedule, proxy)
