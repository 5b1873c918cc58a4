"""The intent matcher as a caller experiences it: garbled speech, negation, corrections,
several requests at once, emergencies, the keypad, silence."""

from __future__ import annotations

import pytest

from pbx_router.intents import IntentMatcher, IntentSpec, normalize
from pbx_router.rules import CallFacts, RuleSet, decide

from .conftest import OPEN


@pytest.mark.parametrize(
    "text",
    [
        "i mean carried tell my prescription",
        "refill my pray scription",
        "re filled my medication please",
        "i need a pre scription for my a list her all",
    ],
)
def test_garbled_refills_are_still_refills(clinic: RuleSet, text: str) -> None:
    m = clinic.matcher.match(text)
    assert m.understood and m.intent == "prescription_refill"


def test_split_words_are_rejoined(clinic: RuleSet) -> None:
    assert clinic.matcher.match("i need a point meant").intent == "appointment_new"
    assert (
        clinic.matcher.match("can sell my appointment").intent == "appointment_cancel"
    )


def test_negated_request_gives_way_to_the_real_one(clinic: RuleSet) -> None:
    m = clinic.matcher.match("I don't need a refill, I need to talk to the nurse")
    assert m.intent == "speak_to_nurse"
    assert "prescription_refill" not in [
        s.intent for s in m.intents if s.confidence > 0.2
    ]


def test_correction_discounts_what_came_before(clinic: RuleSet) -> None:
    m = clinic.matcher.match("I need a refill no wait I mean the nurse")
    assert m.intent == "speak_to_nurse"
    refill = next(s for s in m.intents if s.intent == "prescription_refill")
    assert refill.confidence < m.confidence


def test_state_of_the_caller_is_not_a_negation(clinic: RuleSet) -> None:
    assert (
        clinic.matcher.match("I'm not sure if my prescription is ready").intent
        == "prescription_refill"
    )
    assert (
        clinic.matcher.match("I won't be able to come please cancel it").intent
        == "appointment_cancel"
    )


def test_two_requests_are_both_listed_and_the_rules_pick_the_first(clinic: RuleSet) -> None:
    m = clinic.matcher.match("I need a refill and also want to book an appointment")
    assert m.understood
    assert m.requests == ("prescription_refill", "appointment_new")
    assert all(
        s.confidence >= clinic.settings.confidence_floor
        for s in m.intents
        if s.intent in m.requests
    )
    # The refill rules come before the appointment rules in the file: the pharmacy goes first,
    # and the decision says what else was asked for.
    d = decide(clinic, CallFacts(transcript=m.text, match=m, now=OPEN))
    assert d.intent == "prescription_refill" and d.target_name == "pharmacy"
    assert any("appointment_new" in note for note in d.notes)


def test_denied_red_flag_is_not_an_emergency(clinic: RuleSet) -> None:
    """The caller the old matcher sent down the emergency path: "no chest pain" denies it."""
    m = clinic.matcher.match("I don't have chest pain I just need a refill")
    assert m.intent == "prescription_refill" and m.urgency != "emergency"
    assert any("chest" in d for d in m.denied)


@pytest.mark.parametrize(
    "text",
    [
        "I need to cancel my appointment because I have chest pain",
        "refill please and my husband can't breathe",
        "chess pain",
    ],
)
def test_emergency_wins_over_everything(clinic: RuleSet, text: str) -> None:
    m = clinic.matcher.match(text)
    assert (
        m.intent == "emergency"
        and m.understood
        and m.urgency == "emergency"
        and m.urgent
    )


def test_keypad_digits(clinic: RuleSet) -> None:
    m = clinic.matcher.match_digits("2")
    assert (m.intent, m.confidence, m.source) == ("prescription_refill", 1.0, "keypad")
    assert clinic.matcher.match_digits("0").intent == "operator"
    assert not clinic.matcher.match_digits("#").understood
    assert not clinic.matcher.match_digits("").understood


@pytest.mark.parametrize(
    "text", ["", "   ", "um uh", "[noise] <sil> [breath]", "???", "\x00\x01", "🙂🙂"]
)
def test_silence_and_noise_are_not_understood(clinic: RuleSet, text: str) -> None:
    m = clinic.matcher.match(text)
    assert not m.understood and m.confidence == 0.0 and m.intents == ()


def test_evidence_explains_the_choice(clinic: RuleSet) -> None:
    m = clinic.matcher.match("refill my pray scription")
    assert any("prescription" in e for e in m.evidence)
    assert m.to_dict()["intents"][0]["intent"] == "prescription_refill"


def test_matcher_from_plain_intents_and_regex() -> None:
    matcher = IntentMatcher(
        {
            "order": IntentSpec(regex=[r"\border (number )?\d+"]),
            "hi": IntentSpec(examples=["good day to you sir"]),
        },
        floor=0.5,
    )
    assert matcher.match("where is order number 42").intent == "order"
    assert matcher.match("good day to you sir").intent == "hi"
    assert not matcher.match("nothing here").understood


def test_normalize_expands_contractions_and_drops_fillers() -> None:
    assert normalize("Um, I CAN'T  breathe!") == ["i", "can", "not", "breathe"]
    assert normalize("I dont need it") == ["i", "do", "not", "need", "it"]


def test_a_red_flag_in_another_reading_of_a_clinical_complaint_is_an_emergency(clinic: RuleSet) -> None:
    """The recogniser heard "just pain" and nearly heard "chest pain": what was heard best is an
    urgent clinical complaint, which corroborates the other reading. The trace says so."""
    m = clinic.matcher.match("i have just pain", alternatives=("i have chest pain",))
    assert m.intent == "emergency" and m.understood
    assert m.red_flagged
    assert [f["flag"] for f in m.red_flags] == ["chest"]
    assert m.red_flags[0]["corroborated_by"] == "urgent_clinical"
    assert any("corroborated by the clinical request 'urgent_clinical'" in n for n in m.top.evidence)


def test_a_red_flag_in_another_reading_of_a_routine_request_stays_possible(clinic: RuleSet) -> None:
    """A garbled routine request with a red flag only in an alternative is not the 911 path (it
    is a possible emergency: a person hears the caller out, see test_rules_decide)."""
    m = clinic.matcher.match("are my chest x ray results back yet",
                             alternatives=("are my chest pain results back yet",))
    assert m.intent == "test_results"
    assert not m.red_flagged
    assert all(f["possible"] for f in m.red_flags)
