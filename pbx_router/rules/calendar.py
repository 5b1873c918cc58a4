"""Opening hours with a timezone, public holidays and explicit closures: is it open *now*?

All comparisons happen in the calendar's local wall-clock time (zoneinfo), so a DST change
moves the UTC instant of "08:00" and never the opening hour itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pbx_router.rules.schema import WEEKDAYS, CalendarSpec, parse_hhmm


@dataclass(frozen=True, slots=True)
class CalendarState:
    open: bool
    why: str  # e.g. "open mon 08:00-17:00", "closed: holiday Christmas Day"


class Calendar:
    def __init__(self, name: str, spec: CalendarSpec) -> None:
        self.name = name
        self.tz = ZoneInfo(spec.timezone)
        self.hours: dict[int, tuple[tuple[int, int], ...]] = {}
        for day, ranges in spec.hours.items():
            spans = []
            for text in ranges:
                start, end = text.split("-", 1)
                spans.append((parse_hhmm(start), parse_hhmm(end)))
            self.hours[WEEKDAYS.index(day)] = tuple(sorted(spans))
        self._closures = [
            (
                c.date,
                c.until or c.date,
                None if c.weekday is None else WEEKDAYS.index(c.weekday),
                parse_hhmm(c.start),
                parse_hhmm(c.end),
                c.reason or "closure",
            )
            for c in spec.closures
        ]
        self._holidays: Any = None
        if spec.holidays is not None:
            import holidays

            # Lazily expanded per year by the package; observed days ("(observed)") included.
            self._holidays = holidays.country_holidays(
                spec.holidays.country, subdiv=spec.holidays.subdivision
            )

    def local(self, now: dt.datetime) -> dt.datetime:
        return now.astimezone(self.tz)

    def state(self, now: dt.datetime) -> CalendarState:
        local = self.local(now)
        day = local.date()
        minute = local.hour * 60 + local.minute
        if self._holidays is not None:
            name = self._holidays.get(day)
            if name:
                return CalendarState(False, f"closed: holiday {name}")
        for first, last, weekday, start, end, reason in self._closures:
            if weekday is not None and local.weekday() != weekday:
                continue
            if first is not None and last is not None and not (first <= day <= last):
                continue
            if start <= minute < end:
                return CalendarState(False, f"closed: {reason}")
        for start, end in self.hours.get(local.weekday(), ()):
            if start <= minute < end:
                return CalendarState(
                    True,
                    f"open {WEEKDAYS[local.weekday()]} {_hhmm(start)}-{_hhmm(end)}",
                )
        return CalendarState(
            False,
            f"closed: outside hours ({WEEKDAYS[local.weekday()]} {local:%H:%M} {local.tzname()})",
        )


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
