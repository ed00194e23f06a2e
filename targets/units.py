"""Parsing of human durations (``5ms``, ``0.5s``) used by SPECs and CLI options. Stdlib only."""

from __future__ import annotations

import re

_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)\s*$")


def parse_duration_s(text: str, *, what: str = "duration") -> float:
    """Return ``text`` (e.g. ``"2.5ms"``) in seconds; ``ValueError`` naming ``what`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{what} {text!r} is not a duration: use a number and a unit, "
            "one of ns, us, ms, s, m, h (e.g. 5ms)"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def format_duration(seconds: float) -> str:
    """Short human form of a duration, for names and messages."""
    if seconds >= 1.0:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g}ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:g}us"
    return f"{seconds * 1e9:g}ns"
