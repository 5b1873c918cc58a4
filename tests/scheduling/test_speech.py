"""Words <-> scheduling for the voice flow: table tests, pure."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pbx_router.scheduling.model import AppointmentType, PartOfDay, Provider, Slot
from pbx_router.scheduling.speech import (
    interpret_choice,
    interpret_yes_no,
    parse_dob_keypad,
    parse_dob_speech,
    parse_request,
    slot_media,
    wants_human,
)
from pbx_router.scheduling.verification import (
    Candidate,
    Outcome,
    VerificationPolicy,
    check,
    normalize_number,
    start,
)

NY = ZoneInfo("America/New_York")
TODAY = dt.date(2026, 11, 25)  # a Wednesday
TYPES = [
    AppointmentType("checkup", "annual checkup", dt.timedelta(minutes=30), ("dr-patel",), keywords=("checkup", "physical")),
    AppointmentType("sick-visit", "sick visit", dt.timedelta(minutes=20), ("dr-patel",), keywords=("sick", "sore throat")),
    AppointmentType("follow-up", "follow-up", dt.timedelta(minutes=15), ("dr-patel",), keywords=("follow up",)),
    AppointmentType("procedure", "procedure", dt.timedelta(minutes=60), ("dr-okafor",), keywords=("biopsy",), phone_bookable=False),
]
PROVIDERS = [Provider("dr-patel", "Dr. Anita Patel", ("doctor patel",)), Provider("dr-nguyen", "Dr. Minh Nguyen")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("march fourteenth nineteen eighty", dt.date(1980, 3, 14)),
        ("it's the 14th of march 1980", dt.date(1980, 3, 14)),
        ("march 14 1980", dt.date(1980, 3, 14)),
        ("three fourteen nineteen eighty", dt.date(1980, 3, 14)),
        ("oh three one four one nine eight zero", dt.date(1980, 3, 14)),
        ("03141980", dt.date(1980, 3, 14)),
        ("march twenty first nineteen eighty five", dt.date(1985, 3, 21)),
        ("december thirty first nineteen oh five", dt.date(1905, 12, 31)),
        ("july fourth two thousand twelve", dt.date(2012, 7, 4)),
        ("january second twenty twenty", dt.date(2020, 1, 2)),
        ("february thirtieth nineteen eighty", None),  # no such day
        ("march fourteenth", None),  # no year
        ("i don't know", None),
        ("march fourteenth twenty thirty", None),  # in the future
    ],
)
def test_spoken_date_of_birth(text: str, expected: dt.date | None) -> None:
    assert parse_dob_speech(text, TODAY) == expected


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("03141980", dt.date(1980, 3, 14)), ("03141980#", dt.date(1980, 3, 14)), ("13141980", None),
     ("0314198", None), ("02301980", None), ("12312099", None), ("", None)],
)
def test_keypad_date_of_birth(digits: str, expected: dt.date | None) -> None:
    assert parse_dob_keypad(digits, TODAY) == expected


@pytest.mark.parametrize(
    ("text", "digits", "expected"),
    [("yes", "", True), ("yeah that's right", "", True), ("sounds good", "", True), ("no", "", False),
     ("that's not right", "", False), ("nope, a different time", "", False), ("", "1", True), ("", "2", False),
     ("hmm", "", None), ("", "5", None)],
)
def test_yes_no(text: str, digits: str, expected: bool | None) -> None:
    assert interpret_yes_no(text, digits) == expected


def test_asking_for_a_person() -> None:
    assert wants_human("can I talk to the operator")
    assert wants_human("", "0")
    assert wants_human("I want a real person")
    assert not wants_human("tuesday morning please")


def slots() -> list[Slot]:
    def make(day: int, hour: int, minute: int) -> Slot:
        start = dt.datetime(2026, 12, day, hour, minute, tzinfo=NY)
        return Slot("dr-patel", "checkup", start, start + dt.timedelta(minutes=30))

    return [make(1, 9, 30), make(1, 14, 0), make(3, 9, 0)]  # Tue 9:30, Tue 2 pm, Thu 9 am


@pytest.mark.parametrize(
    ("text", "digits", "expected"),
    [("", "1", 0), ("", "3", 2), ("", "4", None), ("the first one", "", 0), ("number two please", "", 1),
     ("the third", "", 2), ("the last one", "", 2), ("thursday", "", 2), ("tuesday", "", None),
     ("tuesday at two pm", "", 1), ("two pm", "", 1), ("nine thirty", "", 0), ("the 9:30 one", "", 0),
     ("9 am", "", 2), ("no", "", None), ("yes", "", None), ("", "", None)],
)
def test_choosing_an_offered_slot(text: str, digits: str, expected: int | None) -> None:
    assert interpret_choice(slots(), NY, text, digits) == expected


def test_yes_accepts_a_single_offer() -> None:
    assert interpret_choice(slots()[:1], NY, "yes please") == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("with my usual doctor next Tuesday morning", dict(usual_provider=True, days={dt.date(2026, 12, 1)}, part_of_day=PartOfDay.MORNING)),
        ("I need a checkup with doctor Patel tomorrow afternoon", dict(type_id="checkup", provider_id="dr-patel", days={dt.date(2026, 11, 26)}, part_of_day=PartOfDay.AFTERNOON)),
        ("my kid is sick can we come in today", dict(type_id="sick-visit", days={TODAY})),
        ("a follow up on friday with nguyen", dict(type_id="follow-up", provider_id="dr-nguyen", days={dt.date(2026, 11, 27)})),
        ("something on december third", dict(days={dt.date(2026, 12, 3)})),
        ("the 2nd would be great", dict(days={dt.date(2026, 12, 2)})),
        ("the first available appointment", dict()),
        ("a biopsy", dict()),  # not bookable by phone: left for staff
        ("any time next week", dict(days={dt.date(2026, 11, 30) + dt.timedelta(days=n) for n in range(7)})),
        ("may I get a physical", dict(type_id="checkup")),
    ],
)
def test_booking_request(text: str, expected: dict[str, object]) -> None:
    request = parse_request(text, TODAY, TYPES, PROVIDERS)
    want = dict(type_id=None, provider_id=None, usual_provider=False, days=set(), part_of_day=None) | expected
    got = dict(type_id=request.type_id, provider_id=request.provider_id, usual_provider=request.usual_provider,
               days=set(request.days), part_of_day=request.part_of_day)
    assert got == want


def test_request_becomes_a_slot_query_with_the_usual_provider() -> None:
    query = parse_request("my usual doctor next tuesday morning", TODAY, TYPES, PROVIDERS).to_query(
        NY, default_type_id="checkup", usual_provider_id="dr-nguyen"
    )
    assert (query.type_id, query.provider_id, query.part_of_day) == ("checkup", "dr-nguyen", PartOfDay.MORNING)


@pytest.mark.parametrize(
    ("local", "media"),
    [
        (dt.datetime(2026, 12, 1, 9, 30), ["day-2", "mon-11", "h-1", "at", "9", "30", "a-m"]),
        (dt.datetime(2026, 12, 24, 14, 0), ["day-4", "mon-11", "20", "h-4", "at", "2", "oclock", "p-m"]),
        (dt.datetime(2026, 1, 31, 12, 5), ["day-6", "mon-0", "30", "h-1", "at", "12", "oh", "5", "p-m"]),
        (dt.datetime(2026, 3, 30, 8, 45), ["day-1", "mon-2", "h-30", "at", "8", "40", "5", "a-m"]),
        (dt.datetime(2026, 11, 15, 0, 15), ["day-0", "mon-10", "h-15", "at", "12", "15", "a-m"]),
    ],
)
def test_slot_read_out_uses_asterisk_core_sounds(local: dt.datetime, media: list[str]) -> None:
    start = local.replace(tzinfo=NY)
    slot = Slot("dr-patel", "checkup", start.astimezone(dt.UTC), start + dt.timedelta(minutes=30))
    assert slot_media(slot, NY) == [f"sound:digits/{m}" for m in media]


# -- verification policy ---------------------------------------------------------------------

DOB = dt.date(1980, 3, 14)


def test_policy_verifies_on_the_right_date_and_stops_after_three_failures() -> None:
    policy = VerificationPolicy()
    candidates = [Candidate(7, DOB)]
    decision = start(policy)
    decision = check(policy, decision.state, dt.date(1980, 3, 15), candidates)
    assert (decision.outcome, decision.attempts_left) == (Outcome.RETRY, 2)
    decision = check(policy, decision.state, DOB, candidates)
    assert (decision.outcome, decision.patient_id) == (Outcome.VERIFIED, 7)
    with pytest.raises(ValueError):
        check(policy, decision.state, DOB, candidates)


def test_policy_twins_on_one_number_go_to_a_human() -> None:
    decision = check(VerificationPolicy(), start(VerificationPolicy()).state, DOB, [Candidate(1, DOB), Candidate(2, DOB)])
    assert decision.outcome is Outcome.TO_HUMAN and decision.patient_id is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("(555) 010-0123", "+15550100123"), ("15550100123", "+15550100123"), ("+44 20 7946 0958", "+442079460958"),
     ("0044 20 7946 0958", "+442079460958"), ("anonymous", None), ("", None), (None, None), ("12345", None)],
)
def test_normalize_number(raw: str | None, expected: str | None) -> None:
    assert normalize_number(raw) == expected
