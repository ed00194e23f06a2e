"""The landscape's "offline ready" claim for the edge, read from edge runs' ``extra``.

A run behind a flaky link (``servelab run --target edge --flaky-link``, the default bench's
``flaky-link`` cell) carries ``extra.link``: outages, answers by source while the link was down,
breaker opens and closes, requests lost. The claim holds when the edge rode out at least one
outage answering from the device (cache or local model) with no request lost, and went back to
the remote afterwards (its breaker closed again); it does not hold when a request was lost or
the breaker never closed. Without such a run, a fault-free edge run that fell back to its local
model still shows the path exists, and one that never did is "not exercised".

Flaky-link runs are kept out of the edge's latency and cost figures (``is_flaky``): the fault-free
edge cell stays comparable with the other patterns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from reports.load import Cell, Run

HELD: Final = "held"  # the landscape's words (reports.landscape imports this module)
NOT_HELD: Final = "did not hold"
INCONCLUSIVE: Final = "inconclusive"
NOT_MEASURED: Final = "not measured"
SOURCES: Final = ("cache", "remote", "local")


def link_of(run: Run) -> Mapping[str, Any] | None:
    """The run's ``extra.link`` (a flaky-link run), else ``None``."""
    link = (run.document.get("extra") or {}).get("link")
    return link if isinstance(link, dict) else None


def is_flaky(cell: Cell) -> bool:
    """Whether ``cell``'s runs went through a flaky link."""
    return any(link_of(run) is not None for run in cell.runs)


def _int(block: Mapping[str, object], key: str) -> int:
    value = block.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _latencies(runs: Sequence[Run]) -> str:
    """p50 per source of the first run that answered from it (runs of a cell are repeats)."""
    parts = []
    for source in SOURCES:
        for run in runs:
            found = ((run.document.get("extra") or {}).get("sources") or {}).get(source) or {}
            if found.get("count") and isinstance(found.get("p50_ms"), int | float):
                parts.append(f"{source} {found['p50_ms']:.3g} ms")
                break
    return "p50 " + ", ".join(parts) if parts else "no per-source latency"


def _link_claim(runs: Sequence[Run]) -> tuple[str, str]:
    totals: dict[str, int] = dict.fromkeys(
        ("outages", "down", "device", "local", "cache", "lost", "opens", "closes", "requests"), 0
    )
    profiles = set()
    for run in runs:
        link = link_of(run) or {}
        down = link.get("while_down") or {}
        breaker = link.get("breaker") or {}
        summary = run.document["summary"]
        profiles.add(str(link.get("profile")))
        totals["outages"] += _int(link, "outages")
        totals["down"] += _int(down, "answers")
        totals["local"] += _int(down, "local")
        totals["cache"] += _int(down, "cache")
        totals["device"] += _int(down, "local") + _int(down, "cache")
        totals["lost"] += max(_int(link, "lost"), _int(summary, "failures"))
        totals["opens"] += _int(breaker, "opens")
        totals["closes"] += _int(breaker, "closes")
        totals["requests"] += _int(summary, "requests")
    share = totals["device"] / totals["down"] if totals["down"] else 0.0
    evidence = (
        f"flaky link ({', '.join(sorted(profiles))}): {totals['outages']} outages; "
        f"{totals['lost']:,} of {totals['requests']:,} requests lost; while down "
        f"{totals['down']:,} answers, {share:.1%} from the device (local {totals['local']:,}, "
        f"cache {totals['cache']:,}); breaker opened {totals['opens']}, closed "
        f"{totals['closes']}; {_latencies(runs)}"
    )
    if not totals["outages"] or not totals["down"]:
        return INCONCLUSIVE, evidence + "; no answer was given while the link was down"
    if totals["lost"] or not totals["closes"]:
        why = "requests were lost" if totals["lost"] else "the breaker never closed again"
        return NOT_HELD, f"{evidence}; {why}"
    return HELD, evidence


def offline_claim(cells: Sequence[Cell]) -> tuple[str, str]:
    """(outcome, evidence) of "offline ready" over a context's valid edge cells."""
    runs = [run for cell in cells for run in cell.runs]
    flaky = [run for run in runs if link_of(run) is not None]
    if flaky:
        return _link_claim(flaky)
    local = answers = 0
    for run in runs:
        extra = run.document.get("extra") or {}
        local += int(((extra.get("sources") or {}).get("local") or {}).get("count") or 0)
        answers += int(extra.get("answers") or 0)
    if not answers:
        return NOT_MEASURED, "no edge run with a source split"
    if local:
        return HELD, f"{local} of {answers} answers computed on the device (local fallback)"
    return INCONCLUSIVE, f"not exercised: all {answers} answers came from the remote or cache"
