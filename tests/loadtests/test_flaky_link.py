"""``servelab run --target edge --flaky-link``: answers counted by the link's state (on a
controlled clock), the bench cell, and one real run whose outages, fallbacks, breaker
transitions and losses are counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.drivers.link import LinkTally, answer_keys, flaky_cooldown_s, window_keys
from loadtests.errors import ConfigError, LoadOptionError
from loadtests.jobs.bench_config import default_config, parse_config
from loadtests.jobs.settings import RunSettings
from targets.edge.link import LinkProfile, LinkSchedule, parse_link_profile
from targets.errors import InputError
from tests.conftest import ServelabCli

DEFAULT = LinkSchedule(LinkProfile(), seed=1)


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_an_answer_counts_under_the_state_of_the_link_when_it_came_back() -> None:
    assert answer_keys(DEFAULT, 1.0, "remote", False) == ["up:remote"]
    assert answer_keys(DEFAULT, 3.5, "local", False) == ["down:local", "outage:0"]
    assert answer_keys(DEFAULT, 9.0, None, True) == ["down:refused", "outage:1", "lost"]


def test_the_window_block_counts_outages_fallbacks_shares_and_losses() -> None:
    clock = Clock()
    tally = LinkTally(DEFAULT, clock)
    clock.now_s = 1.0
    tally.restart()  # the warm-up ended at 1 s: what came before is forgotten
    for at_s, source in [(2.0, "remote"), (3.2, "local"), (3.4, "cache"), (4.0, "local"),
                         (5.5, "local"), (6.0, "remote"), (8.5, "local")]:  # fmt: skip
        clock.now_s = at_s
        tally.observe(source, failed=False)
    clock.now_s = 9.0
    tally.observe(None, failed=True)
    clock.now_s = 11.0
    tally.finish()
    clock.now_s = 12.0
    tally.observe("local", failed=False)  # after the window: not counted
    block = tally.block((3, 2), {"resets": 4})
    assert block["outages"] == 2
    assert block["outages_scheduled"] == 2
    assert block["down_s"] == pytest.approx(4.0)
    assert block["while_down"] == {
        "answers": 4, "cache": 1, "remote": 0, "local": 3, "refused": 1,
        "device_share": 1.0, "local_share": 0.75,
    }  # fmt: skip
    assert block["while_up"]["answers"] == 3
    assert block["while_up"]["remote"] == 2
    assert block["fallbacks"] == 4
    assert block["breaker"] == {"opens": 3, "closes": 2, "cooldown_s": 1.0}
    assert block["lost"] == 1
    assert block["proxy"] == {"resets": 4}
    assert block["profile"] == "down=2s/5s,reset=10%,delay=50ms,outage=mixed"


def test_window_keys_measure_the_seconds_down_inside_the_window() -> None:
    assert window_keys(DEFAULT, 4.0, 8.5) == {"scheduled": 2.0, "down_s": pytest.approx(1.5)}
    assert window_keys(DEFAULT, 0.0, 3.0) == {"scheduled": 0.0, "down_s": 0.0}


def test_the_breaker_cools_down_within_the_up_phase() -> None:
    assert flaky_cooldown_s(LinkProfile()) == 1.0  # a third of 3 s up, at most 1 s
    assert flaky_cooldown_s(parse_link_profile("down=0.6s/1.5s")) == pytest.approx(0.3)


def test_flaky_link_settings_are_checked_before_any_load() -> None:
    settings = RunSettings(target="edge", flaky_link="down=1s/4s", seed=9)
    assert settings.link_schedule() == LinkSchedule(parse_link_profile("down=1s/4s"), 9)
    assert RunSettings(target="edge").link_schedule() is None
    with pytest.raises(LoadOptionError, match="--flaky-link goes with --target edge, not rest"):
        RunSettings(target="rest", flaky_link="default")
    with pytest.raises(InputError, match="--flaky-link 'down=9s/5s'"):
        RunSettings(target="edge", flaky_link="down=9s/5s")


def test_the_full_default_bench_has_a_flaky_link_cell_beside_the_fault_free_edge() -> None:
    config = default_config(quick=False, model="reference")
    edges = [cell for cell in config.cells if cell.target == "edge"]
    assert [cell.flaky_link for cell in edges] == [None, "default"]
    flaky = edges[1]
    assert flaky.label == "flaky-link"
    assert flaky.duration_s + flaky.warmup_s <= 12  # the budget for this cell
    schedule = LinkSchedule(parse_link_profile(flaky.flaky_link or ""), config.seed)
    period, up = schedule.profile.period_s, schedule.profile.up_s
    for slack_s in (0.0, 1.0, 2.0):  # the proxy starts a little before the load
        start_s = flaky.warmup_s + slack_s
        end_s = start_s + flaky.duration_s
        outages = schedule.outages_overlapping(start_s, end_s)
        whole = [k for k in outages if k * period + up >= start_s and (k + 1) * period <= end_s]
        assert len(whole) == 2, slack_s
    assert all(
        cell.flaky_link is None for cell in default_config(quick=True, model="reference").cells
    )


def _config(**cell: object) -> dict[str, Any]:
    return {"cells": [{"target": "edge", **cell}]}


def test_a_bench_cell_takes_flaky_link_true_or_a_profile_and_refuses_the_rest() -> None:
    assert parse_config(_config(flaky_link=True), "b.toml").cells[0].flaky_link == "default"
    spec = parse_config(_config(flaky_link="reset=0%"), "b.toml").cells[0].flaky_link
    assert spec == "reset=0%"
    assert parse_config(_config(), "b.toml").cells[0].flaky_link is None
    cases: list[tuple[dict[str, Any], str]] = [
        (_config(flaky_link="down=9s/5s"), "b.toml: cells[0].flaky_link: --flaky-link"),
        (_config(flaky_link=3), "b.toml: cells[0].flaky_link: expected a string"),
        ({"cells": [{"target": "rest", "flaky_link": True}]}, 'goes with target = "edge"'),
    ]
    for raw, says in cases:
        with pytest.raises(ConfigError) as caught:
            parse_config(raw, "b.toml")
        assert says in str(caught.value)


@pytest.mark.slow
def test_a_flaky_link_run_rides_out_two_outages_without_losing_a_request(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    """Up 0.9 s, down 0.6 s: 3.2 s from the proxy's start hold outages at 0.9 and 2.4 s. No
    resets, so the breaker's closes depend on the schedule alone."""
    out = tmp_path / "flaky.json"
    ran = servelab_cli(
        "run", "--target", "edge", "--flaky-link", "down=0.6s/1.5s,reset=0%,delay=5ms",
        "--concurrency", "2", "--duration", "3.2s", "--out", str(out), "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = json.loads(out.read_text())
    link = result["extra"]["link"]
    assert result["run"]["label"] == "flaky-link"
    # the window may end a little past 3.2 s (requests drain): a third outage may start in it
    assert link["outages"] >= 2
    assert link["outages_scheduled"] >= link["outages"]
    assert link["lost"] == 0
    assert result["summary"]["failures"] == 0
    assert link["while_down"]["local"] > 0
    assert link["while_up"]["remote"] > 0
    assert link["fallbacks"] == result["extra"]["sources"]["local"]["count"]
    assert link["breaker"]["opens"] >= 2  # once per outage at least
    assert link["breaker"]["closes"] >= 1  # back to the remote after the first
    assert link["breaker"]["cooldown_s"] == pytest.approx(0.3)
    proxy = link["proxy"]
    assert proxy["outages_hit"][:2] == [0, 1]
    assert proxy["resets"] == 0
    assert proxy["forwarded"] >= link["while_up"]["remote"]
