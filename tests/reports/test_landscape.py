"""The measured serving landscape: each claim of the lesson's table checked, not asserted."""

from __future__ import annotations

from pathlib import Path

from reports.analysis import analyse
from reports.landscape import HELD, INCONCLUSIVE, NOT_HELD, NOT_MEASURED, Claim, landscape
from reports.load import group_cells, load_runs
from tests.reports.factory import GOLDEN, golden, write_document, write_variant


def _claims(paths: list[str]) -> dict[tuple[str, str, str], Claim]:
    claims = landscape(analyse(group_cells(load_runs(paths).runs)))
    return {(c.hardware, c.pattern, c.claim): c for c in claims}


def test_every_claim_is_checked_per_hardware_profile_with_numbers() -> None:
    claims = _claims([str(GOLDEN)])
    batch = claims["laptop", "batch", "high latency"]
    assert batch.outcome == HELD
    assert batch.evidence.startswith("p50 21.7 ms; vs REST 2.75 ms: ratio 7.88 [")
    cost = claims["laptop", "batch", "cost efficiency"]
    assert cost.outcome == HELD  # 0.023 CPU-s per 1k predictions, cheaper than every other
    assert "cost scopes differ" in cost.evidence
    assert claims["laptop", "REST", "ubiquitous clients"].outcome == NOT_MEASURED
    offline = claims["laptop", "edge", "offline ready"]
    assert offline.outcome == INCONCLUSIVE
    assert "not exercised" in offline.evidence  # the remote answered: no fallback happened
    assert claims["laptop", "gRPC", "low latency"].outcome == INCONCLUSIVE  # ≈ REST here
    missing = claims["server", "edge", "ultra-low latency; offline ready"]
    assert (missing.outcome, missing.evidence) == (NOT_MEASURED, "no valid run")
    assert {c.model for c in claims.values()} == {"synthetic:lognormal:2ms:0.5"}


def test_a_contradicted_claim_did_not_hold(tmp_path: Path) -> None:
    """gRPC measured 8x slower than REST on this 'hardware': "low latency" did not hold."""
    write_variant("rest-laptop.json", tmp_path / "rest.json")
    write_variant("batch-laptop.json", tmp_path / "grpc.json", target="grpc", transport="grpc")
    claims = _claims([str(tmp_path)])
    grpc = claims["laptop", "gRPC", "low latency"]
    assert grpc.outcome == NOT_HELD
    assert "vs REST" in grpc.evidence
    assert grpc.evidence.endswith("slower")


def test_offline_ready_holds_when_the_edge_answered_locally(tmp_path: Path) -> None:
    edge = golden("edge-laptop.json")
    edge["extra"]["sources"]["local"]["count"] = 40
    write_document(edge, tmp_path / "edge.json")
    write_variant("rest-laptop.json", tmp_path / "rest.json")
    claim = _claims([str(tmp_path)])["laptop", "edge", "offline ready"]
    assert claim.outcome == HELD
    assert claim.evidence.startswith("40 of 300 answers computed on the device")


def test_patterns_serving_different_models_are_not_compared(tmp_path: Path) -> None:
    write_variant("rest-laptop.json", tmp_path / "rest.json")
    write_variant("grpc-laptop.json", tmp_path / "grpc.json", model="reference")
    claims = _claims([str(tmp_path)])
    rest = claims["laptop", "REST", "medium latency"]
    assert rest.outcome == NOT_MEASURED
    assert rest.evidence.endswith("no pattern on another latency rung to compare with")
    assert {c.model for c in claims.values()} == {"reference", "synthetic:lognormal:2ms:0.5"}
