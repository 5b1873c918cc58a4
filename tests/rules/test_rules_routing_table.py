"""Table-driven routing: what a caller says -> the intent and the target they reach, in and
out of opening hours, on the example clinic. The table lives in fixtures/utterances.csv."""

from __future__ import annotations

import csv

import pytest

from pbx_router.rules import CallFacts, Decision, RuleSet, decide

from .conftest import CLOSED, FIXTURES, OPEN

with (FIXTURES / "utterances.csv").open(encoding="utf-8", newline="") as fh:
    ROWS = list(csv.DictReader(fh))


def where(d: Decision) -> str:
    return d.target.name if d.target else f"action:{d.action}"


def test_table_is_big_and_covers_every_intent(clinic: RuleSet) -> None:
    assert len(ROWS) >= 150
    expected = {r["intent"] for r in ROWS}
    assert set(clinic.intents) <= expected
    assert "-" in expected  # silence / noise / off-topic rows


@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{i}:{r['utterance'][:40]}" for i, r in enumerate(ROWS)]
)
def test_utterance_routes_to_expected_target(
    clinic: RuleSet, row: dict[str, str]
) -> None:
    match = clinic.matcher.match(row["utterance"])
    got = match.intent if match.understood else "-"
    if len(match.requests) > 1:
        # Two requests: the rules decide which is served first (the decision's intent).
        got = decide(clinic, CallFacts(transcript=row["utterance"], match=match, now=OPEN)).intent or "-"
    assert got == row["intent"], [
        (s.intent, s.confidence, s.evidence) for s in match.intents[:3]
    ]
    opened = decide(
        clinic, CallFacts(transcript=row["utterance"], match=match, now=OPEN)
    )
    closed = decide(
        clinic, CallFacts(transcript=row["utterance"], match=match, now=CLOSED)
    )
    assert where(opened) == row["open_target"], opened.reason
    assert where(closed) == row["closed_target"], closed.reason


def test_confident_answers_are_right(clinic: RuleSet) -> None:
    """Calibration: when the matcher clears the floor it is right; off-topic never clears it."""
    confident = right = 0
    for row in ROWS:
        m = clinic.matcher.match(row["utterance"])
        if m.understood:
            confident += 1
            right += m.intent == row["intent"]
        if row["intent"] == "-":
            assert m.confidence < clinic.settings.confidence_floor, row["utterance"]
    assert right / confident >= 0.97


UNSEEN_OFF_TOPIC = [
    "what is the meaning of life",
    "I want to order a pizza",
    "is this the right number",
    "my cat knocked over a plant",
    "do you sell car parts",
    "can you hear me now",
    "sorry wrong number",
    "we are out of milk again",
    "tell me a joke",
    "how much is a taxi to the airport",
]


@pytest.mark.parametrize("text", UNSEEN_OFF_TOPIC)
def test_off_topic_sentences_score_below_the_floor(clinic: RuleSet, text: str) -> None:
    m = clinic.matcher.match(text)
    assert not m.understood, m.to_dict()
    d = decide(clinic, CallFacts(transcript=text, match=m, now=OPEN, attempt=3))
    assert (
        d.target is not None and d.target.name == "frontdesk"
    )  # a human, not a wrong flow
