"""The edge's "offline ready" claim, read from a flaky-link run's ``extra.link``; the flaky cell
stays out of the edge's latency figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.analysis import analyse
from reports.landscape import HELD, INCONCLUSIVE, NOT_HELD, Claim, landscape
from reports.load import group_cells, load_runs
from tests.reports.factory import golden, recorded_result, write_document, write_variant


def _link(**changes: Any) -> dict[str, Any]:
    link: dict[str, Any] = {
        "profile": "down=2s/5s,reset=10%,delay=50ms,outage=mixed",
        "seed": 42,
        "outages": 2,
        "outages_scheduled": 2,
        "down_s": 4.0,
        "while_down": {"answers": 120, "cache": 20, "remote": 0, "local": 100, "refused": 0,
                       "device_share": 1.0, "local_share": 100 / 120},
        "while_up": {"answers": 180, "cache": 30, "remote": 140, "local": 10, "refused": 0,
                     "device_share": 40 / 180, "local_share": 10 / 180},
        "fallbacks": 110,
        "breaker": {"opens": 4, "closes": 3, "cooldown_s": 1.0},
        "lost": 0,
        "proxy": None,
    }  # fmt: skip
    return link | changes


def _claims(tmp_path: Path, link: dict[str, Any]) -> dict[tuple[str, str], Claim]:
    """The golden edge run, fault-free, beside the same run behind a flaky link (slower)."""
    write_document(golden("edge-laptop.json"), tmp_path / "edge.json")
    flaky = golden("edge-laptop.json")
    flaky["run"]["label"] = "flaky-link"
    flaky["extra"]["link"] = link
    flaky["summary"]["latency_ms"] = {k: v * 100 for k, v in flaky["summary"]["latency_ms"].items()}
    write_document(flaky, tmp_path / "flaky.json")
    write_variant("rest-laptop.json", tmp_path / "rest.json")
    claims = landscape(analyse(group_cells(load_runs([str(tmp_path)]).runs)))
    return {(c.pattern, c.claim): c for c in claims if c.hardware == "laptop"}


def test_offline_ready_held_when_the_edge_rode_out_outages_losing_nothing(
    tmp_path: Path,
) -> None:
    claims = _claims(tmp_path, _link())
    offline = claims["edge", "offline ready"]
    assert offline.outcome == HELD
    assert offline.evidence.startswith(
        "flaky link (down=2s/5s,reset=10%,delay=50ms,outage=mixed): 2 outages; 0 of 300 "
        "requests lost; while down 120 answers, 100.0% from the device (local 100, cache 20); "
        "breaker opened 4, closed 3; p50 "
    )
    # the latency claim is the fault-free cell's, not the flaky one's
    latency = claims["edge", "ultra-low latency"]
    assert "flaky-link" not in latency.cell


def test_offline_ready_did_not_hold_when_a_request_was_lost(tmp_path: Path) -> None:
    offline = _claims(tmp_path, _link(lost=3))["edge", "offline ready"]
    assert offline.outcome == NOT_HELD
    assert "3 of 300 requests lost" in offline.evidence
    assert offline.evidence.endswith("requests were lost")


def test_offline_ready_did_not_hold_when_the_breaker_never_closed(tmp_path: Path) -> None:
    link = _link(breaker={"opens": 1, "closes": 0, "cooldown_s": 5.0})
    offline = _claims(tmp_path, link)["edge", "offline ready"]
    assert offline.outcome == NOT_HELD
    assert offline.evidence.endswith("the breaker never closed again")


def test_offline_ready_is_inconclusive_without_an_answer_while_down(tmp_path: Path) -> None:
    link = _link(outages=0, while_down={"answers": 0})
    offline = _claims(tmp_path, link)["edge", "offline ready"]
    assert offline.outcome == INCONCLUSIVE
    assert offline.evidence.endswith("no answer was given while the link was down")


def test_a_faster_flaky_cell_never_stands_for_the_edge_latency(tmp_path: Path) -> None:
    """The flaky cell answers mostly from the device, so it can beat the fault-free one: the
    latency claim still reads the fault-free cell, the one comparable with the others."""
    clean = recorded_result(queue_ms=40.0, target="edge")
    flaky = recorded_result(queue_ms=0.0, target="edge", label="flaky-link")
    flaky["extra"]["link"] = _link()
    write_document(clean, tmp_path / "clean.json")
    write_document(flaky, tmp_path / "flaky.json")
    write_document(recorded_result(queue_ms=5.0, target="rest"), tmp_path / "rest.json")
    claims = landscape(analyse(group_cells(load_runs([str(tmp_path)]).runs)))
    latency = next(c for c in claims if c.claim == "ultra-low latency")
    assert latency.cell == "edge · closed c=8 · laptop"
    offline = next(c for c in claims if c.claim == "offline ready")
    assert offline.outcome == HELD
