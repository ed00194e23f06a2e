"""The benchmark config (TOML), validated up front, and the embedded default matrix.

Every key is checked before anything runs: an unknown key, a wrong type or a bad value is one
line naming the file and the key (``bench.toml: cells[2].concurrency: expected an integer or a
list of integers, got "many"``). ``examples/bench.toml`` is the annotated example.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.drivers.registry import TARGETS
from loadtests.errors import ConfigError, LoadOptionError
from loadtests.jobs.external import ServerSpec
from loadtests.jobs.freshness_spec import FRESHNESS_KEYS, FreshnessSpec, read_freshness
from loadtests.jobs.profiles import HardwareProfile
from loadtests.jobs.settings import function_front_args
from loadtests.options import NON_NEGATIVE, POSITIVE_DURATION, StageList
from loadtests.protocols.registry import PROTOCOLS, ProtocolOptions, protocol
from loadtests.results.thresholds import parse_thresholds
from targets.edge.config import RUNTIMES as EDGE_RUNTIMES
from targets.edge.link import parse_link_profile
from targets.errors import InputError
from targets.spec import load_model
from targets.units import parse_duration_s

ARRIVALS = ("constant", "poisson")
STAGES = StageList(duration=POSITIVE_DURATION, rate=NON_NEGATIVE)  # as ``servelab run --stages``
DEFAULT_TARGETS = ("inprocess", "rest", "grpc", "grpc-stream", "stream", "batch", "edge")
BENCH_KEYS = {"model", "duration", "warmup", "seed", "repeat", "thresholds", "label"}
PROFILE_KEYS = {"name", "cpus", "workers", "threads"}
CELL_KEYS = {
    "target", "model", "concurrency", "rates", "arrival", "duration", "warmup", "batch_size",
    "window_ms", "invalid_fraction", "api", "label", "profiles", "distinct", "server",
    "protocol", "model_name", "model_version", "tensor", "header", "request_template",
    "bentoml_api", "stages", "idle_timeout", "max_function_instances", "processes",
    "connections",
    "flaky_link", "runtime",
}  # fmt: skip
SERVER_KEYS = {
    "name", "argv", "env", "cwd", "files", "ready_url", "ready_address", "url", "address",
    "start_timeout",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cell:
    """One target at one or more load levels."""

    target: str
    model: str
    loads: tuple[tuple[str, float], ...]  # ("closed", concurrency) or ("open", rate)
    arrival: str = "constant"
    duration_s: float = 8.0
    warmup_s: float = 1.0
    batch_size: int | None = None
    window_ms: float | None = None
    invalid_fraction: float = 0.0
    api: str = "v1"
    label: str | None = None
    profiles: tuple[str, ...] | None = None
    distinct: int = 4096
    processes: int = 1  # generator processes per run (servelab run --processes)
    connections: int | None = None  # servelab run --connections (default: from the load)
    server: str | None = None  # a [[servers]] name: the third-party server the cell loads
    protocol: str = "servelab"
    protocol_options: ProtocolOptions = field(default_factory=ProtocolOptions)
    # ``stages = "1s:20,2s:0,..."``: one open-loop run, stepped (rate 0: an idle gap); its load
    # is ("stages", 0). ``server_args``: options for the server servelab starts (a function
    # front's idle_timeout / max_function_instances).
    stages: tuple[tuple[float, float], ...] | None = None
    server_args: tuple[str, ...] = ()
    freshness: FreshnessSpec | None = None  # kind = "freshness": backfills vs streaming
    runtime: str = "python"  # edge: what computes the model (servelab run --runtime)
    flaky_link: str | None = None  # edge: the fault proxy's profile (servelab run --flaky-link)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    cells: tuple[Cell, ...]
    profiles: tuple[HardwareProfile, ...] = (HardwareProfile(),)
    seed: int = 42
    repeat: int = 1
    thresholds: tuple[str, ...] = ()
    source: str = "embedded default"
    servers: tuple[ServerSpec, ...] = ()
    notes: list[str] = field(default_factory=list)

    def with_overrides(self, *, repeat: int | None, thresholds: Sequence[str]) -> BenchConfig:
        """The config with the command line's ``--repeat`` and extra ``--threshold``s."""
        parse_thresholds(list(thresholds), allow_relative=False)  # exit 2 before any run
        return dataclasses.replace(
            self, repeat=repeat or self.repeat, thresholds=self.thresholds + tuple(thresholds)
        )


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def table(self, value: object, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})"
            )
        return value

    def int_(self, value: object, where: str, least: int = 1) -> int:
        if type(value) is not int or value < least:
            raise self.fail(where, f"expected an integer >= {least}, got {value!r}")
        return value

    def number(
        self, value: object, where: str, low: float = 0.0, high: float = float("inf")
    ) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(where, f"expected a number in [{low:g}, {high:g}], got {value!r}")
        return float(value)

    def duration(self, value: object, where: str) -> float:
        if not isinstance(value, str):
            raise self.fail(where, f'expected a duration string like "10s", got {value!r}')
        try:
            seconds = parse_duration_s(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        return seconds

    def string(self, value: object, where: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str) or (choices is not None and value not in choices):
            expected = f"one of {', '.join(choices)}" if choices else "a string"
            raise self.fail(where, f"expected {expected}, got {value!r}")
        return value

    def ints(self, value: object, where: str) -> list[int]:
        items = value if isinstance(value, list) else [value]
        if not items or any(type(item) is not int or item < 0 for item in items):
            raise self.fail(where, f"expected an integer or a list of integers, got {value!r}")
        return [item for item in items if type(item) is int]

    def stages(self, value: object, where: str) -> list[tuple[float, float]]:
        text = self.string(value, where)
        try:
            return STAGES(text)
        except argparse.ArgumentTypeError as exc:
            raise self.fail(where, str(exc)) from None

    def model(self, value: object, where: str) -> str:
        spec = self.string(value, where)
        try:
            load_model(spec)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        return spec


def _cell(reader: _Reader, raw: object, where: str, defaults: dict[str, Any]) -> Cell:
    if isinstance(raw, dict) and raw.get("kind", "load") != "load":
        return _freshness_cell(reader, raw, where, defaults)
    data = reader.table(raw, where, CELL_KEYS | {"kind"})
    if "target" not in data:
        raise reader.fail(where, "missing key 'target'")

    def opt(key: str, read: Any, default: Any = None) -> Any:
        return read(data[key], f"{where}.{key}") if key in data else default

    loads = [("closed", float(n)) for n in opt("concurrency", reader.ints, [])]
    rates = data.get("rates", [])
    for rate in rates if isinstance(rates, list) else [rates]:
        loads.append(("open", reader.number(rate, f"{where}.rates", 1e-3)))
    if any(kind == "closed" and level < 1 for kind, level in loads):
        raise reader.fail(f"{where}.concurrency", "concurrency must be >= 1")
    processes = opt("processes", reader.int_, 1)
    if any(kind == "closed" and level < processes for kind, level in loads or [("closed", 8)]):
        raise reader.fail(f"{where}.processes", "each process needs one of the concurrency's")
    stages = opt("stages", reader.stages)
    if stages is not None and loads:
        raise reader.fail(f"{where}.stages", "give stages or concurrency/rates, not both")
    target_name = reader.string(data["target"], f"{where}.target", tuple(TARGETS))
    for key in ("idle_timeout", "max_function_instances"):
        if key in data and not TARGETS[target_name].takes("front"):
            raise reader.fail(f"{where}.{key}", 'goes with target = "function"')
    profiles = data.get("profiles")
    if profiles is not None and (
        not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles)
    ):
        raise reader.fail(
            f"{where}.profiles", f"expected a list of profile names, got {profiles!r}"
        )
    return Cell(
        target=target_name,
        model=reader.model(data.get("model", defaults["model"]), f"{where}.model"),
        loads=tuple(loads) or ((("stages", 0.0),) if stages else (("closed", 8.0),)),
        arrival=opt("arrival", lambda v, w: reader.string(v, w, ARRIVALS), "constant"),
        # a stages cell lasts its stages, with no warm-up: the first burst is part of the load
        duration_s=opt(
            "duration", reader.duration, sum(d for d, _ in stages or ()) or defaults["duration"]
        ),
        warmup_s=opt("warmup", reader.duration, 0.0 if stages else defaults["warmup"]),
        batch_size=opt("batch_size", reader.int_),
        window_ms=opt("window_ms", lambda v, w: reader.number(v, w, 0, 60_000)),
        invalid_fraction=opt("invalid_fraction", lambda v, w: reader.number(v, w, 0, 1), 0.0),
        api=opt("api", lambda v, w: reader.string(v, w, ("v1", "v2")), "v1"),
        label=opt("label", reader.string, defaults["label"]),
        profiles=tuple(profiles) if profiles is not None else None,
        distinct=opt("distinct", reader.int_, 4096),
        processes=processes,
        connections=opt("connections", reader.int_),
        server=opt("server", reader.string),
        protocol=opt("protocol", lambda v, w: reader.string(v, w, tuple(PROTOCOLS)), "servelab"),
        protocol_options=_protocol_options(reader, data, where),
        stages=tuple(stages) if stages else None,
        server_args=function_front_args(
            opt("idle_timeout", reader.duration), opt("max_function_instances", reader.int_)
        ),
        flaky_link=_flaky_link(reader, data, where, target_name),
        runtime=_runtime(reader, data, where, target_name),
    )


def _runtime(reader: _Reader, data: dict[str, Any], where: str, target: str) -> str:
    """``runtime = "python" | "wasm"``: what computes an edge cell's model."""
    value = reader.string(data.get("runtime", "python"), f"{where}.runtime", EDGE_RUNTIMES)
    if value != "python" and not TARGETS[target].takes("runtime"):
        raise reader.fail(f"{where}.runtime", 'goes with target = "edge"')
    return value


def _flaky_link(reader: _Reader, data: dict[str, Any], where: str, target: str) -> str | None:
    """``flaky_link = true`` (the default profile) or a profile string, edge cells only."""
    value = data.get("flaky_link", False)
    if value is False:
        return None
    if not TARGETS[target].takes("flaky_link"):
        raise reader.fail(f"{where}.flaky_link", 'goes with target = "edge"')
    spec = "default" if value is True else reader.string(value, f"{where}.flaky_link")
    try:
        parse_link_profile(spec)
    except InputError as exc:
        raise reader.fail(f"{where}.flaky_link", str(exc)) from None
    return spec


def _freshness_cell(
    reader: _Reader, raw: dict[str, Any], where: str, defaults: dict[str, Any]
) -> Cell:
    """A ``kind = "freshness"`` cell: backfill schedules against streaming windows at each
    rate (``jobs.freshness``); ``duration`` / ``warmup``: each window's real streaming run."""
    data = reader.table(raw, where, set(FRESHNESS_KEYS))
    if data["kind"] != "freshness":
        raise reader.fail(f"{where}.kind", f"expected load or freshness, got {data['kind']!r}")

    def opt(key: str, read: Any, default: Any = None) -> Any:
        return read(data[key], f"{where}.{key}") if key in data else default

    rates = data.get("rates", [50.0])
    loads = tuple(
        ("open", reader.number(rate, f"{where}.rates", 1e-3))
        for rate in (rates if isinstance(rates, list) else [rates])
    )
    names = {"rate": "rates", "bound_rows": "sample_rows"}
    try:
        spec = read_freshness(
            data, where, duration_s=opt("duration", reader.duration, 2.0),
            warmup_s=opt("warmup", reader.duration, 0.5),
        )  # fmt: skip
        for _, rate in loads:
            keys = ("schedules", "windows", "horizon", "rate", "bound_rows")
            spec.check(rate, names={key: f"{where}.{names.get(key, key)}" for key in keys})
    except LoadOptionError as exc:
        raise ConfigError(f"{reader.source}: {exc}") from None
    profiles = data.get("profiles")
    if profiles is not None and (
        not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles)
    ):
        raise reader.fail(
            f"{where}.profiles", f"expected a list of profile names, got {profiles!r}"
        )
    return Cell(
        target="freshness",
        model=reader.model(data.get("model", defaults["model"]), f"{where}.model"),
        loads=loads or (("open", 50.0),),
        arrival="poisson",
        duration_s=spec.stream_duration_s,
        warmup_s=spec.stream_warmup_s,
        batch_size=opt("batch_size", reader.int_, 256),
        label=opt("label", reader.string, defaults["label"]),
        profiles=tuple(profiles) if profiles is not None else None,
        freshness=spec,
    )


def _protocol_options(reader: _Reader, data: dict[str, Any], where: str) -> ProtocolOptions:
    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        items = value if isinstance(value, list) else [value]
        return tuple(reader.string(item, f"{where}.{key}") for item in items)

    optional = {key: reader.string(data[key], f"{where}.{key}") for key in
                ("model_name", "model_version", "request_template") if key in data}  # fmt: skip
    return ProtocolOptions(
        model_name=optional.get("model_name"),
        model_version=optional.get("model_version"),
        tensors=strings("tensor"),
        headers=strings("header"),
        template=optional.get("request_template"),
        bentoml_api=reader.string(data.get("bentoml_api", "predict"), f"{where}.bentoml_api"),
    )


def _server(reader: _Reader, raw: object, where: str, root: str) -> ServerSpec:
    data = reader.table(raw, where, SERVER_KEYS)
    for key in ("name", "argv"):
        if key not in data:
            raise reader.fail(where, f"missing key {key!r}")
    argv = data["argv"]
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise reader.fail(f"{where}.argv", f"expected a list of strings, got {argv!r}")

    def texts(key: str) -> dict[str, str]:
        table = reader.table(data.get(key, {}), f"{where}.{key}", set(data.get(key, {})))
        return {str(k): reader.string(v, f"{where}.{key}.{k}") for k, v in table.items()}

    optional = {key: reader.string(data[key], f"{where}.{key}") for key in
                ("cwd", "ready_url", "ready_address", "url", "address") if key in data}  # fmt: skip
    if "ready_url" not in optional and "ready_address" not in optional:
        raise reader.fail(where, "needs ready_url or ready_address (readiness is polled)")
    return ServerSpec(
        name=reader.string(data["name"], f"{where}.name"),
        argv=tuple(argv),
        env=texts("env"),
        files=texts("files"),
        start_timeout_s=reader.duration(data.get("start_timeout", "60s"), f"{where}.start_timeout"),
        root=root,
        **optional,
    )


def _profile(reader: _Reader, raw: object, where: str) -> HardwareProfile:
    table = reader.table(raw, where, PROFILE_KEYS)
    if "name" not in table:
        raise reader.fail(where, "missing key 'name'")
    cpus = reader.ints(table["cpus"], f"{where}.cpus") if "cpus" in table else None
    threads = reader.int_(table["threads"], f"{where}.threads") if "threads" in table else None
    try:
        return HardwareProfile(
            name=reader.string(table["name"], f"{where}.name"),
            cpus=tuple(cpus) if cpus is not None else None,
            workers=reader.int_(table.get("workers", 1), f"{where}.workers"),
            threads=threads,
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise reader.fail(where, str(exc)) from None


def parse_config(data: dict[str, Any], source: str, root: str = ".") -> BenchConfig:
    reader = _Reader(source)
    reader.table(data, "top level", {"bench", "profiles", "cells", "servers"})
    bench = reader.table(data.get("bench", {}), "bench", BENCH_KEYS)
    defaults = {
        "model": reader.model(bench.get("model", "reference"), "bench.model"),
        "duration": reader.duration(bench.get("duration", "8s"), "bench.duration"),
        "warmup": reader.duration(bench.get("warmup", "1s"), "bench.warmup"),
        "label": reader.string(bench["label"], "bench.label") if "label" in bench else None,
    }
    thresholds = bench.get("thresholds", [])
    if not isinstance(thresholds, list) or not all(isinstance(t, str) for t in thresholds):
        raise reader.fail("bench.thresholds", f"expected a list of strings, got {thresholds!r}")
    try:
        parse_thresholds(thresholds, allow_relative=False)
    except ValueError as exc:
        raise reader.fail("bench.thresholds", str(exc)) from None
    profiles_raw = data.get("profiles", [])
    if not isinstance(profiles_raw, list):
        raise reader.fail("profiles", "expected an array of tables ([[profiles]])")
    profiles = [_profile(reader, raw, f"profiles[{i}]") for i, raw in enumerate(profiles_raw)]
    names = [profile.name for profile in profiles]
    if len(set(names)) != len(names):
        raise reader.fail("profiles", "profile names must be unique")
    cells_raw = data.get("cells")
    if not isinstance(cells_raw, list) or not cells_raw:
        raise reader.fail("cells", "expected at least one [[cells]] table")
    cells = tuple(_cell(reader, raw, f"cells[{i}]", defaults) for i, raw in enumerate(cells_raw))
    servers = _servers(reader, data.get("servers", []), root)
    _check_cells(reader, cells, servers)
    for index, cell in enumerate(cells):
        for name in cell.profiles or ():
            if name not in names:
                raise reader.fail(f"cells[{index}].profiles", f"unknown profile {name!r}")
    return BenchConfig(
        cells=cells,
        profiles=tuple(profiles) or (HardwareProfile(),),
        seed=reader.int_(bench.get("seed", 42), "bench.seed", 0),
        repeat=reader.int_(bench.get("repeat", 1), "bench.repeat"),
        thresholds=tuple(thresholds),
        source=source,
        servers=servers,
    )


def _servers(reader: _Reader, raw: object, root: str) -> tuple[ServerSpec, ...]:
    if not isinstance(raw, list):
        raise reader.fail("servers", "expected an array of tables ([[servers]])")
    servers = tuple(_server(reader, item, f"servers[{i}]", root) for i, item in enumerate(raw))
    if len({server.name for server in servers}) != len(servers):
        raise reader.fail("servers", "server names must be unique")
    return servers


def _check_cells(reader: _Reader, cells: Sequence[Cell], servers: Sequence[ServerSpec]) -> None:
    """Each cell's server exists and can be reached as its target needs; its protocol goes
    with its target."""
    by_name = {server.name: server for server in servers}
    for index, cell in enumerate(cells):
        where = f"cells[{index}]"
        if cell.freshness is not None:  # no server, no protocol: jobs/freshness.py
            continue
        try:
            protocol(cell.protocol).check_target(cell.target)
        except LoadOptionError as exc:
            raise reader.fail(f"{where}.protocol", str(exc)) from None
        if cell.server is None:
            continue
        server = by_name.get(cell.server)
        if server is None:
            raise reader.fail(f"{where}.server", f"unknown server {cell.server!r}")
        needed = "url" if TARGETS[cell.target].takes("url") else "address"
        if TARGETS[cell.target].server is None or getattr(server, needed) is None:
            raise reader.fail(
                f"{where}.server", f"--target {cell.target} needs the server's {needed}"
            )


def load_config(path: str | Path) -> BenchConfig:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path), root=str(Path(path).resolve().parent))


def flaky_link_cell(model: str) -> Cell:
    """The edge behind the default flaky link (down 2 s of every 5, after 3 s up): 9 s
    measured after a 1 s warm-up hold the two whole outages at 3-5 s and 8-10 s (up to 2 s of
    start-up slack). Two closed-loop clients: the generator stays light, and no open-loop
    schedule can fall behind on a busy machine."""
    return Cell(
        target="edge", model=model, loads=(("closed", 2.0),), duration_s=9.0, warmup_s=1.0,
        label="flaky-link", flaky_link="default",
    )  # fmt: skip


def serverless_cell(model: str) -> Cell:
    """Two 1.5 s bursts of 20 req/s, 1.2 s apart, on a front that retires instances idle 0.5 s
    and runs one at most: each burst meets a front scaled to zero and starts cold; the
    requests after the start are warm (~5.5 s with the front's own start). 16 connections: the
    requests a cold start holds up wait at the front, never for a client connection, and 60
    sends keep one late send (a busy core) from deciding the verdict."""
    stages = ((1.5, 20.0), (1.2, 0.0), (1.5, 20.0))
    return Cell(
        target="function", model=model, loads=(("stages", 0.0),), stages=stages,
        duration_s=sum(d for d, _ in stages), warmup_s=0.0, label="bursty",
        server_args=function_front_args(0.5, 1), connections=16,
    )  # fmt: skip


def freshness_cell(model: str) -> Cell:
    """15-minute, hourly and nightly backfills against 2 and 20 ms streaming windows at 50
    events/s: the schedules on virtual time over a day, makespans scaled from real batch runs
    of 1,000 and 4,000 rows, each window streamed for real for 1 s (~5 s in all)."""
    spec = FreshnessSpec(
        schedules_s=(900.0, 3600.0, 86400.0), windows_ms=(2.0, 20.0), bound_rows=4000,
        stream_duration_s=1.0, stream_warmup_s=0.25,
    )  # fmt: skip
    return Cell(
        target="freshness", model=model, loads=(("open", 50.0),), arrival="poisson",
        duration_s=spec.stream_duration_s, warmup_s=spec.stream_warmup_s, batch_size=256,
        freshness=spec,
    )  # fmt: skip


def default_config(*, quick: bool, model: str) -> BenchConfig:
    """All seven patterns, closed loop, bounded: ~1.5 min, or ~25 s with ``quick``."""
    duration, warmup = (2.0, 0.5) if quick else (8.0, 1.0)
    cells = [
        Cell(
            target=target,
            model=model,
            loads=(("closed", 2.0 if target == "batch" else 8.0),),
            duration_s=duration,
            warmup_s=warmup,
            batch_size=256 if target == "batch" else None,
        )
        for target in DEFAULT_TARGETS
    ]
    if not quick:  # the smoke run stays short; the full one rides out a flaky link too
        cells.append(flaky_link_cell(model))
    if not quick:  # the smoke run stays short; the full one measures cold starts too
        cells.append(serverless_cell(model))
    if not quick:  # ... and real freshness: backfills against streaming windows
        cells.append(freshness_cell(model))
    return BenchConfig(
        cells=tuple(cells), source="embedded default" + (" (quick)" if quick else "")
    )
