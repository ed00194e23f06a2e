"""The self-benchmark's table and its goal ratios (issue 8), from the measured rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from benchmarks.selfbench.common import Row, ratio
from benchmarks.selfbench.processes_part import LOOPS, client

FAST = "servelab run (fast client)"
BUSY = "servelab run --busy-poll"


def _find(rows: list[Row], section: str, test: Callable[[Row], bool]) -> Row | None:
    return next((row for row in rows if row.section == section and test(row)), None)


def _static(row: Row) -> bool:
    return row.server in ("nginx", "static (Python)")


def _rate(row: Row | None) -> float | None:
    return None if row is None else row.rate_per_s


def _per_core(row: Row | None) -> float | None:
    return None if row is None else row.per_core_rate


def _extra(row: Row | None, key: str) -> float | None:
    return None if row is None else cast("float | None", row.extra[key])


def _client_is(client: str) -> Callable[[Row], bool]:
    return lambda row: row.client == client


def _client_ends_with(suffix: str) -> Callable[[Row], bool]:
    return lambda row: row.client.endswith(suffix)


def _fast_client_on(server: str) -> Callable[[Row], bool]:
    return lambda row: row.client == FAST and row.server == server


def goals(rows: list[Row]) -> list[dict[str, Any]]:
    """Each goal: its name, the measured value, the bound, and whether it is met (None: the
    part did not run)."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, bound: float, at_least: bool, how: str) -> None:
        met = None if value is None else (value >= bound if at_least else value <= bound)
        checks.append({"goal": name, "value": value, "bound": bound,
                       "at_least": at_least, "met": met, "how": how})  # fmt: skip

    fast = _find(rows, "rest", lambda r: r.client == FAST and _static(r))
    locust = _find(rows, "rest", lambda r: r.client.startswith("Locust") and _static(r))
    aio = _find(rows, "rest", lambda r: r.client.endswith("aiohttp") and _static(r))
    check("REST per client core vs Locust FastHttpUser (fast server)",
          ratio(_per_core(fast), _per_core(locust)), 2.0, True,
          "servelab req/s per client CPU-second / Locust's")  # fmt: skip
    check("  (aiohttp client vs Locust, for reference)",
          ratio(_per_core(aio), _per_core(locust)), 0.0, True,
          "what aiohttp + uvloop alone reaches")  # fmt: skip
    on_target = [r for r in rows if r.section == "rest" and r.server == "FastAPI target"]
    best = max((r.rate_per_s or 0.0 for r in on_target), default=None)
    mine = _find(rows, "rest", lambda r: r.client == FAST and r.server == "FastAPI target")
    busy = _find(rows, "rest", lambda r: r.client == BUSY and r.server == "FastAPI target")
    check("REST throughput vs the best client (FastAPI target)",
          ratio(_rate(busy), best), 0.95, True,
          "servelab run --busy-poll req/s / best req/s")  # fmt: skip
    check("  (without --busy-poll, for reference)", ratio(_rate(mine), best), 0.0,
          True, "the client sleeps between answers; the target pays to wake it")  # fmt: skip
    for mode, kind in (("unary", "grpc"), ("stream", "grpc-stream")):
        ours = _find(rows, "grpc", _client_ends_with(f"--target {kind}"))
        bare = _find(rows, "grpc", _client_is(f"bare grpc.aio {mode}"))
        check(f"gRPC {mode} vs bare grpc.aio", ratio(_rate(ours), _rate(bare)), 0.95, True,
              "servelab calls/s / bare calls/s")  # fmt: skip
        check(f"  gRPC {mode} client CPU per call vs bare", _cpu_ratio(ours, bare), 1.10,
              False, "servelab µs per call / bare µs per call")  # fmt: skip
    oip_rest = _find(rows, "oip", _client_is("servelab run --protocol oip (REST)"))
    own_rest = _find(rows, "oip", _client_is("servelab run (REST, own contract)"))
    check("OIP REST client CPU per request vs servelab's own contract",
          ratio(oip_rest.cpu_us_per_request if oip_rest else None,
                own_rest.cpu_us_per_request if own_rest else None), 1.10, False,
          "µs per request, same 64-wide rows, same target")  # fmt: skip
    oip_grpc = _find(rows, "oip", _client_is("servelab run --protocol oip (gRPC)"))
    bare_oip = _find(rows, "oip", _client_is("bare grpc.aio oip"))
    check("OIP gRPC vs bare grpc.aio ModelInfer", ratio(_rate(oip_grpc), _rate(bare_oip)), 0.95,
          True, "servelab calls/s / bare calls/s")  # fmt: skip
    check("  OIP gRPC client CPU per call vs bare", _cpu_ratio(oip_grpc, bare_oip), 1.10,
          False, "servelab µs per call / bare µs per call")  # fmt: skip
    ours_ml = _find(rows, "servers", _client_is("servelab run --protocol oip"))
    hey = _find(rows, "servers", _client_is("hey (Go)"))
    check("servelab vs hey against MLServer (OIP REST)", ratio(_rate(ours_ml), _rate(hey)), 1.0,
          True, "servelab req/s / hey req/s, same concurrency")  # fmt: skip
    tight = _find(rows, "inprocess", lambda r: r.client.startswith("tight loop"))
    check("in-process ns per recorded sample", _extra(tight, "overhead_ns"), 150.0,
          False, "harness overhead over an untimed call")  # fmt: skip
    memory = [r for r in rows if r.section == "memory"]
    check("recording memory growth (MB, largest run)",
          memory[-1].extra["growth_mb"] if memory else None, 50.0, False,
          memory[-1].client if memory else "")  # fmt: skip
    schedule = _find(rows, "schedule", lambda r: "on_time_share" in r.extra)
    check("open loop at 80 % capacity: sends within 1 ms",
          _extra(schedule, "on_time_share"), 0.99, True, "share of sends")  # fmt: skip
    for loop in LOOPS:
        two = _find(rows, "processes", _client_is(client(loop, 2)))
        one = _find(rows, "processes", _client_is(client(loop, 1)))
        check(f"--processes 2 vs 1, in-process, {loop} loop", ratio(_rate(two), _rate(one)),
              1.8, True, "req/s of two generator processes / one's")  # fmt: skip
    return checks


def _cpu_ratio(ours: Row | None, bare: Row | None) -> float | None:
    """Client CPU per call, ours over the bare client's."""
    return ratio(
        ours.cpu_us_per_request if ours else None, bare.cpu_us_per_request if bare else None
    )


def _ratio_text(numerator: float | None, denominator: float | None) -> str:
    value = ratio(numerator, denominator)
    return "-" if value is None else f"{value:.2f}x"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(rows: list[Row], checks: list[dict[str, Any]]) -> None:
    header = f"{'section':<9} {'client':<44} {'server':<15} {'req/s':>10} {'CPU µs/req':>10} " \
             f"{'req/s/core':>10} {'p50 ms':>8} {'p99 ms':>8} {'server#':>9}  note"  # fmt: skip
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.section:<9} {row.client[:44]:<44} {row.server[:15]:<15} "
              f"{_number(row.rate_per_s):>10} {_number(row.cpu_us_per_request, 1):>10} "
              f"{_number(row.per_core_rate):>10} {_number(row.p50_ms, 3):>8} "
              f"{_number(row.p99_ms, 3):>8} {_number(row.server_counted):>9}  "
              f"{row.note}{'' if not row.failures else f' ({row.failures} failures)'}")  # fmt: skip
    print()
    for server in dict.fromkeys(r.server for r in rows if r.section == "rest"):
        ours = _find(rows, "rest", _fast_client_on(server))
        others = [r for r in rows if r.section == "rest" and r.server == server and r is not ours]
        parts = [
            f"{r.client.split(' (')[0]} {_ratio_text(_rate(ours), r.rate_per_s)} "
            f"(per core {_ratio_text(_per_core(ours), r.per_core_rate)})"
            for r in others
        ]
        print(f"  servelab (fast client) vs {server}: " + "; ".join(parts))
    print()
    for goal in checks:
        state = {None: "not run", True: "met", False: "NOT MET"}[goal["met"]]
        sign = ">=" if goal["at_least"] else "<="
        value = "-" if goal["value"] is None else f"{goal['value']:,.3f}"
        bound = "" if goal["bound"] == 0.0 else f" (goal {sign} {goal['bound']:g})"
        print(f"  {goal['goal']:<56} {value:>10}{bound:<14} {state if bound else ''}")
