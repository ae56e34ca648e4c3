"""Five-field cron schedules: parsing, the latest slot due, time zones and cron's day rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.repo_config.cron import CronError, Schedule


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_latest_slot_is_at_or_before_now() -> None:
    nightly = Schedule.parse("0 3 * * *")
    assert nightly.latest(utc(2026, 11, 23, 3, 0)) == utc(2026, 11, 23, 3, 0)
    assert nightly.latest(utc(2026, 11, 23, 2, 59)) == utc(2026, 11, 22, 3, 0)
    assert nightly.latest(utc(2026, 11, 23, 15, 30)) == utc(2026, 11, 23, 3, 0)


def test_only_slots_after_the_last_one_count() -> None:
    every_15 = Schedule.parse("*/15 * * * *")
    now = utc(2026, 11, 23, 10, 7)
    assert every_15.latest(now) == utc(2026, 11, 23, 10, 0)
    assert every_15.latest(now, after=utc(2026, 11, 23, 10, 0)) is None
    # Down for an hour: the latest missed slot, once.
    assert every_15.latest(now, after=utc(2026, 11, 23, 9, 0)) == utc(2026, 11, 23, 10, 0)


def test_a_time_zone_moves_the_slot() -> None:
    paris = Schedule.parse("30 9 * * 1-5", "Europe/Paris")
    # Monday 2026-11-23, 09:30 in Paris is 08:30 UTC (winter time).
    assert paris.latest(utc(2026, 11, 23, 9, 0)) == utc(2026, 11, 23, 8, 30)
    # On Sunday the latest weekday slot is Friday's.
    assert paris.latest(utc(2026, 11, 22, 12, 0)) == utc(2026, 11, 20, 8, 30)
    # Summer time: 09:30 in Paris is 07:30 UTC.
    assert paris.latest(utc(2026, 7, 1, 12, 0)) == utc(2026, 7, 1, 7, 30)


def test_a_local_time_the_clocks_skip_does_not_run_early() -> None:
    # 02:30 does not exist in Paris on 2026-03-29; the slot is not placed in the future.
    skipped = Schedule.parse("30 2 * * *", "Europe/Paris")
    now = utc(2026, 3, 29, 0, 45)  # 01:45 local
    slot = skipped.latest(now)
    assert slot is not None
    assert slot <= now


def test_the_hour_repeated_when_summer_time_ends_runs_both_times() -> None:
    # New York, 2026-11-01: 01:00 EDT (05:00 UTC), then 01:00 EST (06:00 UTC), then 02:00 EST.
    hourly = Schedule.parse("0 * * * *", "America/New_York")
    assert hourly.latest(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 5, 0)
    assert hourly.latest(utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 6, 0)
    assert hourly.latest(utc(2026, 11, 1, 7, 30)) == utc(2026, 11, 1, 7, 0)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Cron's rule: the 1st of the month OR any Monday.
    either = Schedule.parse("0 0 1 * mon")
    assert either.latest(utc(2026, 11, 24, 12, 0)) == utc(2026, 11, 23, 0, 0)  # Monday 23rd
    assert either.latest(utc(2026, 11, 2, 12, 0)) == utc(2026, 11, 2, 0, 0)  # Monday 2nd
    assert either.latest(utc(2026, 11, 1, 12, 0)) == utc(2026, 11, 1, 0, 0)  # Sunday the 1st


def test_a_stepped_star_day_does_not_restrict_like_a_list() -> None:
    # `*/2` in the day of month still counts as "any day" for cron's OR rule: every other day
    # of the month AND Mondays, not every other day OR Mondays.
    odd_mondays = Schedule.parse("0 0 */2 * mon")
    # Sunday the 22nd: OR would give Saturday the 21st; odd days that are Mondays give the 9th.
    assert odd_mondays.latest(utc(2026, 11, 22, 12, 0)) == utc(2026, 11, 9, 0, 0)


def test_names_macros_lists_and_sunday_as_seven() -> None:
    assert Schedule.parse("@daily").latest(utc(2026, 11, 23, 5, 0)) == utc(2026, 11, 23, 0, 0)
    assert Schedule.parse("@hourly").latest(utc(2026, 11, 23, 5, 59)) == utc(2026, 11, 23, 5, 0)
    sunday = Schedule.parse("0 12 * * 7")
    assert sunday.latest(utc(2026, 11, 23, 0, 0)) == utc(2026, 11, 22, 12, 0)
    quarterly = Schedule.parse("0 0 1 jan,apr,jul,oct *")
    assert quarterly.latest(utc(2026, 11, 23, 0, 0)) == utc(2026, 10, 1, 0, 0)


def test_a_leap_day_schedule_finds_the_last_leap_day() -> None:
    leap = Schedule.parse("0 0 29 2 *")
    assert leap.latest(utc(2026, 11, 23, 0, 0)) == utc(2024, 2, 29, 0, 0)


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("0 3 * *", "UTC", "expected 5 fields"),
        ("61 * * * *", "UTC", "minute: '61' is outside 0-59"),
        ("0 25 * * *", "UTC", "hour: '25' is outside 0-23"),
        ("*/0 * * * *", "UTC", "step '0' must be a positive number"),
        ("0 0 * * funday", "UTC", "day of week: 'funday' is not a number"),
        ("0 0 10-2 * *", "UTC", "runs backwards"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_invalid_schedules_say_where(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("*", r"\*")):
        Schedule.parse(expression, timezone)
