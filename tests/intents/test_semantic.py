"""Meaning-level understanding as an admin sees it: requests nobody listed in the rules file
reach the right intent, the trace says why, and what is not a request is not understood."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx_router.intents import IntentSpec
from pbx_router.intents.normalize import normalize
from pbx_router.intents.semantic import MEDICINE_TOKEN, build_semantic_model, mark_medicines
from pbx_router.rules import RuleSet, load_rules

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clinic() -> RuleSet:
    return load_rules(ROOT / "examples" / "clinic.yaml")


# Written for this test, not taken from the corpus or the rules file: none of these use the
# clinic's keywords for the intent they belong to.
UNLISTED = [
    ("I'm down to my last two metformin", "prescription_refill"),
    ("could you send more of my lisinopril over to the walgreens", "prescription_refill"),
    ("how much do I still owe you guys from the visit in march", "billing"),
    ("nobody ever got back to me about the scan they did on my knee", "test_results"),
    ("is there a supervisor I could speak with", "operator"),
    ("none of those, I just want a human being", "operator"),
    ("could you switch my thursday visit over to friday afternoon", "appointment_change"),
    ("take me off the schedule for tomorrow, I won't be there", "appointment_cancel"),
    ("where do I park when I come in", "office_hours"),
]


@pytest.mark.parametrize(("text", "intent"), UNLISTED)
def test_unlisted_phrasings_reach_the_right_intent(clinic: RuleSet, text: str, intent: str) -> None:
    m = clinic.matcher.match(text)
    assert m.understood, m.to_dict()
    assert m.intent == intent, m.to_dict()


def test_the_trace_shows_the_classifier_and_the_nearest_sentence(clinic: RuleSet) -> None:
    m = clinic.matcher.match("how much do I still owe you guys from the visit in march")
    notes = " | ".join(m.evidence)
    assert "classifier" in notes and "nearest" in notes


@pytest.mark.parametrize("text", ["hello can you hear me", "sorry wrong number", "one moment please"])
def test_what_is_not_a_request_is_not_understood(clinic: RuleSet, text: str) -> None:
    assert not clinic.matcher.match(text).understood


def test_a_negated_request_does_not_count(clinic: RuleSet) -> None:
    m = clinic.matcher.match("I don't need to reschedule anything, I just want to cancel it")
    assert m.intent == "appointment_cancel"


def test_denied_chest_pain_is_a_refill_not_an_emergency(clinic: RuleSet) -> None:
    m = clinic.matcher.match("I don't have chest pain or anything, I just need my heart pills refilled")
    assert m.intent == "prescription_refill" and m.urgency != "emergency", m.to_dict()


def test_medicine_names_are_recognised_as_medicines() -> None:
    assert mark_medicines(normalize("my lisinopril and my metformin")) == [
        "my", MEDICINE_TOKEN, "and", "my", MEDICINE_TOKEN,
    ]


def test_the_clinics_own_examples_teach_a_new_intent(tmp_path: Path) -> None:
    specs = {
        "parking_validation": IntentSpec(examples=["can you validate my parking ticket", "my garage ticket needs a stamp"]),
        "billing": IntentSpec(keywords=["bill"]),
    }
    model = build_semantic_model(specs, cache_dir=tmp_path)
    top = model.score(normalize("do you stamp garage tickets")).scores[0]
    assert top.intent == "parking_validation"
    # Trained once: the second build with the same intents comes from the cache, unchanged.
    again = build_semantic_model(specs, cache_dir=tmp_path)
    assert again.score(normalize("do you stamp garage tickets")).scores[0] == top
    assert list(tmp_path.glob("*.npz"))
