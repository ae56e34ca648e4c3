"""Five-field cron schedules in a time zone: parse once, then ask for the latest slot due."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
# (name, lowest, highest, names) per field, in cron's order.
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
LOOKBACK_DAYS = 366 * 4 + 1  # Feb 29 recurs within four years


class CronError(ValueError):
    """The expression is not a valid five-field cron schedule; the message says where."""


def _number(text: str, low: int, names: list[str] | None, field: str) -> int:
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + (1 if field == "month" else 0)
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number")
    return int(text)


def _parse_field(text: str, field: str, low: int, high: int, names: list[str] | None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _number(first, low, names, field)
            end = _number(last, low, names, field)
        else:
            start = _number(base, low, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise CronError(f"{field}: {part!r} is outside {low}-{high}")
        if start > end:
            raise CronError(f"{field}: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: the allowed values of each field, and the zone its clock runs in."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Schedule:
        text = MACROS.get(expression.strip().lower(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
            )
        sets = [
            _parse_field(part, name, low, high, names)
            for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
        ]
        try:
            zone = ZoneInfo(timezone)
        except (KeyError, ValueError, OSError) as exc:  # not found, malformed, a directory...
            raise CronError(f"unknown time zone {timezone[:64]!r}") from exc
        return cls(
            expression=expression,
            minutes=frozenset(sets[0]),
            hours=frozenset(sets[1]),
            days=frozenset(sets[2]),
            months=frozenset(sets[3]),
            weekdays=frozenset(d % 7 for d in sets[4]),
            # As vixie cron: a field starting with `*` (`*/2` too) does not restrict the day.
            day_restricted=not parts[2].startswith("*"),
            weekday_restricted=not parts[4].startswith("*"),
            zone=zone,
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        # Cron's rule: when both day fields are restricted, either may match.
        if self.day_restricted and self.weekday_restricted:
            return in_month or in_week
        return in_month and in_week

    def _slots(self, day: date, now: datetime) -> Iterator[datetime]:
        """The day's slots at or before `now`, latest first, as instants (UTC). On the day the
        clocks go back, a local time passed twice is a slot both times."""
        utc = ZoneInfo("UTC")
        first = datetime.combine(day, time(0, 0), self.zone)
        last = datetime.combine(day, time(23, 59), self.zone)
        if first.utcoffset() != last.utcoffset():  # a transition day: order every instant
            instants = {
                datetime.combine(day, time(h, m), self.zone).replace(fold=fold).astimezone(utc)
                for h in self.hours
                for m in self.minutes
                for fold in (0, 1)
            }
            yield from sorted((i for i in instants if i <= now), reverse=True)
            return
        limit = now.astimezone(self.zone)
        for hour in sorted(self.hours, reverse=True):
            if day == limit.date() and hour > limit.hour:
                continue
            for minute in sorted(self.minutes, reverse=True):
                slot = datetime.combine(day, time(hour, minute), self.zone).astimezone(utc)
                if slot <= now:
                    yield slot

    def latest(self, now: datetime, *, after: datetime | None = None) -> datetime | None:
        """The latest slot at or before `now` (aware, UTC), if one is later than `after`."""
        local_now = now.astimezone(self.zone)
        floor = after.astimezone(self.zone) if after is not None else None
        day = local_now.date()
        for _ in range(LOOKBACK_DAYS):
            if floor is not None and day < floor.date():
                return None
            if self._day_matches(day):
                for slot in self._slots(day, now):
                    if after is not None and slot <= after:
                        return None
                    return slot
            day -= timedelta(days=1)
        return None
