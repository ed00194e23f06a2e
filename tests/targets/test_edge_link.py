"""The flaky link's schedule: a pure function of (seed, time), checked without waiting."""

from __future__ import annotations

import pytest

from targets.edge.link import LinkProfile, LinkSchedule, parse_link_profile
from targets.errors import InputError

DEFAULT = LinkSchedule(LinkProfile(), seed=42)


def test_each_period_is_up_three_seconds_then_down_two() -> None:
    states = {t: DEFAULT.state_at(t) for t in (0.0, 2.99, 3.0, 4.99, 5.0, 8.0, 9.99, 10.0)}
    assert [t for t, state in states.items() if not state.up] == [3.0, 4.99, 8.0, 9.99]
    assert [states[t].outage for t in (3.0, 4.99, 8.0)] == [0, 0, 1]
    assert states[3.0].until_s == 5.0  # a blackhole holds until the outage ends
    assert states[0.0].until_s == 3.0
    assert DEFAULT.state_at(-1.0).up  # before the origin the link is up


@pytest.mark.parametrize("seed", range(20))
def test_ten_seconds_after_a_one_second_warmup_hold_two_whole_outages(seed: int) -> None:
    schedule = LinkSchedule(LinkProfile(), seed)
    # the bench cell's window, with up to 1.5 s of start-up slack on the proxy's clock
    for slack_s in (0.0, 0.5, 1.5):
        start_s = 1.0 + slack_s
        outages = schedule.outages_overlapping(start_s, start_s + 10.0)
        whole = [k for k in outages if k * 5 + 3 >= start_s and (k + 1) * 5 <= start_s + 10]
        assert len(whole) == 2, (seed, slack_s, list(outages))


def test_outages_overlapping_counts_partial_outages_and_none_before_the_origin() -> None:
    assert list(DEFAULT.outages_overlapping(0.0, 3.0)) == []
    assert list(DEFAULT.outages_overlapping(0.0, 3.01)) == [0]
    assert list(DEFAULT.outages_overlapping(4.9, 8.01)) == [0, 1]
    assert list(DEFAULT.outages_overlapping(5.0, 8.0)) == []
    never = LinkSchedule(parse_link_profile("down=0s/5s"))
    assert list(never.outages_overlapping(0.0, 100.0)) == []
    assert all(never.state_at(t).up for t in (0.0, 3.5, 4.9, 99.0))


def test_resets_are_a_seeded_ten_percent_of_requests() -> None:
    draws = [DEFAULT.resets(n) for n in range(20_000)]
    assert 1_800 <= sum(draws) <= 2_200  # 10 % of 20,000 (sd ~42)
    assert draws == [LinkSchedule(LinkProfile(), seed=42).resets(n) for n in range(20_000)]
    assert draws != [LinkSchedule(LinkProfile(), seed=43).resets(n) for n in range(20_000)]
    assert not any(LinkSchedule(parse_link_profile("reset=0%")).resets(n) for n in range(1000))
    assert all(LinkSchedule(parse_link_profile("reset=100%")).resets(n) for n in range(1000))


def test_mixed_outages_drop_or_blackhole_by_seed_and_fixed_modes_stay_fixed() -> None:
    modes = [DEFAULT.outage_mode(k) for k in range(200)]
    assert {"drop", "blackhole"} == set(modes)
    assert 60 <= modes.count("drop") <= 140
    assert DEFAULT.state_at(3.5).mode == modes[0]
    assert DEFAULT.state_at(8.5).mode == modes[1]
    blackhole = LinkSchedule(parse_link_profile("outage=blackhole"), seed=42)
    assert {blackhole.outage_mode(k) for k in range(50)} == {"blackhole"}


def test_profile_text_reads_back_and_changes_only_what_it_names() -> None:
    assert parse_link_profile("default") == LinkProfile()
    assert parse_link_profile(LinkProfile().spec) == LinkProfile()
    changed = parse_link_profile("down=1s/4s, reset=0%,delay=5ms,outage=drop")
    assert changed == LinkProfile(period_s=4.0, down_s=1.0, reset_share=0.0, delay_s=0.005,
                                  outage="drop")  # fmt: skip
    assert parse_link_profile(changed.spec) == changed


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("often", "expected 'default' or down=..."),
        ("down=3s", "down: expected DOWN/PERIOD"),
        ("down=6s/5s", "down: down must be within 0..5s"),
        ("reset=10", "reset: expected a percentage"),
        ("reset=150%", "reset: reset must be 0..100%"),
        ("delay=soon", "delay: duration 'soon' is not a duration"),
        ("outage=flood", "outage: outage must be one of mixed, drop, blackhole"),
    ],
)
def test_a_bad_profile_is_one_line_naming_the_option(text: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_link_profile(text)
    message = str(caught.value)
    assert message.startswith(f"--flaky-link {text!r}: ")
    assert says in message
    assert "\n" not in message
