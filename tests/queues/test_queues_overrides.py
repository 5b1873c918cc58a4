"""Staff overrides: validation, which one applies now, JSON round trip, the rules' view."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pbx_router.queues.overrides import Override, OverrideSet

NOW = dt.datetime(2025, 3, 4, 10, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def make(kind: str, scope: str = "frontdesk", target: str | None = None, *, ago: int = 0, lasts: int = 60) -> Override:
    created = NOW - dt.timedelta(minutes=ago)
    return Override(
        kind=kind, scope=scope, target=target, author="maria", reason="flu season",  # type: ignore[arg-type]
        created_at=created, expires_at=created + dt.timedelta(minutes=lasts),
    )


def test_an_override_needs_author_reason_expiry_and_a_target_where_it_routes() -> None:
    with pytest.raises(ValueError, match="author"):
        Override("close_queue", "q", "", "why", NOW, NOW + HOUR)
    with pytest.raises(ValueError, match="expire after"):
        Override("close_queue", "q", "maria", "why", NOW, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        Override("close_queue", "q", "maria", "why", NOW.replace(tzinfo=None), NOW + HOUR)
    with pytest.raises(ValueError, match="needs a target"):
        Override("redirect_queue", "q", "maria", "why", NOW, NOW + HOUR)
    with pytest.raises(ValueError, match="presence"):
        Override("agent_presence", "PJSIP/agent1", "maria", "why", NOW, NOW + HOUR, target="napping")
    with pytest.raises(ValueError, match="unknown override kind"):
        Override("reboot", "q", "maria", "why", NOW, NOW + HOUR)  # type: ignore[arg-type]


def test_the_newest_override_about_a_queue_wins_and_expired_ones_do_not_count() -> None:
    closed = make("close_queue", ago=30)
    reopened = make("open_queue", ago=10)
    overrides = OverrideSet().add(closed)
    assert overrides.queue_directive("frontdesk", NOW).state == "closed"
    assert overrides.queue_directive("nurse", NOW).state == "open"
    assert overrides.add(reopened).queue_directive("frontdesk", NOW).state == "open"
    assert overrides.queue_directive("frontdesk", NOW + HOUR).state == "open"  # expired


def test_redirect_and_all_scope_and_intent_redirect() -> None:
    overrides = OverrideSet().add(make("redirect_queue", "all", "frontdesk", ago=5)).add(
        make("redirect_intent", "prescription_refill", "vm_pharmacy")
    )
    directive = overrides.queue_directive("nurse", NOW)
    assert directive.state == "redirected" and directive.target is not None and directive.target.target == "frontdesk"
    hit = overrides.intent_redirect("prescription_refill", NOW)
    assert hit is not None and hit.target == "vm_pharmacy"
    assert overrides.intent_redirect("billing_question", NOW) is None


def test_cancelling_ends_it_now_but_keeps_the_record() -> None:
    o = make("after_hours", "all", ago=1)
    overrides = OverrideSet().add(o)
    assert overrides.after_hours(NOW) is not None
    cancelled = overrides.cancel(o.id, NOW)
    assert cancelled.after_hours(NOW) is None
    assert [x.id for x in cancelled.items] == [o.id]
    with pytest.raises(KeyError):
        overrides.cancel("nope", NOW)
    with pytest.raises(ValueError, match="already exists"):
        overrides.add(o)


def test_agent_presence_overrides_per_endpoint() -> None:
    overrides = OverrideSet().add(make("agent_presence", "PJSIP/agent1", "paused", ago=5)).add(
        make("agent_presence", "PJSIP/agent1", "logged_out", ago=1)
    )
    assert overrides.agent_presence("PJSIP/agent1", NOW) == "logged_out"
    assert overrides.presences(NOW) == {"PJSIP/agent1": "logged_out"}
    assert overrides.agent_presence("PJSIP/agent2", NOW) is None


def test_json_round_trip_and_malformed_entries_are_skipped_and_described() -> None:
    overrides = OverrideSet().add(make("redirect_queue", "nurse", "oncall_nurse")).add(make("after_hours", "all"))
    stored = json.loads(json.dumps(overrides.to_list()))
    stored.append({"kind": "close_queue"})
    stored.append("garbage")
    stored.append({**stored[0], "expires_at": "tomorrow"})
    back, problems = OverrideSet.from_list(stored)
    assert back.items == overrides.items
    assert len(problems) == 3 and "missing" in problems[0]


def test_the_rules_engine_sees_redirects_after_hours_and_queue_closures_in_its_own_terms() -> None:
    overrides = OverrideSet().add(make("redirect_queue", "nurse", "oncall_nurse", ago=3)).add(
        make("redirect_intent", "billing_question", "vm_billing", ago=2)
    ).add(make("after_hours", "all", ago=1)).add(make("close_queue", "pharmacy")).add(
        make("agent_presence", "PJSIP/agent1", "paused")
    )
    seen = {(r.kind, r.scope, r.target) for r in overrides.for_rules(NOW)}
    assert seen == {
        ("redirect", "queue:nurse", "oncall_nurse"),
        ("redirect", "intent:billing_question", "vm_billing"),
        ("closed", "all", None),
        ("close_queue", "queue:pharmacy", None),
    }
    assert all(r.active(NOW) for r in overrides.for_rules(NOW))
    assert overrides.for_rules(NOW + 2 * HOUR) == []
