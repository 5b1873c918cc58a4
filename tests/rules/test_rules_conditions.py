"""Each kind of `when` condition, as an admin would write it, against the facts that make it
hold or not. The first rule that holds names itself; otherwise the fallback decides."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from pbx_router.rules import CallFacts, Override, QueueFacts, decide, parse_rules

from .conftest import NY, OPEN

RULES = parse_rules(
    textwrap.dedent(
        """
        settings:
          timezone: America/New_York
          confidence_floor: 0.5
          emergency: {target: human}
        calendars:
          office: {timezone: America/New_York, hours: {tue: "09:00-17:00"}}
        intents:
          refill: {keywords: {refill: 0.9}}
          vague: {keywords: {maybe: 0.6}}
          sick: {keywords: {fever: 0.9}, urgency: urgent}
        lists:
          vip: ["+1555000*"]
        targets:
          human: {queue: frontdesk}
        rules:
          - {name: override, when: {override: {kind: snow}}, then: {target: human}}
          - {name: vip, when: {caller_in: vip}, then: {target: human}}
          - {name: pattern, when: {caller_matches: ["+4420*"]}, then: {target: human}}
          - {name: spanish, when: {language: es}, then: {target: human}}
          - {name: dialled, when: {dialled: "200"}, then: {target: human}}
          - {name: urgent, when: {urgency: urgent}, then: {target: human}}
          - {name: sure-refill, when: {intent: refill, min_confidence: 0.8}, then: {target: human}}
          - {name: unsure, when: {understood: true, confidence_below: 0.7}, then: {target: human}}
          - {name: known, when: {known_patient: true, intent: refill}, then: {target: human}}
          - {name: frequent, when: {calls_within: {days: 7, at_least: 3}}, then: {target: human}}
          - {name: lunch, when: {window: {calendar: office, days: [tue], from: "12:00", to: "13:00"}}, then: {target: human}}
          - {name: night, when: {window: {days: [tue], from: "22:00", to: "06:00"}}, then: {target: human}}
          - {name: busy, when: {queue: {name: frontdesk, longest_wait_s_at_least: 300}}, then: {target: human}}
          - {name: third-try, when: {attempt_at_least: 3}, then: {target: human}}
          - {name: not-vip, when: {caller_not_in: vip, open: office}, then: {target: human}}
          - {name: fallback, then: {target: human}}
        """
    ),
    "conditions.yaml",
)
TUE_10 = OPEN.replace(hour=10, minute=0)


def rule_for(text: str = "", **kw: object) -> str:
    facts = CallFacts(
        transcript=text, match=RULES.matcher.match(text), **{"now": TUE_10, **kw}
    )  # type: ignore[arg-type]
    return decide(RULES, facts).rule


@pytest.mark.parametrize(
    ("text", "facts", "rule"),
    [
        ("", {"overrides": [Override(kind="snow", scope="all")]}, "override"),
        (
            "",
            {
                "overrides": [
                    Override(kind="snow", expires_at=TUE_10 - dt.timedelta(seconds=1))
                ]
            },
            "not-vip",
        ),
        ("", {"caller_number": "+15550001234"}, "vip"),
        ("", {"caller_number": "+442071234567"}, "pattern"),
        ("", {"language": "es-MX"}, "spanish"),
        ("", {"dialled": "200"}, "dialled"),
        ("my son has a fever", {}, "urgent"),
        ("refill", {}, "sure-refill"),
        ("maybe", {}, "unsure"),
        ("maybe", {"known_patient": True}, "unsure"),
        (
            "",
            {"recent_calls": [TUE_10 - dt.timedelta(days=d) for d in (1, 2, 3)]},
            "frequent",
        ),
        (
            "",
            {"recent_calls": [TUE_10 - dt.timedelta(days=d) for d in (1, 2, 30)]},
            "not-vip",
        ),
        ("", {"now": TUE_10.replace(hour=12, minute=30)}, "lunch"),
        ("", {"now": TUE_10.replace(hour=23)}, "night"),
        (
            "",
            {"now": (TUE_10 + dt.timedelta(days=1)).replace(hour=5)},
            "fallback",
        ),  # Wed 05:00: window is Tue only
        ("", {"queues": {"frontdesk": QueueFacts(longest_wait_s=301)}}, "busy"),
        ("", {"queues": {"frontdesk": QueueFacts(longest_wait_s=10)}}, "not-vip"),
        ("", {"attempt": 3}, "third-try"),
        ("", {"caller_number": "+15559999999"}, "not-vip"),
        (
            "",
            {"now": dt.datetime(2026, 12, 9, 10, 0, tzinfo=NY)},
            "fallback",
        ),  # Wednesday: office closed
    ],
)
def test_condition_holds_or_not(text: str, facts: dict[str, object], rule: str) -> None:
    assert rule_for(text, **facts) == rule


def test_trace_shows_what_each_condition_saw() -> None:
    d = decide(
        RULES,
        CallFacts(
            match=RULES.matcher.match(""),
            now=TUE_10,
            caller_number="+15559999999",
            queues={"frontdesk": QueueFacts(longest_wait_s=10)},
        ),
    )
    by_rule = {t.rule: t for t in d.trace}
    assert by_rule["busy"].conditions[0].saw == {
        "agents_available": 0,
        "callers_waiting": 0,
        "longest_wait_s": 10,
    }
    assert (
        by_rule["vip"].conditions[0].saw == "not listed"
    )  # the number itself is PHI: never in a trace
    assert "+1555" not in str(d.to_dict())
    assert by_rule["lunch"].conditions[0].saw.startswith("tue 10:00")
