"""Slot generation: weekly templates + exceptions - busy time -> bookable slots. Pure.

Time rules (why the arithmetic looks the way it does):
- Templates are clinic wall-clock times, so "08:00-12:00" means 08:00 local on both sides of a
  DST change. A window's bounds are turned into instants once, then slots are stepped in
  *elapsed* time (UTC arithmetic): an appointment lasts its real duration even across a change.
- A wall-clock time that does not exist (the spring-forward gap) is moved forward to the first
  time that does; an ambiguous one (the repeated fall-back hour) is read as its first occurrence
  for a window's start and its second for a window's end, so a window never shrinks.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from pbx_router.scheduling.model import (
    AppointmentType,
    AvailabilityException,
    Interval,
    PartOfDay,
    Slot,
    SlotQuery,
    WeeklyTemplate,
)

UTC = dt.UTC
_GAP_SEARCH_LIMIT = 24 * 60  # minutes; real gaps are 30-60 minutes


def wall_time_exists(naive: dt.datetime, tz: ZoneInfo) -> bool:
    back = naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return back == naive


def local_instant(day: dt.date, time: dt.time, tz: ZoneInfo, *, window_end: bool = False) -> dt.datetime:
    """The instant (UTC) of wall-clock ``time`` on ``day`` in ``tz``, DST-safe (see module doc)."""
    naive = dt.datetime.combine(day, time)
    step = 0
    while not wall_time_exists(naive, tz):
        naive += dt.timedelta(minutes=1)
        step += 1
        if step > _GAP_SEARCH_LIMIT:  # pragma: no cover - no real zone has such a gap
            raise ValueError(f"no valid local time near {day} {time} in {tz.key}")
    return naive.replace(tzinfo=tz, fold=1 if window_end else 0).astimezone(UTC)


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight, next local midnight) as UTC instants (23 or 25 hours on DST days)."""
    return local_instant(day, dt.time(0), tz), local_instant(day + dt.timedelta(days=1), dt.time(0), tz)


def merge(
    intervals: Iterable[tuple[dt.datetime, dt.datetime, str | None]],
) -> list[tuple[dt.datetime, dt.datetime, str | None]]:
    """Union of overlapping or touching windows (overlapping templates give one window; the
    location of the earliest window wins)."""
    merged: list[tuple[dt.datetime, dt.datetime, str | None]] = []
    for start, end, location in sorted(intervals, key=lambda w: (w[0], w[1])):
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, location))
    return merged


class BusyIndex:
    """Sorted busy intervals of one provider, for fast "does [s, e) overlap anything" checks."""

    __slots__ = ("_ends", "_max_len", "_starts")

    def __init__(self, intervals: Iterable[Interval]) -> None:
        ordered = sorted(intervals, key=lambda i: i.start)
        self._starts = [i.start for i in ordered]
        self._ends = [i.end for i in ordered]
        # The longest interval bounds how far back an overlapping one can start.
        self._max_len = max((i.end.astimezone(UTC) - i.start.astimezone(UTC) for i in ordered), default=dt.timedelta(0))

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        hi = bisect.bisect_left(self._starts, end)  # intervals starting before ``end``
        lo = bisect.bisect_left(self._starts, start - self._max_len)
        return any(self._ends[i] > start for i in range(lo, hi))


def generate_slots(
    query: SlotQuery,
    appointment_type: AppointmentType,
    templates: Sequence[WeeklyTemplate],
    exceptions: Sequence[AvailabilityException],
    busy: Mapping[str, Sequence[Interval]],
    tz: ZoneInfo,
    now: dt.datetime,
    *,
    limit: int = 3,
    min_notice: dt.timedelta = dt.timedelta(0),
) -> list[Slot]:
    """The first ``limit`` free slots matching ``query``, earliest first (ties: provider order
    of the appointment type). ``busy``: live appointments per provider id."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if limit <= 0:
        return []
    providers = list(appointment_type.provider_ids)
    if query.provider_id is not None:
        providers = [p for p in providers if p == query.provider_id]
    if not providers:
        return []
    earliest = now + min_notice
    if query.earliest is not None:
        if query.earliest.tzinfo is None:
            raise ValueError("query.earliest must be timezone-aware")
        earliest = max(earliest, query.earliest)
    duration = appointment_type.duration
    step = appointment_type.slot_step

    by_provider: dict[str, list[WeeklyTemplate]] = {p: [] for p in providers}
    for template in templates:
        if template.provider_id in by_provider:
            by_provider[template.provider_id].append(template)
    blocked: dict[str, list[Interval]] = {p: list(busy.get(p, ())) for p in providers}
    extra: dict[str, list[AvailabilityException]] = {p: [] for p in providers}
    for exc in exceptions:
        targets = providers if exc.provider_id is None else [exc.provider_id]
        for provider in targets:
            if provider not in blocked:
                continue
            if exc.kind == "unavailable":
                blocked[provider].append(Interval(exc.start, exc.end))
            elif exc.kind == "available":
                extra[provider].append(exc)
    indexes = {p: BusyIndex(blocked[p]) for p in providers}
    order = {p: i for i, p in enumerate(providers)}

    first_day = earliest.astimezone(tz).date()
    last_day = (earliest + query.horizon).astimezone(tz).date()
    found: list[Slot] = []
    day = first_day
    while day <= last_day and len(found) < limit:
        if (not query.days or day in query.days) and (not query.weekdays or day.weekday() in query.weekdays):
            found.extend(
                _slots_on_day(
                    day, providers, by_provider, extra, indexes, tz, earliest, duration, step,
                    appointment_type.id, query.part_of_day,
                )
            )
        day += dt.timedelta(days=1)
    found.sort(key=lambda s: (s.start, order[s.provider_id]))
    return found[:limit]


def _slots_on_day(
    day: dt.date,
    providers: Sequence[str],
    templates: Mapping[str, Sequence[WeeklyTemplate]],
    extra: Mapping[str, Sequence[AvailabilityException]],
    busy: Mapping[str, BusyIndex],
    tz: ZoneInfo,
    earliest: dt.datetime,
    duration: dt.timedelta,
    step: dt.timedelta,
    type_id: str,
    part_of_day: PartOfDay | None,
) -> list[Slot]:
    day_start, day_end = day_bounds(day, tz)
    slots: list[Slot] = []
    for provider in providers:
        windows = [
            (local_instant(day, t.start, tz), local_instant(day, t.end, tz, window_end=True), t.location_id)
            for t in templates[provider]
            if t.applies_on(day)
        ]
        windows.extend(
            (max(e.start, day_start).astimezone(UTC), min(e.end, day_end).astimezone(UTC), e.location_id)
            for e in extra[provider]
            if e.start < day_end and e.end > day_start
        )
        for window_start, window_end, location in merge(windows):
            start = window_start
            while start + duration <= window_end:
                end = start + duration
                if start >= earliest and not busy[provider].overlaps(start, end):
                    local = start.astimezone(tz)
                    if part_of_day is None or PartOfDay.of(local.time()) is part_of_day:
                        slots.append(Slot(provider, type_id, local, end.astimezone(tz), location))
                start += step  # UTC arithmetic: elapsed time, not wall-clock time
    return slots
