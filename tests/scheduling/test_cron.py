"""Cron in a time zone: validation, and firings across DST worked out by hand and by an oracle.

Pure arithmetic: nothing here waits on a clock.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from orchestrator.errors import ConfigError
from orchestrator.scheduling.cron import CronSchedule

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(text: str) -> datetime:
    """'2026-03-29 01:00' -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(schedule: CronSchedule, start: str, end: str) -> list[str]:
    """Every firing in (start, end], as 'MM-DD HH:MM' UTC strings."""
    out: list[str] = []
    cursor, limit = utc(start), utc(end)
    while (cursor := schedule.next_fire(cursor)) <= limit:
        out.append(f"{cursor:%m-%d %H:%M}")
    return out


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("expr", "tz", "needle"),
    [
        ("30 2 * * *", "Europe/Nowhere", "timezone 'Europe/Nowhere'"),
        ("30 2 * * *", "", "timezone ''"),
        ("30 2 * *", BERLIN, "expected 5 fields"),
        ("0 30 2 * * *", BERLIN, "expected 5 fields"),
        ("61 2 * * *", BERLIN, "minute field '61'"),
        ("0 25 * * *", BERLIN, "hour field '25'"),
        ("0 0 * * 8", BERLIN, "day-of-week field '8'"),
        ("0 0 * foo *", BERLIN, "month field 'foo'"),
        ("0 0 30 2 *", BERLIN, "never matches"),
        ("@reboot", BERLIN, "unknown macro"),
        ("", BERLIN, "expected 5 fields"),
    ],
)
def test_invalid_schedule_names_the_field(expr: str, tz: str, needle: str) -> None:
    with pytest.raises(ConfigError, match="schedule") as info:
        CronSchedule(expr, tz)
    assert needle in str(info.value)


def test_macros_and_plain_expressions_are_accepted() -> None:
    daily = CronSchedule("@daily", BERLIN)
    assert daily.next_fire(utc("2026-06-01 12:00")) == utc("2026-06-01 22:00")
    assert CronSchedule("0 0 29 2 *", "UTC").next_fire(utc("2026-01-01 00:00")) == utc(
        "2028-02-29 00:00"
    )


def test_naive_datetimes_are_refused() -> None:
    schedule = CronSchedule("30 2 * * *", BERLIN)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_fire(datetime(2026, 3, 29, 1, 0))


def test_schedule_is_frozen_and_hashable() -> None:
    a, b = CronSchedule("30 2 * * *", BERLIN), CronSchedule("30 2 * * *", BERLIN)
    assert a == b
    assert hash(a) == hash(b)


# --------------------------------------------------------------------------- DST, by hand

# Each expected list was worked out by hand from the zone rules, not by the code:
# Berlin 2026-03-29 01:00Z: 02:00 CET -> 03:00 CEST;  2026-10-25 01:00Z: 03:00 CEST -> 02:00 CET.
# New York 2026-03-08 07:00Z: 02:00 EST -> 03:00 EDT; 2026-11-01 06:00Z: 02:00 EDT -> 01:00 EST.
DST_CASES = [
    # Skipped 02:30 fires once, at 03:00 CEST (01:00Z).
    (BERLIN, "30 2 * * *", "2026-03-27 12:00", "2026-03-31 12:00",
     ["03-28 01:30", "03-29 01:00", "03-30 00:30", "03-31 00:30"]),
    # Repeated 02:30 fires once, at its first occurrence (CEST, 00:30Z), not at 01:30Z.
    (BERLIN, "30 2 * * *", "2026-10-23 12:00", "2026-10-27 12:00",
     ["10-24 00:30", "10-25 00:30", "10-26 01:30", "10-27 01:30"]),
    # Hourly across the gap: 02:00 local does not exist and collapses onto 03:00 CEST.
    (BERLIN, "0 * * * *", "2026-03-28 21:30", "2026-03-29 03:00",
     ["03-28 22:00", "03-28 23:00", "03-29 00:00", "03-29 01:00", "03-29 02:00", "03-29 03:00"]),
    # Hourly across the fold: the second 02:00 (CET, 01:00Z) does not fire.
    (BERLIN, "0 * * * *", "2026-10-24 21:30", "2026-10-25 03:00",
     ["10-24 22:00", "10-24 23:00", "10-25 00:00", "10-25 02:00", "10-25 03:00"]),
    # Four quarter-hours in the gap become one firing at 01:00Z, which is also 03:00 CEST.
    (BERLIN, "*/15 1-3 * * *", "2026-03-28 12:00", "2026-03-29 12:00",
     ["03-29 00:00", "03-29 00:15", "03-29 00:30", "03-29 00:45",
      "03-29 01:00", "03-29 01:15", "03-29 01:30", "03-29 01:45"]),
    # The repeated 02:xx CET quarter-hours (01:00Z-01:45Z) do not fire.
    (BERLIN, "*/15 1-3 * * *", "2026-10-24 12:00", "2026-10-25 12:00",
     ["10-24 23:00", "10-24 23:15", "10-24 23:30", "10-24 23:45",
      "10-25 00:00", "10-25 00:15", "10-25 00:30", "10-25 00:45",
      "10-25 02:00", "10-25 02:15", "10-25 02:30", "10-25 02:45"]),
    (NEW_YORK, "30 2 * * *", "2026-03-06 12:00", "2026-03-10 12:00",
     ["03-07 07:30", "03-08 07:00", "03-09 06:30", "03-10 06:30"]),
    # 02:30 is not repeated in New York (01:xx is): one firing a day, nothing special.
    (NEW_YORK, "30 2 * * *", "2026-10-30 12:00", "2026-11-03 12:00",
     ["10-31 06:30", "11-01 07:30", "11-02 07:30", "11-03 07:30"]),
    # 01:30 is repeated in New York: first occurrence (EDT, 05:30Z) only.
    (NEW_YORK, "30 1 * * *", "2026-10-30 12:00", "2026-11-03 12:00",
     ["10-31 05:30", "11-01 05:30", "11-02 06:30", "11-03 06:30"]),
    (NEW_YORK, "0 * * * *", "2026-03-08 04:30", "2026-03-08 09:00",
     ["03-08 05:00", "03-08 06:00", "03-08 07:00", "03-08 08:00", "03-08 09:00"]),
    (NEW_YORK, "0 * * * *", "2026-11-01 03:30", "2026-11-01 08:00",
     ["11-01 04:00", "11-01 05:00", "11-01 07:00", "11-01 08:00"]),
    (NEW_YORK, "*/15 1-3 * * *", "2026-03-08 00:00", "2026-03-08 12:00",
     ["03-08 06:00", "03-08 06:15", "03-08 06:30", "03-08 06:45",
      "03-08 07:00", "03-08 07:15", "03-08 07:30", "03-08 07:45"]),
    (NEW_YORK, "*/15 1-3 * * *", "2026-11-01 00:00", "2026-11-01 12:00",
     ["11-01 05:00", "11-01 05:15", "11-01 05:30", "11-01 05:45",
      "11-01 07:00", "11-01 07:15", "11-01 07:30", "11-01 07:45",
      "11-01 08:00", "11-01 08:15", "11-01 08:30", "11-01 08:45"]),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "expr", "start", "end", "expected"), DST_CASES)
def test_dst_firings_worked_out_by_hand(
    tz: str, expr: str, start: str, end: str, expected: list[str]
) -> None:
    assert fires(CronSchedule(expr, tz), start, end) == expected


def test_next_fire_from_inside_the_repeated_hour() -> None:
    schedule = CronSchedule("*/15 1-3 * * *", BERLIN)
    # 01:10Z is 02:10 CET, the second pass: its wall times already fired in the first pass.
    assert schedule.next_fire(utc("2026-10-25 01:10")) == utc("2026-10-25 02:00")
    # 00:50Z is 02:50 CEST, the first pass.
    assert schedule.next_fire(utc("2026-10-25 00:50")) == utc("2026-10-25 02:00")
    assert schedule.next_fire(utc("2026-10-25 00:40")) == utc("2026-10-25 00:45")


def test_next_fire_is_strictly_after_and_previous_fire_inclusive() -> None:
    schedule = CronSchedule("*/15 1-3 * * *", BERLIN)
    gap_fire = utc("2026-03-29 01:00")  # the collapsed 02:00-02:45 and 03:00 CEST
    assert schedule.next_fire(gap_fire) == utc("2026-03-29 01:15")
    assert schedule.next_fire(gap_fire - timedelta(microseconds=1)) == gap_fire
    assert schedule.previous_fire(gap_fire) == gap_fire
    assert schedule.previous_fire(gap_fire - timedelta(seconds=1)) == utc("2026-03-29 00:45")
    # In the second pass of the fold the last firing is the first pass's last one.
    assert schedule.previous_fire(utc("2026-10-25 01:59")) == utc("2026-10-25 00:45")


def test_non_utc_aware_input_is_accepted() -> None:
    schedule = CronSchedule("30 2 * * *", BERLIN)
    tokyo = utc("2026-03-28 12:00").astimezone(ZoneInfo("Asia/Tokyo"))
    result = schedule.next_fire(tokyo)
    assert result == utc("2026-03-29 01:00")
    assert result.tzinfo is UTC


# --------------------------------------------------------------------------- DST, by oracle


def oracle_fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The DST rule stated per UTC minute, independently of the implementation.

    A minute fires if its local wall time matches and is the first occurrence of that wall
    time, or if it is the instant a gap ends and some wall time inside the gap matches.
    """
    zone = ZoneInfo(tz)
    lo = start.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    hi = end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    matching: set[datetime] = set()
    it = croniter(expr, lo)
    while (wall := it.get_next(datetime)) < hi:
        matching.add(wall)
    out: list[datetime] = []
    minute = start + timedelta(minutes=1)
    while minute <= end:
        local = minute.astimezone(zone)
        regular = local.replace(tzinfo=None) in matching and local.fold == 0
        before = (minute - timedelta(seconds=1)).astimezone(zone)
        jump = (local.utcoffset() or timedelta()) - (before.utcoffset() or timedelta())
        gap_walls = []
        if jump > timedelta(0):  # wall clock jumped forward: [old wall, new wall) is skipped
            wall = local.replace(tzinfo=None) - jump
            while wall < local.replace(tzinfo=None):
                gap_walls.append(wall)
                wall += timedelta(minutes=1)
        if regular or any(w in matching for w in gap_walls):
            out.append(minute)
        minute += timedelta(minutes=1)
    return out


@pytest.mark.parametrize(
    ("tz", "around"),
    [
        (BERLIN, "2026-03-29 01:00"),
        (BERLIN, "2026-10-25 01:00"),
        (NEW_YORK, "2026-03-08 07:00"),
        (NEW_YORK, "2026-11-01 06:00"),
        # A 30-minute shift: 02:00 -> 01:30 on 2026-04-05, 02:00 -> 02:30 on 2026-10-04.
        ("Australia/Lord_Howe", "2026-04-04 15:00"),
        ("Australia/Lord_Howe", "2026-10-03 15:30"),
    ],
)
@pytest.mark.parametrize(
    "expr", ["30 2 * * *", "0 * * * *", "*/15 1-3 * * *", "*/10 * * * *", "45 1 * * *"]
)
def test_firings_match_the_stated_rule_minute_by_minute(tz: str, around: str, expr: str) -> None:
    start = utc(around) - timedelta(hours=8)
    end = utc(around) + timedelta(hours=8)
    schedule = CronSchedule(expr, tz)
    got: list[datetime] = []
    cursor = start
    while (cursor := schedule.next_fire(cursor)) <= end:
        got.append(cursor)
    assert got == oracle_fires(expr, tz, start, end)


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_a_whole_year_fires_once_per_local_day(tz: str) -> None:
    schedule = CronSchedule("30 2 * * *", tz)
    year = schedule.upcoming(utc("2025-12-31 12:00"), 365)
    zone = ZoneInfo(tz)
    local = [t.astimezone(zone) for t in year]
    assert len({t.date() for t in local}) == 365
    assert all(b > a for a, b in itertools.pairwise(year))
    odd = [t for t in local if (t.hour, t.minute) != (2, 30)]
    spring = {BERLIN: "2026-03-29", NEW_YORK: "2026-03-08"}[tz]
    assert [(t.date().isoformat(), t.hour, t.minute) for t in odd] == [(spring, 3, 0)]


def test_previous_and_next_agree_over_both_transitions() -> None:
    for tz, start in ((BERLIN, "2026-03-28 12:00"), (BERLIN, "2026-10-24 12:00")):
        schedule = CronSchedule("*/15 1-3 * * *", tz)
        seq = schedule.upcoming(utc(start), 40)
        for prev, cur in itertools.pairwise(seq):
            assert schedule.previous_fire(cur) == cur
            assert schedule.previous_fire(cur - timedelta(seconds=1)) == prev
            assert schedule.next_fire(prev) == cur
