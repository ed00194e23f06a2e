"""A flaky link's schedule: when the edge's remote is reachable, as a pure function. Stdlib only.

A ``LinkProfile`` says how the link misbehaves; ``LinkSchedule(profile, seed)`` answers, for any
instant ``t_s`` (seconds since the link's origin) and without waiting, what the fault proxy
(``targets.edge.faults``) does then::

    period 5 s:   |── up 3 s: +50 ms each request, 10 % of requests reset ──|── down 2 s ──|
    outage k   =  [k·period + (period - down), (k + 1)·period)

Each period starts up and ends down, so a run that starts with its link and measures two periods
after a warm-up shorter than the up phase holds two whole outages. An outage either *drops* (every
connection is reset, new ones as soon as they are accepted: a refused link, fast to notice) or
*blackholes* (connections are accepted and nothing comes back: the client waits for its timeout);
``outage="mixed"`` draws that per outage from the seed. Resets are drawn per forwarded request
(its ordinal ``n`` on the proxy), also from the seed. Both draws hash ``(seed, what, index)``, so
the whole schedule is a pure function of the seed and the time (and the request's ordinal).

Profile text (``--flaky-link[=SPEC]``): ``default``, or comma-separated changes to it:
``down=2s/5s`` (down for 2 s of every 5), ``reset=10%``, ``delay=50ms``,
``outage=mixed|drop|blackhole``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Final, Literal

from targets.errors import InputError
from targets.units import format_duration, parse_duration_s

OutageMode = Literal["drop", "blackhole"]
OUTAGE_CHOICES: Final = ("mixed", "drop", "blackhole")
DEFAULT_SPEC: Final = "default"
_KEYS: Final = ("down", "reset", "delay", "outage")


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How the link misbehaves: down ``down_s`` of every ``period_s``; while up, each request
    delayed ``delay_s`` and reset with probability ``reset_share``."""

    period_s: float = 5.0
    down_s: float = 2.0
    reset_share: float = 0.10
    delay_s: float = 0.050
    outage: str = "mixed"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise InputError(f"--flaky-link: period must be > 0, got {self.period_s!r}")
        if not (math.isfinite(self.down_s) and 0 <= self.down_s <= self.period_s):
            raise InputError(
                f"--flaky-link: down must be within 0..{self.period_s:g}s, got {self.down_s!r}"
            )
        if not (math.isfinite(self.reset_share) and 0 <= self.reset_share <= 1):
            raise InputError(f"--flaky-link: reset must be 0..100%, got {self.reset_share!r}")
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise InputError(f"--flaky-link: delay must be >= 0, got {self.delay_s!r}")
        if self.outage not in OUTAGE_CHOICES:
            raise InputError(
                f"--flaky-link: outage must be one of {', '.join(OUTAGE_CHOICES)}, "
                f"got {self.outage!r}"
            )

    @property
    def up_s(self) -> float:
        return self.period_s - self.down_s

    @property
    def spec(self) -> str:
        """The profile as text ``parse_link_profile`` reads back."""
        return (
            f"down={format_duration(self.down_s)}/{format_duration(self.period_s)},"
            f"reset={self.reset_share * 100:g}%,delay={format_duration(self.delay_s)},"
            f"outage={self.outage}"
        )


def parse_link_profile(text: str) -> LinkProfile:
    """``default`` or ``key=value,...`` changes to it; ``InputError`` naming ``--flaky-link``."""
    profile = LinkProfile()
    if text.strip() in ("", DEFAULT_SPEC):
        return profile
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in _KEYS:
            keys = ", ".join(k + "=..." for k in _KEYS)
            raise InputError(
                f"--flaky-link {text!r}: expected 'default' or {keys} "
                "(e.g. down=2s/5s,reset=10%,delay=50ms)"
            )
        try:
            profile = _changed(profile, key, value)
        except ValueError as exc:  # InputError too: the profile's own check
            problem = str(exc).removeprefix("--flaky-link: ")
            raise InputError(f"--flaky-link {text!r}: {key}: {problem}") from None
    return profile


def _changed(profile: LinkProfile, key: str, value: str) -> LinkProfile:
    if key == "down":
        down, sep, period = value.partition("/")
        if not sep:
            raise ValueError(f"expected DOWN/PERIOD such as 2s/5s, got {value!r}")
        return replace(profile, down_s=parse_duration_s(down), period_s=parse_duration_s(period))
    if key == "reset":
        if not value.endswith("%"):
            raise ValueError(f"expected a percentage such as 10%, got {value!r}")
        return replace(profile, reset_share=float(value.removesuffix("%")) / 100)
    if key == "delay":
        return replace(profile, delay_s=parse_duration_s(value))
    return replace(profile, outage=value)


@dataclass(frozen=True, slots=True)
class LinkState:
    """The link at one instant: up, or down in outage ``outage`` of kind ``mode``; ``until_s``:
    when this phase ends."""

    up: bool
    outage: int | None
    mode: OutageMode | None
    until_s: float


def _unit(seed: int, what: str, index: int) -> float:
    """A uniform draw in [0, 1) fixed by ``(seed, what, index)``: no state, no order."""
    digest = hashlib.blake2b(f"{seed}:{what}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class LinkSchedule:
    """The link's behaviour as a function of time since its origin (see the module docstring)."""

    profile: LinkProfile
    seed: int = 0

    def state_at(self, t_s: float) -> LinkState:
        """The link at ``t_s`` seconds after its origin (before the origin: up)."""
        profile = self.profile
        if t_s < 0 or profile.down_s == 0:
            return LinkState(True, None, None, _next_down(profile, max(t_s, 0.0)))
        period = math.floor(t_s / profile.period_s)
        start_s = period * profile.period_s
        if t_s - start_s < profile.up_s:
            return LinkState(True, None, None, start_s + profile.up_s)
        return LinkState(False, period, self.outage_mode(period), start_s + profile.period_s)

    def outage_mode(self, outage: int) -> OutageMode:
        """How outage ``outage`` fails connections: its profile's mode, or drawn (mixed)."""
        mode = self.profile.outage
        if mode == "drop":
            return "drop"
        if mode == "blackhole":
            return "blackhole"
        return "drop" if _unit(self.seed, "outage", outage) < 0.5 else "blackhole"

    def resets(self, request: int) -> bool:
        """Whether the proxy resets the connection carrying its ``request``-th request."""
        return _unit(self.seed, "reset", request) < self.profile.reset_share

    def outages_overlapping(self, start_s: float, end_s: float) -> range:
        """The outages that overlap ``[start_s, end_s)`` (an empty range without outages)."""
        profile = self.profile
        if profile.down_s == 0 or end_s <= start_s:
            return range(0)
        # outage k spans [k·P + up, (k + 1)·P): it overlaps when it starts before end_s and
        # ends after start_s
        first = max(math.floor(start_s / profile.period_s), 0)
        last = math.ceil((end_s - profile.up_s) / profile.period_s) - 1
        return range(first, max(last + 1, first))


def _next_down(profile: LinkProfile, t_s: float) -> float:
    if profile.down_s == 0:
        return math.inf
    return math.floor(t_s / profile.period_s) * profile.period_s + profile.up_s
