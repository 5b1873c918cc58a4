"""Decisions on the clinic rules: caller facts, queue facts, staff overrides, the safety net,
and a trace an admin can read."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

from pbx_router.rules import (
    CallFacts,
    Override,
    QueueFacts,
    RuleSet,
    decide,
    parse_rules,
)

from .conftest import CLOSED, OPEN


def facts(clinic: RuleSet, text: str, **kw: object) -> CallFacts:
    return CallFacts(
        transcript=text, match=clinic.matcher.match(text), **{"now": OPEN, **kw}
    )  # type: ignore[arg-type]


def test_refill_open_goes_to_pharmacy_queue_with_trace(clinic: RuleSet) -> None:
    d = decide(clinic, facts(clinic, "I need a refill"))
    assert (d.action, d.target.name if d.target else None, d.rule) == (
        "queue",
        "pharmacy",
        "refill-open",
    )
    assert d.target is not None and d.target.params == {"queue": "pharmacy"}
    last = d.trace[-1]
    assert last.matched and last.rule == "refill-open"
    assert [(c.condition, c.held) for c in last.conditions] == [
        ("intent", True),
        ("open", True),
    ]
    assert last.conditions[1].saw.startswith("open tue")
    # every earlier rule is listed, none matched, each with the value it saw
    assert [t.rule for t in d.trace] == [r.name for r in clinic.rules[: len(d.trace)]]
    assert not any(t.matched for t in d.trace[:-1])
    assert all(t.conditions and not t.conditions[-1].held for t in d.trace[:-1])
    json.dumps(d.to_dict())


def test_not_understood_asks_again_then_keypad_then_a_person(clinic: RuleSet) -> None:
    said = "the weather is nice today"
    assert decide(clinic, facts(clinic, said, attempt=1)).action == "reprompt"
    assert decide(clinic, facts(clinic, said, attempt=2)).action == "keypad"
    third = decide(clinic, facts(clinic, said, attempt=3))
    assert third.target is not None and third.target.name == "frontdesk"
    night = decide(clinic, facts(clinic, said, attempt=3, now=CLOSED))
    assert night.target is not None and night.target.name == "after_hours"


def test_nurse_overflow_offers_callback(clinic: RuleSet) -> None:
    busy = {
        "nurse": QueueFacts(agents_available=0, callers_waiting=6, longest_wait_s=400)
    }
    d = decide(clinic, facts(clinic, "I need to talk to a nurse", queues=busy))
    assert d.action == "callback" and d.rule == "nurse-overflow"
    calm = {"nurse": QueueFacts(agents_available=2, callers_waiting=6)}
    assert (
        decide(clinic, facts(clinic, "I need to talk to a nurse", queues=calm)).rule
        == "nurse-open"
    )
    # no live queue facts: the overflow condition cannot hold
    assert (
        decide(clinic, facts(clinic, "I need to talk to a nurse")).rule == "nurse-open"
    )


def test_repeat_caller_today_gets_a_person_for_appointments(clinic: RuleSet) -> None:
    earlier = [OPEN - dt.timedelta(hours=1)]
    d = decide(
        clinic, facts(clinic, "I'd like to make an appointment", recent_calls=earlier)
    )
    assert d.target is not None and d.target.name == "scheduling"
    yesterday = [OPEN - dt.timedelta(days=1)]
    d2 = decide(
        clinic, facts(clinic, "I'd like to make an appointment", recent_calls=yesterday)
    )
    assert d2.action == "schedule"


def test_blocked_caller_hears_message_but_emergency_still_reaches_a_human(
    clinic: RuleSet,
) -> None:
    d = decide(clinic, facts(clinic, "I need a refill", caller_number="+19005551234"))
    assert d.action == "message" and d.rule == "blocked-caller"
    e = decide(
        clinic, facts(clinic, "I'm having chest pain", caller_number="+19005551234")
    )
    assert e.target is not None and e.target.name == "nurse" and e.priority == 0


def test_redirect_override_moves_refills_to_front_desk(clinic: RuleSet) -> None:
    o = Override(
        kind="redirect",
        scope="intent:prescription_refill",
        target="frontdesk",
        author="maria",
        reason="pharmacist out sick",
        expires_at=OPEN + dt.timedelta(hours=2),
    )
    d = decide(clinic, facts(clinic, "I need a refill", overrides=[o]))
    assert d.target is not None and d.target.name == "frontdesk" and d.action == "queue"
    assert any("pharmacist out sick" in n for n in d.notes)
    expired = Override(
        kind="redirect",
        scope="intent:prescription_refill",
        target="frontdesk",
        expires_at=OPEN - dt.timedelta(minutes=1),
    )
    assert (
        decide(
            clinic, facts(clinic, "I need a refill", overrides=[expired])
        ).target.name
        == "pharmacy"
    )  # type: ignore[union-attr]
    unknown = Override(kind="redirect", scope="all", target="nowhere")
    d3 = decide(clinic, facts(clinic, "I need a refill", overrides=[unknown]))
    assert d3.target is not None and d3.target.name == "pharmacy" and d3.notes


def test_closed_override_forces_after_hours_path(clinic: RuleSet) -> None:
    snow = Override(kind="closed", scope="calendar:clinic", reason="snow day")
    d = decide(clinic, facts(clinic, "I need a refill", overrides=[snow]))
    assert d.target is not None and d.target.name == "vm_pharmacy"
    assert "snow day" in str(d.to_dict()["trace"])


def test_emergency_cannot_be_redirected_to_self_service(clinic: RuleSet) -> None:
    o = Override(kind="redirect", scope="all", target="vm_pharmacy")
    d = decide(clinic, facts(clinic, "my husband can't breathe", overrides=[o]))
    assert d.target is not None and d.target.kind in {"queue", "endpoint", "dialplan"}
    assert d.message and "911" in d.message


SAFETY = textwrap.dedent(
    """
    settings:
      emergency: {target: oncall, message: "sound:call-911"}
    intents:
      emergency: {urgency: emergency, keywords: [chest pain]}
      booking: {keywords: [book]}
    targets:
      oncall: {endpoint: PJSIP/agent3}
      book: {schedule: {flow: book}}
    rules:
      - name: everything-self-service
        when: {}
        then: {target: book}
    """
)


def test_safety_net_overrides_a_rule_that_sends_emergencies_to_self_service() -> None:
    rs = parse_rules(SAFETY, "safety.yaml")
    d = decide(rs, CallFacts(match=rs.matcher.match("I have chest pain"), now=OPEN))
    assert (d.action, d.target.name if d.target else None, d.message) == (
        "transfer",
        "oncall",
        "sound:call-911",
    )
    assert any("safety net" in n for n in d.notes)
    routine = decide(rs, CallFacts(match=rs.matcher.match("book please"), now=OPEN))
    assert routine.action == "schedule"


def test_decide_never_raises_on_odd_facts(clinic: RuleSet) -> None:
    odd = CallFacts(
        match=None,
        now="not a time",
        caller_number="",
        recent_calls=["x", None],  # type: ignore[arg-type, list-item]
        queues={"nurse": "busy"},
        overrides=["junk"],
        attempt=0,
        language=None,
    )  # type: ignore[dict-item, list-item]
    d = decide(clinic, odd)
    assert d.rule and d.action
    json.dumps(d.to_dict(), default=str)


def test_a_possible_emergency_below_the_floor_goes_to_a_person(clinic: RuleSet) -> None:
    """Understood too poorly to be sure (emergency 0.4, below the 0.5 floor): not another
    'please repeat that', not self-service: the emergency target hears the caller out."""
    from pbx_router.intents.matcher import IntentScore, MatchResult

    match = MatchResult(
        "the tightness is back and going up into his teeth",
        "the tightness is back and going up into his teeth",
        (IntentScore("emergency", 0.4, 0.8, "emergency", ("classifier 0.80",)),
         IntentScore("urgent_clinical", 0.2, 0.2, "urgent")),
        floor=0.5,
    )
    assert not match.understood and match.emergency_suspected
    d = decide(clinic, CallFacts(transcript=match.text, match=match, now=OPEN, attempt=1))
    assert d.action != "reprompt"
    assert d.target is not None and d.target.name == clinic.settings.emergency.target
    assert any("possible emergency" in n for n in d.notes)
    # A routine caller who was not understood is simply asked again.
    routine = MatchResult("mm", "mm", (IntentScore("billing", 0.3, 0.3, "routine"),), floor=0.5)
    assert decide(clinic, CallFacts(transcript="mm", match=routine, now=OPEN, attempt=1)).action == "reprompt"
