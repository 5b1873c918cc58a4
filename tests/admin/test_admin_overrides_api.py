"""Staff overrides and presence through the API: created, visible, acted on, expired, cancelled;
bad requests get a 400 that says what is wrong."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from pbx_router.admin import InMemoryBackend
from pbx_router.queues.overrides import OverrideSet

from .conftest import START, Api, FakeClock

CLOSE_FRONTDESK = {"kind": "close_queue", "scope": "frontdesk", "author": "Dana (front desk)",
                   "reason": "staff meeting", "ttl_minutes": 60}


def queue(answer_body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in answer_body["queues"] if q["queue"] == name)


async def test_an_override_is_created_seen_acted_on_and_cancelled(
    api: Api, clock: FakeClock, changes: list[OverrideSet]
) -> None:
    created = await api("POST", "/api/overrides", CLOSE_FRONTDESK)
    assert created.status == 201
    override = created.body
    assert override["kind"] == "close_queue" and override["author"] == "Dana (front desk)"
    assert dt.datetime.fromisoformat(override["expires_at"]) == START + dt.timedelta(hours=1)
    assert created.headers["Location"] == f"/api/overrides/{override['id']}"

    assert (await api("GET", "/api/overrides")).body == {"overrides": [override]}
    assert queue((await api("GET", "/api/queues")).body, "frontdesk")["state"] == "closed"
    assert queue((await api("GET", "/api/queues")).body, "billing")["state"] == "open"
    # The daemon is told at once: its next decision sees the queue closed.
    assert changes[-1].queue_directive("frontdesk", START).state == "closed"
    assert (await api("GET", "/api/status")).body["overrides_active"] == 1

    clock.advance(minutes=5)
    cancelled = await api("DELETE", f"/api/overrides/{override['id']}", {"author": "Dana", "reason": "meeting over"})
    assert (cancelled.status, cancelled.body) == (200, {"cancelled": override["id"]})
    assert (await api("GET", "/api/overrides")).body == {"overrides": []}
    assert queue((await api("GET", "/api/queues")).body, "frontdesk")["state"] == "open"
    assert changes[-1].queue_directive("frontdesk", clock.now).state == "open"

    again = await api("DELETE", f"/api/overrides/{override['id']}", {"author": "Dana", "reason": "twice"})
    assert again.status == 404 and override["id"] in again.body["error"]


async def test_an_override_can_be_cancelled_by_its_dashed_uuid(api: Api, clock: FakeClock) -> None:
    override = (await api("POST", "/api/overrides", CLOSE_FRONTDESK)).body
    clock.advance(seconds=1)
    answer = await api("DELETE", f"/api/overrides/{uuid.UUID(override['id'])}", {"author": "Dana", "reason": "done"})
    assert answer.status == 200
    assert (await api("GET", "/api/overrides")).body == {"overrides": []}


async def test_expired_overrides_disappear(api: Api, clock: FakeClock) -> None:
    await api("POST", "/api/overrides", {**CLOSE_FRONTDESK, "ttl_minutes": 30})
    await api("POST", "/api/overrides", {"kind": "after_hours", "author": "Dana", "reason": "snow day",
                                         "expires_at": (START + dt.timedelta(hours=2)).isoformat()})
    assert len((await api("GET", "/api/overrides")).body["overrides"]) == 2

    clock.advance(minutes=31)
    overrides = (await api("GET", "/api/overrides")).body["overrides"]
    assert [o["kind"] for o in overrides] == ["after_hours"]
    assert queue((await api("GET", "/api/queues")).body, "frontdesk")["state"] == "open"

    clock.advance(hours=2)
    assert (await api("GET", "/api/overrides")).body == {"overrides": []}
    gone = await api("DELETE", f"/api/overrides/{overrides[0]['id']}", {"author": "Dana", "reason": "late"})
    assert gone.status == 404


async def test_newest_override_wins_and_all_kinds_are_accepted(api: Api, clock: FakeClock) -> None:
    base = {"author": "Dana", "reason": "r", "ttl_minutes": 10}
    for body in [
        {"kind": "redirect_queue", "scope": "billing", "target": "voicemail"},
        {"kind": "redirect_intent", "scope": "prescription_refill", "target": "nurse_line"},
        {"kind": "after_hours"},  # scope defaults to "all"
        {"kind": "close_queue", "scope": "all"},
        {"kind": "open_queue", "scope": "frontdesk"},
        {"kind": "agent_presence", "scope": "PJSIP/agent2", "target": "logged_out"},
    ]:
        answer = await api("POST", "/api/overrides", {**base, **body})
        assert answer.status == 201, answer.body
        clock.advance(seconds=1)
    states = {q["queue"]: q["state"] for q in (await api("GET", "/api/queues")).body["queues"]}
    assert states == {"frontdesk": "open", "billing": "closed"}  # open_queue is newer than close all


def _body(**changes: Any) -> dict[str, Any]:
    body = dict(CLOSE_FRONTDESK)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


BAD_BODIES = [
    (b"not json", "not valid JSON"),
    (b"", "JSON object body is required"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (_body(colour="red"), "unknown field(s) colour"),
    (_body(author=...), "author is required"),
    (_body(reason="   "), "reason is required"),
    (_body(reason=42), "reason must be a string"),
    (_body(author="x" * 501), "longer than 500"),
    (_body(kind="nuke_queue"), "kind must be one of"),
    (_body(scope=...), "scope is required"),
    (_body(kind="redirect_queue"), "redirect_queue needs a target"),
    (_body(kind="after_hours", scope="frontdesk"), "scope must be 'all'"),
    (_body(kind="agent_presence", scope="PJSIP/agent1", target="asleep"), "agent_presence target must be"),
    (_body(ttl_minutes=...), "an expiry is required"),
    (_body(ttl_minutes=True), "ttl_minutes must be a number"),
    (_body(ttl_minutes="60"), "ttl_minutes must be a number"),
    (_body(ttl_minutes=0), "greater than 0"),
    (_body(ttl_minutes=7 * 24 * 60 + 1), "limit of 7 days"),
    (_body(expires_at=(START + dt.timedelta(hours=1)).isoformat()), "not both"),
    (_body(ttl_minutes=..., expires_at="tomorrow"), "not an ISO 8601"),
    (_body(ttl_minutes=..., expires_at="2026-03-02T18:00:00"), "UTC offset"),
    (_body(ttl_minutes=..., expires_at=(START - dt.timedelta(minutes=1)).isoformat()), "in the past"),
    (_body(ttl_minutes=..., expires_at=(START + dt.timedelta(days=8)).isoformat()), "limit of 7 days"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES, ids=[m for _, m in BAD_BODIES])
async def test_bad_override_bodies_get_a_400_that_says_why(
    api: Api, backend: InMemoryBackend, body: bytes | dict[str, Any], message: str
) -> None:
    answer = await (api("POST", "/api/overrides", raw=body) if isinstance(body, bytes)
                    else api("POST", "/api/overrides", body))
    assert answer.status == 400, answer.body
    assert message in answer.body["error"]
    assert backend.overrides_view() == []


UNKNOWN_NAMES = [
    (_body(scope="nonexistent"), "no queue 'nonexistent' (queues: frontdesk, billing)"),
    (_body(kind="redirect_queue", target="nowhere"), "no target 'nowhere' in the rules file (targets: "),
    (_body(kind="agent_presence", scope="PJSIP/nobody", target="paused"), "no agent 'PJSIP/nobody'"),
]


@pytest.mark.parametrize(("body", "message"), UNKNOWN_NAMES, ids=[m for _, m in UNKNOWN_NAMES])
async def test_overrides_naming_what_does_not_exist_get_a_422_that_lists_what_does(
    api: Api, backend: InMemoryBackend, body: dict[str, Any], message: str
) -> None:
    answer = await api("POST", "/api/overrides", body)
    assert answer.status == 422, answer.body
    assert message in answer.body["error"]
    assert backend.overrides_view() == []


@pytest.mark.parametrize(("body", "message"), [
    (None, "JSON object body is required"),
    ({"author": "Dana"}, "reason is required"),
    ({"reason": "done"}, "author is required"),
    ({"author": "Dana", "reason": "done", "force": True}, "unknown field(s) force"),
])
async def test_a_cancel_needs_an_author_and_a_reason(
    api: Api, backend: InMemoryBackend, body: dict[str, Any] | None, message: str
) -> None:
    override = (await api("POST", "/api/overrides", CLOSE_FRONTDESK)).body
    answer = await api("DELETE", f"/api/overrides/{override['id']}", body)
    assert answer.status == 400 and message in answer.body["error"]
    assert len(backend.overrides_view()) == 1


def agent(answer_body: dict[str, Any], endpoint: str) -> dict[str, Any]:
    return next(a for a in answer_body["agents"] if a["endpoint"] == endpoint)


async def test_a_presence_change_is_visible_in_agents_and_queues(api: Api, clock: FakeClock) -> None:
    before = await api("GET", "/api/agents")
    assert agent(before.body, "PJSIP/agent1")["presence"] == "logged_in"

    answer = await api("PUT", "/api/agents/PJSIP%2Fagent1/presence",
                       {"presence": "paused", "author": "Ann", "reason": "lunch", "ttl_minutes": 45})
    assert answer.status == 200
    assert answer.body["endpoint"] == "PJSIP/agent1" and answer.body["presence"] == "paused"

    after = agent((await api("GET", "/api/agents")).body, "PJSIP/agent1")
    assert after["presence"] == "paused" and after["presence_override"] is True
    assert agent((await api("GET", "/api/agents")).body, "PJSIP/agent2")["presence"] == "logged_in"
    agents = queue((await api("GET", "/api/queues")).body, "frontdesk")["agents"]
    assert (agents["available"], agents["paused"]) == (1, 1)
    # It is an override like the others: author, reason, expiry, listed.
    listed = (await api("GET", "/api/overrides")).body["overrides"]
    assert [(o["kind"], o["scope"], o["target"], o["author"]) for o in listed] == [
        ("agent_presence", "PJSIP/agent1", "paused", "Ann")]

    clock.advance(minutes=46)
    assert agent((await api("GET", "/api/agents")).body, "PJSIP/agent1")["presence"] == "logged_in"


async def test_a_presence_change_without_expiry_lasts_a_shift(api: Api) -> None:
    answer = await api("PUT", "/api/agents/PJSIP/agent2/presence",  # unencoded slash works too
                       {"presence": "logged_out", "author": "Bob", "reason": "home"})
    assert answer.status == 200
    (listed,) = (await api("GET", "/api/overrides")).body["overrides"]
    assert dt.datetime.fromisoformat(listed["expires_at"]) == START + dt.timedelta(hours=12)


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/agents/PJSIP%2Fnobody/presence", {"presence": "paused", "author": "a", "reason": "r"}, 404, "no agent"),
    ("/api/agents/PJSIP%2Fagent1/presence", {"presence": "asleep", "author": "a", "reason": "r"}, 400,
     "presence must be one of"),
    ("/api/agents/PJSIP%2Fagent1/presence", {"presence": "paused", "reason": "r"}, 400, "author is required"),
    ("/api/agents/PJSIP%2Fagent1/presence", {"presence": "paused", "author": "a", "reason": "r",
                                             "ttl_minutes": 20_000}, 400, "limit of 7 days"),
])
async def test_bad_presence_requests(api: Api, path: str, body: dict[str, Any], status: int, message: str) -> None:
    answer = await api("PUT", path, body)
    assert answer.status == status and message in answer.body["error"]


async def test_rules_reload_reports_success_rejection_and_absence(api: Api, backend: InMemoryBackend) -> None:
    assert (await api("POST", "/api/rules/reload")).status == 503  # no rules file configured

    results = iter([
        {"ok": True, "errors": [], "version": "v2"},
        {"ok": False, "errors": ["rules.yaml:3:1: unknown target"], "version": "v2"},
    ])
    backend.rules_reload = lambda: next(results)
    ok = await api("POST", "/api/rules/reload")
    assert (ok.status, ok.body["version"]) == (200, "v2")
    rejected = await api("POST", "/api/rules/reload")
    assert rejected.status == 422
    assert rejected.body["errors"] == ["rules.yaml:3:1: unknown target"]
    assert "unchanged" in rejected.body["error"]
    assert (await api("GET", "/api/status")).body["rules"]["ok"] is False


async def test_calls_view_is_served_as_the_backend_gives_it(api: Api, backend: InMemoryBackend) -> None:
    backend.calls = [{"caller_id": "c1", "queue": "frontdesk", "state": "waiting", "position": 1}]
    answer = await api("GET", "/api/calls")
    assert answer.body == {"calls": backend.calls}
    assert (await api("GET", "/api/status")).body["active_calls"] == 1
