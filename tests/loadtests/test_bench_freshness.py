"""Bench cells of ``kind = "freshness"``: their keys checked up front, and one run end to end."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from loadtests.errors import ConfigError
from loadtests.jobs.bench import plan_runs, run_bench
from loadtests.jobs.bench_config import parse_config
from loadtests.results.freshness import points_of
from loadtests.results.result import load_result

CELL = {
    "kind": "freshness", "rates": [20], "schedules": ["1m", "10m"], "windows": "5ms",
    "horizon": "10m", "sample_rows": 400, "duration": "300ms", "warmup": "0s",
}  # fmt: skip


def test_a_freshness_cell_is_read_with_its_own_keys() -> None:
    config = parse_config({"cells": [CELL, {"target": "inprocess"}]}, "bench.toml")
    fresh, load = config.cells
    assert fresh.freshness is not None
    assert (fresh.target, fresh.loads, fresh.arrival) == ("freshness", (("open", 20.0),), "poisson")
    assert fresh.freshness.schedules_s == (60.0, 600.0)
    assert fresh.freshness.windows_ms == (5.0,)
    assert (fresh.freshness.horizon, fresh.freshness.bound_rows) == (600.0, 400)
    assert fresh.freshness.stream_duration_s == pytest.approx(0.3)
    assert load.freshness is None
    assert next(run.name for run in plan_runs(config)) == "001-freshness-r20-default-rep0"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"schedules": ["1m", "soon"]}, "cells[0].schedules 'soon' is not a duration"),
        ({"windows": ["2m"]}, "cells[0].windows: windows must be between 0 and 60000 ms"),
        ({"horizon": "30s"}, "cells[0].horizon: the horizon must lie between"),
        ({"horizon": 3}, "cells[0].horizon: expected a duration"),
        ({"sample_rows": 2}, "cells[0].sample_rows: expected an integer >= 4"),
        ({"rates": [2000], "horizon": "7h"}, "cells[0].rates: 2000/s over 7h"),
        ({"concurrency": 4}, "cells[0].concurrency: unknown key"),
        ({"kind": "fast"}, "cells[0].kind: expected load or freshness, got 'fast'"),
    ],
)
def test_bad_freshness_keys_name_the_key(change: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=r"^bench\.toml: ") as raised:
        parse_config({"cells": [{**CELL, **change}]}, "bench.toml")
    assert words in str(raised.value)


def test_schedules_on_a_load_cell_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"cells\[0\]\.schedules: unknown key"):
        parse_config({"cells": [{"target": "batch", "schedules": ["1h"]}]}, "bench.toml")


def test_a_bench_with_a_freshness_cell_writes_its_result(tmp_path: Path) -> None:
    config = parse_config({"cells": [CELL]}, "bench.toml")
    console = Console(file=io.StringIO(), width=200)
    outcome = run_bench(config, tmp_path, console, allow_invalid=True)
    ((_run, path, result),) = outcome.results
    assert path == tmp_path / "001-freshness-r20-default-rep0.json"
    document = load_result(path)
    assert document["run"]["group"] == "freshness|reference|open:20|default"
    labels = [point.label for point in points_of(document)]
    assert labels == ["1m backfill", "10m backfill", "stream 5ms"]
    assert result["summary"]["successes"] > 0
    assert outcome.codes == [0]
