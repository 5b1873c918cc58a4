"""Opening hours as a caller meets them: before/after hours, lunch, holidays, closures, DST."""

from __future__ import annotations

import datetime as dt

import pytest

from pbx_router.rules import CallFacts, RuleSet, decide

from .conftest import NY

UTC = dt.UTC


def refill_at(clinic: RuleSet, now: dt.datetime) -> str:
    m = clinic.matcher.match("I need a refill on my prescription")
    d = decide(clinic, CallFacts(match=m, now=now))
    assert d.target is not None
    return d.target.name


@pytest.mark.parametrize(
    ("when", "target"),
    [
        (
            dt.datetime(2026, 12, 8, 7, 59, tzinfo=NY),
            "vm_pharmacy",
        ),  # Tue before opening
        (dt.datetime(2026, 12, 8, 8, 0, tzinfo=NY), "pharmacy"),  # opening minute
        (dt.datetime(2026, 12, 8, 16, 59, tzinfo=NY), "pharmacy"),
        (dt.datetime(2026, 12, 8, 17, 0, tzinfo=NY), "vm_pharmacy"),  # closing minute
        (
            dt.datetime(2026, 12, 9, 12, 30, tzinfo=NY),
            "vm_pharmacy",
        ),  # Wed lunch closure
        (dt.datetime(2026, 12, 9, 18, 30, tzinfo=NY), "pharmacy"),  # Wed late clinic
        (dt.datetime(2026, 12, 12, 10, 0, tzinfo=NY), "pharmacy"),  # Sat morning
        (dt.datetime(2026, 12, 13, 10, 0, tzinfo=NY), "vm_pharmacy"),  # Sunday
        (
            dt.datetime(2026, 12, 10, 14, 0, tzinfo=NY),
            "vm_pharmacy",
        ),  # staff training afternoon
        (
            dt.datetime(2026, 12, 10, 11, 0, tzinfo=NY),
            "pharmacy",
        ),  # ... but open that morning
        (
            dt.datetime(2026, 12, 24, 11, 0, tzinfo=NY),
            "pharmacy",
        ),  # Christmas Eve morning
        (
            dt.datetime(2026, 12, 24, 19, 30, tzinfo=NY),
            "vm_pharmacy",
        ),  # the example
        (dt.datetime(2026, 12, 25, 10, 0, tzinfo=NY), "vm_pharmacy"),  # Christmas Day
        (dt.datetime(2026, 11, 26, 10, 0, tzinfo=NY), "vm_pharmacy"),  # Thanksgiving
        (
            dt.datetime(2026, 7, 3, 10, 0, tzinfo=NY),
            "vm_pharmacy",
        ),  # July 4th observed (Fri)
        (
            dt.datetime(2027, 1, 18, 10, 0, tzinfo=NY),
            "vm_pharmacy",
        ),  # MLK day, another year
        (dt.datetime(2027, 1, 19, 10, 0, tzinfo=NY), "pharmacy"),
    ],
)
def test_hours_holidays_and_closures(
    clinic: RuleSet, when: dt.datetime, target: str
) -> None:
    assert refill_at(clinic, when) == target


@pytest.mark.parametrize(
    ("utc", "target"),
    [
        # Spring forward on Sun 8 Mar 2026: 12:30 UTC is 07:30 EST on Friday, 08:30 EDT on Monday.
        (dt.datetime(2026, 3, 6, 12, 30, tzinfo=UTC), "vm_pharmacy"),
        (dt.datetime(2026, 3, 9, 12, 30, tzinfo=UTC), "pharmacy"),
        # Fall back on Sun 1 Nov 2026: 12:30 UTC is 08:30 EDT on Friday, 07:30 EST on Monday.
        (dt.datetime(2026, 10, 30, 12, 30, tzinfo=UTC), "pharmacy"),
        (dt.datetime(2026, 11, 2, 12, 30, tzinfo=UTC), "vm_pharmacy"),
        # Closing time follows the wall clock too: 16:59 local is 21:59 UTC in winter, 20:59 in summer.
        (dt.datetime(2026, 1, 6, 21, 59, tzinfo=UTC), "pharmacy"),
        (dt.datetime(2026, 6, 2, 21, 59, tzinfo=UTC), "vm_pharmacy"),
    ],
)
def test_dst_changes_follow_local_wall_clock(
    clinic: RuleSet, utc: dt.datetime, target: str
) -> None:
    assert refill_at(clinic, utc) == target


def test_naive_time_is_read_in_the_rules_timezone(clinic: RuleSet) -> None:
    assert refill_at(clinic, dt.datetime(2026, 12, 8, 10, 0)) == "pharmacy"
    assert refill_at(clinic, dt.datetime(2026, 12, 8, 22, 0)) == "vm_pharmacy"


def test_after_hours_triage(clinic: RuleSet) -> None:
    night = dt.datetime(2026, 12, 8, 23, 0, tzinfo=NY)
    m = clinic.matcher
    emergency = decide(
        clinic, CallFacts(match=m.match("my husband can't breathe"), now=night)
    )
    assert emergency.target is not None and emergency.target.name == "oncall_doctor"
    assert emergency.message and "911" in emergency.message and emergency.priority == 0
    urgent = decide(
        clinic, CallFacts(match=m.match("my son has a high fever"), now=night)
    )
    assert urgent.target is not None and urgent.target.name == "oncall_nurse"
    routine = decide(
        clinic, CallFacts(match=m.match("I have a question about my bill"), now=night)
    )
    assert routine.action == "voicemail"
    records = decide(
        clinic, CallFacts(match=m.match("are my lab results back"), now=night)
    )
    assert records.action == "callback"
