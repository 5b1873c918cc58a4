"""Slot generation from templates, exceptions and busy time: pure, no database, no event loop."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from pbx_router.scheduling.model import (
    AppointmentType,
    AvailabilityException,
    Interval,
    PartOfDay,
    SlotQuery,
    WeeklyTemplate,
)
from pbx_router.scheduling.policy import generate_slots

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
MON = dt.date(2026, 11, 30)  # a Monday
VISIT = AppointmentType("visit", "visit", dt.timedelta(minutes=30), ("a", "b"))
HOUR = AppointmentType("long", "long", dt.timedelta(hours=1), ("a",))


def at(day: dt.date, hhmm: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=NY)


def local_times(slots) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.start.astimezone(NY).strftime("%a %H:%M") for s in slots]


def weekly(provider: str, weekday: int, start: str, end: str) -> WeeklyTemplate:
    return WeeklyTemplate(provider, weekday, dt.time.fromisoformat(start), dt.time.fromisoformat(end))


def test_first_slots_follow_the_template_in_clinic_time() -> None:
    slots = generate_slots(SlotQuery("visit"), VISIT, [weekly("a", 0, "08:00", "10:00")], [], {}, NY,
                           at(MON, "06:00"), limit=3)
    assert local_times(slots) == ["Mon 08:00", "Mon 08:30", "Mon 09:00"]
    assert all(s.end - s.start == dt.timedelta(minutes=30) for s in slots)


def test_past_and_busy_times_are_not_offered_and_providers_interleave_by_time() -> None:
    templates = [weekly("a", 0, "08:00", "10:00"), weekly("b", 0, "08:15", "09:15")]
    busy = {"a": [Interval(at(MON, "08:30"), at(MON, "09:00"))]}
    slots = generate_slots(SlotQuery("visit"), VISIT, templates, [], busy, NY, at(MON, "08:10"), limit=4)
    assert [(s.provider_id, s.start.astimezone(NY).strftime("%H:%M")) for s in slots] == [
        ("b", "08:15"), ("b", "08:45"), ("a", "09:00"), ("a", "09:30"),
    ]


def test_provider_day_and_part_of_day_filters() -> None:
    templates = [weekly("a", d, "08:00", "17:00") for d in range(5)] + [weekly("b", 1, "08:00", "17:00")]
    query = SlotQuery("visit", provider_id="a", weekdays=frozenset({1}), part_of_day=PartOfDay.AFTERNOON)
    slots = generate_slots(query, VISIT, templates, [], {}, NY, at(MON, "06:00"), limit=2)
    assert local_times(slots) == ["Tue 12:00", "Tue 12:30"]
    assert {s.provider_id for s in slots} == {"a"}
    only_day = SlotQuery("visit", days=frozenset({MON + dt.timedelta(days=3)}), part_of_day=PartOfDay.MORNING)
    assert local_times(generate_slots(only_day, VISIT, templates, [], {}, NY, at(MON, "06:00"), limit=1)) == ["Thu 08:00"]


def test_provider_not_offering_the_type_gives_nothing() -> None:
    templates = [weekly("c", 0, "08:00", "17:00")]
    assert generate_slots(SlotQuery("visit", provider_id="c"), VISIT, templates, [], {}, NY, at(MON, "06:00")) == []


def test_overlapping_templates_are_merged_without_duplicates() -> None:
    templates = [weekly("a", 3, "08:00", "16:00"), weekly("a", 3, "15:00", "18:00"), weekly("a", 3, "09:00", "10:00")]
    thursday = MON + dt.timedelta(days=3)
    slots = generate_slots(SlotQuery("visit", provider_id="a", days=frozenset({thursday})), VISIT, templates, [], {},
                           NY, at(MON, "06:00"), limit=100)
    starts = [s.start for s in slots]
    assert len(starts) == len(set(starts)) == 20  # 08:00 .. 17:30, every 30 minutes
    assert local_times(slots)[-1] == "Thu 17:30"


def test_vacations_closures_and_extra_hours() -> None:
    templates = [weekly("a", d, "08:00", "12:00") for d in range(5)]
    exceptions = [
        AvailabilityException(at(MON, "00:00"), at(MON + dt.timedelta(days=2), "00:00"), "unavailable", "a"),
        AvailabilityException(at(MON + dt.timedelta(days=2), "08:00"), at(MON + dt.timedelta(days=2), "11:00"), "unavailable"),
        AvailabilityException(at(MON + dt.timedelta(days=5), "13:00"), at(MON + dt.timedelta(days=5), "14:00"), "available", "a"),
    ]
    slots = generate_slots(SlotQuery("visit", provider_id="a"), VISIT, templates, exceptions, {}, NY,
                           at(MON, "06:00"), limit=3)
    assert local_times(slots) == ["Wed 11:00", "Wed 11:30", "Thu 08:00"]
    saturday = generate_slots(SlotQuery("visit", provider_id="a", weekdays=frozenset({5})), VISIT, templates,
                              exceptions, {}, NY, at(MON, "06:00"), limit=5)
    assert local_times(saturday) == ["Sat 13:00", "Sat 13:30"]


def test_spring_forward_day_keeps_wall_clock_hours_and_real_durations() -> None:
    spring = dt.date(2026, 3, 8)  # Sunday: 02:00 EST -> 03:00 EDT
    templates = [weekly("a", 6, "00:00", "04:00"), weekly("a", 6, "08:00", "10:00")]
    slots = generate_slots(SlotQuery("long", days=frozenset({spring})), HOUR, templates, [], {}, NY,
                           dt.datetime(2026, 3, 7, tzinfo=UTC), limit=10)
    assert [s.start.strftime("%H:%M%z") for s in slots] == [
        "00:00-0500", "01:00-0500", "03:00-0400", "08:00-0400", "09:00-0400",
    ]
    # Elapsed time: compare in UTC (same-zone aware subtraction in Python is wall-clock).
    assert all(s.end.astimezone(UTC) - s.start.astimezone(UTC) == dt.timedelta(hours=1) for s in slots)


def test_a_template_starting_in_the_spring_gap_starts_when_the_clock_resumes() -> None:
    spring = dt.date(2026, 3, 8)
    slots = generate_slots(SlotQuery("long", days=frozenset({spring})), HOUR, [weekly("a", 6, "02:30", "05:00")], [],
                           {}, NY, dt.datetime(2026, 3, 7, tzinfo=UTC), limit=10)
    assert [s.start.strftime("%H:%M%z") for s in slots] == ["03:00-0400", "04:00-0400"]


def test_fall_back_day_offers_both_one_oclocks_as_distinct_instants() -> None:
    fall = dt.date(2026, 11, 1)  # Sunday: 02:00 EDT -> 01:00 EST
    slots = generate_slots(SlotQuery("long", days=frozenset({fall})), HOUR, [weekly("a", 6, "00:00", "03:00")], [], {},
                           NY, dt.datetime(2026, 10, 31, tzinfo=UTC), limit=10)
    assert [s.start.strftime("%H:%M%z") for s in slots] == ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500"]
    assert len({s.start.astimezone(UTC) for s in slots}) == 4


def test_clinic_hours_after_a_dst_change_are_still_eight_oclock_local() -> None:
    templates = [weekly("a", d, "08:00", "09:00") for d in range(7)]
    before = generate_slots(SlotQuery("long"), HOUR, templates, [], {}, NY, dt.datetime(2026, 10, 31, 5, tzinfo=UTC), limit=3)
    assert [s.start.strftime("%m-%d %H:%M%z") for s in before] == [
        "10-31 08:00-0400", "11-01 08:00-0500", "11-02 08:00-0500",
    ]
