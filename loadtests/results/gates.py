"""Exit codes and the gates that decide them — one meaning everywhere (README "Exit codes").

    0    ok: the run measured, VALID, every gate passed
    1    a gate (threshold) was breached
    2    bad input: nothing was measured, or the input could not be used
    3    the measurement is INVALID (the generator could not keep up, no requests, ...)
    130  interrupted (Ctrl-C / SIGTERM): the partial result is written

When several apply, the most severe by ``PRECEDENCE`` wins: 130 > 2 > 3 > 1 > 0. ``bench``,
``--repeat`` and ``sweep`` combine their cells' codes the same way (``combine``).

Every ``run``, ``bench`` and ``locust`` result is gated by ``DEFAULT_GATE`` (success rate
≥ 99 %) unless the user names ``success_rate`` or ``fail_ratio`` themselves (theirs replaces
it) or passes ``--no-default-gate``; any other threshold adds to it. A run where every request
failed therefore never exits 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from loadtests.results.document import ResultDocument

EXIT_OK: Final = 0
EXIT_BREACH: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_INVALID: Final = 3
EXIT_INTERRUPTED: Final = 130
PRECEDENCE: Final = (EXIT_INTERRUPTED, EXIT_BAD_INPUT, EXIT_INVALID, EXIT_BREACH, EXIT_OK)

DEFAULT_GATE: Final = "success_rate>=0.99"
_REPLACES_DEFAULT = re.compile(r"^\s*(success_rate|fail_ratio)\b")


def combine(codes: Iterable[int]) -> int:
    """The one code for several outcomes: the most severe by ``PRECEDENCE``."""
    seen = set(codes)
    for code in PRECEDENCE:
        if code in seen:
            return code
    return max(seen) if seen else EXIT_OK  # a code outside the table (a signal's 128 + N)


def with_default_gate(
    expressions: Sequence[str], *, default_gate: bool = True, gate: str = DEFAULT_GATE
) -> list[str]:
    """The user's thresholds, with ``gate`` (the default success-rate gate; ``compare`` passes
    its relative one) first unless they name ``success_rate`` / ``fail_ratio`` themselves or
    refuse it."""
    chosen = list(expressions)
    if not default_gate or any(_REPLACES_DEFAULT.match(text) for text in chosen):
        return chosen
    return [gate, *chosen]


def result_exit_code(result: ResultDocument, breached: bool, *, allow_invalid: bool) -> int:
    """The exit code of one finished result: interrupted, invalid, breached or ok."""
    if result["run"].get("partial"):
        return EXIT_INTERRUPTED
    if not result["verdict"]["valid"] and not allow_invalid:
        return EXIT_INVALID
    return EXIT_BREACH if breached else EXIT_OK
