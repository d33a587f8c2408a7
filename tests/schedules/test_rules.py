"""When schedules tick: cron rules in IANA timezones across DST, intervals, and what catch_up
runs after downtime. Pure functions of a clock the test controls (milliseconds)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexflow.ticks import (
    CATCH_UP_CAP,
    Plan,
    Rule,
    RuleError,
    normalize_cron,
    parse_start_at,
    plan,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def utc(ms_: int) -> str:
    return datetime.fromtimestamp(ms_ / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def local(ms_: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms_ / 1000, tz).strftime("%Y-%m-%d %H:%M %Z")


def ticks(rule: Rule, start: datetime, n: int) -> list[int]:
    out = []
    t = ms(start)
    for _ in range(n):
        t = rule.next_after(t)
        out.append(t)
    return out


# -- cron and DST ------------------------------------------------------------------------------


def test_daily_6am_berlin_on_spring_forward_day_keeps_local_time() -> None:
    # 2026-03-29: clocks go 02:00 CET -> 03:00 CEST. 06:00 local is 05:00 UTC before, 04:00 after.
    rule = Rule.make(cron="0 6 * * *", timezone="Europe/Berlin")
    got = ticks(rule, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 3)
    assert [local(t, BERLIN) for t in got] == [
        "2026-03-28 06:00 CET",
        "2026-03-29 06:00 CEST",
        "2026-03-30 06:00 CEST",
    ]
    assert [utc(t) for t in got] == ["2026-03-28 05:00", "2026-03-29 04:00", "2026-03-30 04:00"]
    assert got[1] - got[0] == 23 * 3600_000  # the short day


def test_daily_6am_new_york_on_spring_forward_day() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT.
    rule = Rule.make(cron="0 6 * * *", timezone="America/New_York")
    got = ticks(rule, datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2)
    assert [utc(t) for t in got] == ["2026-03-08 10:00", "2026-03-09 10:00"]
    assert [local(t, NEW_YORK) for t in got] == ["2026-03-08 06:00 EDT", "2026-03-09 06:00 EDT"]


@pytest.mark.parametrize(
    ("tz", "day", "after_gap"),
    [
        ("Europe/Berlin", datetime(2026, 3, 28, 12), "2026-03-29 03:00 CEST"),
        ("America/New_York", datetime(2026, 3, 7, 12), "2026-03-08 03:00 EDT"),
    ],
)
def test_0230_on_the_skipped_hour_runs_once_right_after_the_gap(
    tz: str, day: datetime, after_gap: str
) -> None:
    zone = ZoneInfo(tz)
    rule = Rule.make(cron="30 2 * * *", timezone=tz)
    got = ticks(rule, day.replace(tzinfo=zone), 3)
    # 02:30 does not exist that night: the job runs once, at the first minute after the gap
    # (as Debian cron does), then at 02:30 again.
    assert local(got[0], zone) == after_gap
    assert local(got[1], zone).endswith("02:30 " + ("CEST" if "Berlin" in tz else "EDT"))
    assert len(set(got)) == 3


@pytest.mark.parametrize(
    ("tz", "day", "offset_utc"),
    [
        ("Europe/Berlin", datetime(2026, 10, 24, 12), "2026-10-25 00:30"),
        ("America/New_York", datetime(2026, 10, 31, 12), "2026-11-01 05:30"),
    ],
)
def test_fixed_time_in_the_repeated_hour_runs_once(tz: str, day: datetime, offset_utc: str) -> None:
    # Fall back: 02:30 Berlin (01:30 New York) happens twice; a fixed-time job runs once,
    # at the first pass.
    hhmm = "30 2 * * *" if "Berlin" in tz else "30 1 * * *"
    rule = Rule.make(cron=hhmm, timezone=tz)
    got = ticks(rule, day.replace(tzinfo=ZoneInfo(tz)), 2)
    assert utc(got[0]) == offset_utc
    assert got[1] - got[0] == 25 * 3600_000  # the long day, not a second run an hour later


def test_hourly_follows_real_time_across_dst() -> None:
    rule = Rule.make(cron="0 * * * *", timezone="Europe/Berlin")
    spring = ticks(rule, datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN), 3)
    assert [local(t, BERLIN) for t in spring] == [
        "2026-03-29 01:00 CET",
        "2026-03-29 03:00 CEST",  # 02:00 does not exist
        "2026-03-29 04:00 CEST",
    ]
    assert spring[1] - spring[0] == 3600_000
    autumn = ticks(rule, datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN), 3)
    assert [t2 - t1 for t1, t2 in itertools.pairwise(autumn)] == [3600_000] * 2


def test_steps_ranges_lists_and_names() -> None:
    rule = Rule.make(cron="*/15 9-10 * * MON-FRI")
    got = ticks(rule, datetime(2026, 11, 27, 10, 40, tzinfo=UTC), 4)  # a Friday
    assert [utc(t) for t in got] == [
        "2026-11-27 10:45",
        "2026-11-30 09:00",  # Monday: the weekend is skipped
        "2026-11-30 09:15",
        "2026-11-30 09:30",
    ]
    listed = Rule.make(cron="5,35 8 1,15 JAN,JUL *")
    got = ticks(listed, datetime(2026, 1, 1, tzinfo=UTC), 5)
    assert [utc(t) for t in got] == [
        "2026-01-01 08:05",
        "2026-01-01 08:35",
        "2026-01-15 08:05",
        "2026-01-15 08:35",
        "2026-07-01 08:05",
    ]
    stepped = Rule.make(cron="0 0-23/6 * * *")
    assert [utc(t) for t in ticks(stepped, datetime(2026, 1, 1, 1, tzinfo=UTC), 3)] == [
        "2026-01-01 06:00",
        "2026-01-01 12:00",
        "2026-01-01 18:00",
    ]


def test_aliases() -> None:
    assert normalize_cron("@daily") == "0 0 * * *"
    assert normalize_cron("@hourly") == "0 * * * *"
    rule = Rule.make(cron="@weekly")
    assert utc(rule.next_after(ms(datetime(2026, 11, 30, tzinfo=UTC)))) == "2026-12-06 00:00"


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * * *", "five"),
        ("0 0 31 2 *", "day-of-month"),
        ("@reboot", "alias"),
        ("0 0 * * * *", "five"),
    ],
)
def test_bad_cron_is_refused(expr: str, words: str) -> None:
    with pytest.raises(RuleError, match=words):
        Rule.make(cron=expr)


def test_bad_timezone_interval_and_start() -> None:
    with pytest.raises(RuleError, match="unknown timezone"):
        Rule.make(cron="0 6 * * *", timezone="Europe/Berlim")
    with pytest.raises(RuleError, match="at least 1s"):
        Rule.make(every=0.5)
    with pytest.raises(RuleError, match="exactly one"):
        Rule.make(cron="0 6 * * *", every=60)
    with pytest.raises(RuleError, match="offset"):
        parse_start_at("2026-12-01T00:00:00")
    assert parse_start_at("2026-12-01T00:00:00Z") == datetime(2026, 12, 1, tzinfo=UTC).timestamp()


# -- intervals ---------------------------------------------------------------------------------


def test_every_ticks_on_multiples_of_the_interval_or_from_start_at() -> None:
    rule = Rule.make(every=300)
    t = ms(datetime(2026, 1, 1, 12, 1, 7, tzinfo=UTC))
    assert utc(rule.next_after(t)) == "2026-01-01 12:05"
    assert rule.next_after(ms(datetime(2026, 1, 1, 12, 5, tzinfo=UTC))) == ms(
        datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    )  # strictly after
    start = datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC).timestamp()
    started = Rule.make(every=60, start_at=start)
    before = ms(datetime(2026, 11, 1, tzinfo=UTC))
    assert started.next_after(before) == round(start * 1000)  # nothing before start_at
    assert started.next_after(round(start * 1000)) == round(start * 1000) + 60_000
    assert started.ticks_upto(before, round(start * 1000) + 60_000, 10) == [
        round(start * 1000),
        round(start * 1000) + 60_000,
    ]


def test_cron_with_start_at_never_ticks_before_it() -> None:
    start = datetime(2026, 12, 1, 6, 0, tzinfo=UTC).timestamp()
    rule = Rule.make(cron="0 6 * * *", start_at=start)
    assert rule.next_after(ms(datetime(2026, 11, 1, tzinfo=UTC))) == round(start * 1000)
    assert rule.ticks_upto(0, round(start * 1000) - 1, 5) == []


def test_ticks_upto_returns_the_newest_oldest_first() -> None:
    rule = Rule.make(every=1)
    assert rule.ticks_upto(10_000, 15_500, 3) == [13_000, 14_000, 15_000]
    assert rule.ticks_upto(10_000, 15_000, 100) == [11_000, 12_000, 13_000, 14_000, 15_000]
    assert rule.ticks_upto(15_000, 15_999, 100) == []
    cron = Rule.make(cron="0 * * * *")
    base = ms(datetime(2026, 1, 1, tzinfo=UTC))
    assert cron.ticks_upto(base, base + 3 * 3600_000, 2) == [
        base + 2 * 3600_000,
        base + 3 * 3600_000,
    ]


# -- catch_up after downtime (a scheduler that did not run for 5 ticks) ------------------------


def test_catch_up_after_five_missed_ticks() -> None:
    rule = Rule.make(every=10)
    last = 1_000_000_000_000  # the last tick handled before every scheduler stopped
    alive = last + 200  # the last sign of life of a scheduler, just after it
    now = last + 5 * 10_000 + 2_500  # five ticks passed while nobody ran; 2.5 s into the 6th
    assert plan(rule, last, now, "one", alive).fire == (last + 50_000,)
    assert plan(rule, last, now, "all", alive).fire == tuple(last + k * 10_000 for k in range(1, 6))
    skipped = plan(rule, last, now, "none", alive)
    assert skipped.fire == () and skipped.skip == last + 50_000
    # Ticks that came while a scheduler was alive run whatever catch_up says: that scheduler
    # is only late (a busy machine), nobody was down.
    stalled = tuple(last + k * 10_000 for k in range(1, 6))
    for mode in ("none", "one", "all"):
        assert plan(rule, last, now, mode, now - 900).fire == stalled  # type: ignore[arg-type]
    # Alive until the 2nd missed tick: those two run; for the rest, catch_up decides.
    partly = last + 20_000 - 3_000
    assert plan(rule, last, now, "one", partly).fire == (
        last + 10_000,
        last + 20_000,
        last + 50_000,
    )
    assert plan(rule, last, now, "none", partly) == Plan(
        fire=(last + 10_000, last + 20_000), skip=last + 50_000, missed=3
    )
    # No scheduler ever ran: every due tick counts as missed.
    assert plan(rule, last, now, "none", None).skip == last + 50_000
    assert plan(rule, last, now, "one", None).fire == (last + 50_000,)
    # Nothing due: nothing to do.
    assert plan(rule, last, last + 9_999, "one", alive) == plan(rule, last, last + 9_999, "all")
    assert plan(rule, last, last + 9_999, "one").fire == ()


def test_catch_up_all_is_capped_to_the_newest_ticks() -> None:
    rule = Rule.make(every=1)
    fired = plan(rule, 0, 10_000_000, "all").fire
    assert len(fired) == CATCH_UP_CAP
    assert fired[-1] == 10_000_000 and fired == tuple(sorted(fired))


def test_none_skips_a_daily_tick_that_came_while_nobody_ran() -> None:
    rule = Rule.make(cron="0 6 * * *")
    six = ms(datetime(2026, 1, 2, 6, tzinfo=UTC))
    yesterday = six - 86_400_000
    assert plan(rule, yesterday, six + 59_000, "none", six - 1_000).fire == (six,)
    assert plan(rule, yesterday, six + 1_000, "none", six - 3_600_000).skip == six


# -- properties: next_after and ticks_upto agree, ticks only move forward ----------------------

EXPRS = ["0 6 * * *", "30 2 * * *", "*/15 9-17 * * MON-FRI", "0 * * * *", "5,35 1-3 * * *"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
YEAR_2026 = (ms(datetime(2026, 1, 1, tzinfo=UTC)), ms(datetime(2027, 1, 1, tzinfo=UTC)))


@settings(max_examples=150, deadline=None)
@given(
    expr=st.sampled_from(EXPRS),
    tz=st.sampled_from(ZONES),
    start=st.integers(*YEAR_2026),
    span=st.integers(0, 3 * 86_400_000),
)
def test_cron_ticks_upto_lists_exactly_what_next_after_walks(
    expr: str, tz: str, start: int, span: int
) -> None:
    rule = Rule.make(cron=expr, timezone=tz)
    walked = []
    t = rule.next_after(start)
    while t <= start + span:
        walked.append(t)
        assert rule.next_after(t) > t
        t = rule.next_after(t)
    assert rule.ticks_upto(start, start + span, 10_000) == walked
    assert all(tick % 1000 == 0 for tick in walked)


@settings(max_examples=200, deadline=None)
@given(
    every=st.integers(1, 90_000),
    start_at=st.one_of(st.none(), st.integers(*YEAR_2026)),
    t=st.integers(*YEAR_2026),
    span=st.integers(0, 600_000),
)
def test_every_ticks_upto_lists_exactly_what_next_after_walks(
    every: int, start_at: int | None, t: int, span: int
) -> None:
    rule = Rule.make(every=every, start_at=None if start_at is None else start_at / 1000)
    walked = []
    tick = rule.next_after(t)
    while tick <= t + span:
        walked.append(tick)
        tick = rule.next_after(tick)
    assert rule.ticks_upto(t, t + span, 10_000) == walked
    anchor = start_at or 0
    assert all((w - anchor) % (every * 1000) == 0 and w >= anchor for w in walked)
