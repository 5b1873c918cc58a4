"""The dispatcher as the call layer sees it: events in, explicit actions out."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pbx_router.queues.actions import (
    Announce,
    Bridge,
    CancelRings,
    Overflow,
    Queued,
    RingAgents,
)
from pbx_router.queues.overrides import Override, OverrideSet, at
from pbx_router.queues.policy import Dispatcher

from queue_sim import T0, AgentScript, CallerScript, Sim, ep, section


def rings(actions: list) -> list[tuple[str, tuple[str, ...]]]:
    return [(a.caller_id, a.agents) for a in actions if isinstance(a, RingAgents)]


def of(kind: type, actions: list) -> list:
    return [a for a in actions if isinstance(a, kind)]


# -- strategies ---------------------------------------------------------------------------------


def test_ring_all_rings_every_free_agent_and_the_first_answer_wins() -> None:
    d = Dispatcher(section(strategy="ring_all", agents=3), T0)
    d.set_presence(ep(3), "paused", T0)
    first = d.join("c1", "q", T0)
    assert isinstance(first[0], Queued) and first[0].bridge_id == "queue-q"
    assert rings(first) == [("c1", (ep(1), ep(2)))]
    answered = d.agent_answered("c1", ep(2), T0 + 3)
    assert answered[0] == Bridge("c1", ep(2), "q", 3.0)
    assert answered[1] == CancelRings("c1", (ep(1),), "answered_elsewhere", except_agent=ep(2))


def test_ring_all_adds_an_agent_who_becomes_free_while_the_others_ring() -> None:
    d = Dispatcher(section(strategy="ring_all", agents=2), T0)
    d.set_presence(ep(2), "paused", T0)
    assert rings(d.join("c1", "q", T0)) == [("c1", (ep(1),))]
    assert rings(d.set_presence(ep(2), "logged_in", T0 + 1)) == [("c1", (ep(2),))]


def test_longest_idle_picks_the_agent_whose_last_call_ended_longest_ago() -> None:
    sim = Sim.of(section(strategy="longest_idle", agents=3), {ep(i): AgentScript(answer_after=1, talk_s=10 * i) for i in (1, 2, 3)})
    for n, t in enumerate((0, 0, 0, 100)):
        sim.caller(f"c{n}", CallerScript(arrive_at=t))
    sim.run(200)
    # a1..a3 took c0..c2; their calls ended at ~11, ~21, ~31: a1 has been idle longest.
    assert sim.answered_by["c3"] == ep(1)


def test_round_robin_goes_round_the_agents_in_yaml_order() -> None:
    sim = Sim.of(section(strategy="round_robin", agents=3), {ep(i): AgentScript(answer_after=1, talk_s=5) for i in (1, 2, 3)})
    for n in range(5):
        sim.caller(f"c{n}", CallerScript(arrive_at=20 * n))
    sim.run(200)
    assert [sim.answered_by[f"c{n}"] for n in range(5)] == [ep(1), ep(2), ep(3), ep(1), ep(2)]


def test_fewest_calls_prefers_the_agent_who_took_fewest_calls_of_this_queue() -> None:
    d = Dispatcher(section(strategy="fewest_calls", agents=2), T0)
    for n in range(2):  # a1 takes two calls while a2 is paused
        d.set_presence(ep(2), "paused", T0)
        d.join(f"c{n}", "q", T0 + 10 * n)
        d.agent_answered(f"c{n}", ep(1), T0 + 10 * n + 1)
        d.call_ended(f"c{n}", T0 + 10 * n + 2)
    d.set_presence(ep(2), "logged_in", T0 + 30)
    assert rings(d.join("c9", "q", T0 + 31)) == [("c9", (ep(2),))]


def test_skills_with_priority_needs_the_skill_then_prefers_priority_then_level() -> None:
    sec = section(
        strategy="skills",
        required_skills={"triage": 1},
        agents={
            "junior": {"queues": ["q"], "skills": {"triage": 1, "korean": 3}, "priority": 1},
            "senior": {"queues": ["q"], "skills": {"triage": 3}, "priority": 0},
            "clerk": {"queues": ["q"], "skills": {}},
        },
    )
    d = Dispatcher(sec, T0)
    assert rings(d.join("c1", "q", T0)) == [("c1", ("PJSIP/senior",))]
    # A Korean-speaking caller can only be served by the junior nurse.
    assert rings(d.join("c2", "q", T0, skills={"korean": 2})) == [("c2", ("PJSIP/junior",))]
    # The clerk lacks triage: nobody left to ring for a third caller.
    assert rings(d.join("c3", "q", T0)) == []


# -- ring timeout, failures, retries ------------------------------------------------------------


def test_ring_timeout_cancels_the_leg_and_rings_the_next_agent() -> None:
    d = Dispatcher(section(strategy="round_robin", ring_timeout_s=10, agents=2), T0)
    assert rings(d.join("c1", "q", T0)) == [("c1", (ep(1),))]
    assert d.next_deadline() == T0 + 10
    assert d.step(T0 + 9.9) == []
    out = d.step(T0 + 10)
    assert out[0] == CancelRings("c1", (ep(1),), "ring_timeout")
    assert rings(out) == [("c1", (ep(2),))]
    assert d.snapshot("q", T0 + 10).counters.unanswered_rings == 1


def test_after_everyone_was_tried_the_caller_waits_retry_s_then_rings_again() -> None:
    d = Dispatcher(section(strategy="ring_all", ring_timeout_s=10, retry_s=5, agents=2), T0)
    d.join("c1", "q", T0)
    out = d.step(T0 + 10)
    assert of(CancelRings, out) == [CancelRings("c1", (ep(1), ep(2)), "ring_timeout")]
    assert rings(out) == []
    assert d.next_deadline() == T0 + 15
    assert rings(d.step(T0 + 15)) == [("c1", (ep(1), ep(2)))]


def test_a_failed_leg_is_skipped_counted_and_the_phone_rested_for_retry_s() -> None:
    d = Dispatcher(section(strategy="longest_idle", retry_s=30, agents=2), T0)
    assert rings(d.join("c1", "q", T0)) == [("c1", (ep(1),))]
    out = d.agent_leg_failed("c1", ep(1), T0 + 0.2, "busy")
    assert rings(out) == [("c1", (ep(2),))]
    snap = d.snapshot("q", T0 + 1)
    assert snap.counters.failed_legs == 1
    assert snap.agents.unavailable == 1  # a1 rests
    d.agent_leg_failed("c1", ep(2), T0 + 1, "unreachable")
    assert d.step(T0 + 29) == []  # nobody to ring: both phones rest
    # Everyone was tried: a new round starts retry_s after the last leg ended.
    assert d.step(T0 + 30.2) == []
    assert d.next_deadline() == T0 + 31
    assert rings(d.step(T0 + 31)) == [("c1", (ep(1),))]
    assert d.snapshot("q", T0 + 31).counters.failed_legs == 2


def test_a_late_answer_after_the_caller_left_gets_that_leg_hung_up() -> None:
    d = Dispatcher(section(agents=1), T0)
    d.join("c1", "q", T0)
    assert d.caller_left("c1", T0 + 2) == [CancelRings("c1", (ep(1),), "caller_left")]
    assert d.agent_answered("c1", ep(1), T0 + 2.01) == [CancelRings("c1", (ep(1),), "late_answer")]
    assert d.ignored_events == 1


# -- order, overflow, abandonment ---------------------------------------------------------------


def test_urgent_callers_go_first_then_arrival_order() -> None:
    d = Dispatcher(section(agents=1), T0)
    d.set_presence(ep(1), "paused", T0)
    d.join("routine-early", "q", T0, priority=5)
    d.join("routine-late", "q", T0 + 1, priority=5)
    queued = of(Queued, d.join("urgent", "q", T0 + 2, priority=1))
    assert queued[0].position == 1
    assert [c.caller_id for c in d.waiting("q")] == ["urgent", "routine-early", "routine-late"]
    assert rings(d.set_presence(ep(1), "logged_in", T0 + 3)) == [("urgent", (ep(1),))]


def test_an_agent_in_two_queues_serves_the_more_urgent_caller_first() -> None:
    sec = section(queues={"a": {"announce_every_s": None}, "b": {"announce_every_s": None}},
                  agents={"x": {"queues": ["a", "b"], "presence": "paused"}})
    d = Dispatcher(sec, T0)
    d.join("a-routine", "a", T0, priority=5)
    d.join("b-urgent", "b", T0 + 5, priority=2)
    assert rings(d.set_presence("PJSIP/x", "logged_in", T0 + 6)) == [("b-urgent", ("PJSIP/x",))]


def test_overflow_on_time_sends_the_caller_to_the_configured_target_keeping_its_place() -> None:
    sec = section(queues={
        "q": {"max_wait_s": 60, "overflow_on_time": {"queue": "r"}, "announce_every_s": None},
        "r": {"announce_every_s": None},
    }, agents={"x": {"queues": ["q"], "presence": "logged_out"}})
    d = Dispatcher(sec, T0)
    d.join("c1", "q", T0, priority=3)
    assert d.next_deadline() == T0 + 60
    (over,) = d.step(T0 + 60)
    assert isinstance(over, Overflow) and over.reason == "max_wait"
    assert over.target is not None and over.target.queue == "r" and over.joined_at == T0 and over.priority == 3
    d.join(over.caller_id, "r", T0 + 60, priority=over.priority, joined_at=over.joined_at)
    assert [c.joined_at for c in d.waiting("r")] == [T0]
    assert d.snapshot("q", T0 + 60).to_dict()["overflowed_by_reason"] == {"max_wait": 1}


def test_overflow_on_length_refuses_the_caller_at_the_door() -> None:
    d = Dispatcher(section(max_len=2, overflow_on_length={"voicemail": {"context": "vm", "extension": 100}}, agents=0), T0)
    d.join("c1", "q", T0)
    d.join("c2", "q", T0)
    (over,) = d.join("c3", "q", T0)
    assert isinstance(over, Overflow) and over.reason == "max_len"
    assert over.target is not None and over.target.voicemail is not None and over.target.voicemail.extension == "100"
    assert len(d.waiting("q")) == 2
    d.caller_left("c1", T0 + 1)
    assert of(Queued, d.join("c4", "q", T0 + 1))


def test_abandonment_cancels_ringing_agents_and_is_counted() -> None:
    d = Dispatcher(section(strategy="ring_all", agents=2), T0)
    d.join("c1", "q", T0)
    assert d.caller_left("c1", T0 + 4) == [CancelRings("c1", (ep(1), ep(2)), "caller_left")]
    snap = d.snapshot("q", T0 + 4)
    assert (snap.counters.abandoned, snap.waiting, snap.agents.available) == (1, 0, 2)
    assert d.caller_left("c1", T0 + 5) == []  # twice is harmless


def test_leave_when_empty_overflows_when_the_last_agent_logs_out() -> None:
    d = Dispatcher(section(leave_when_empty=True, overflow_on_time={"target": "callback_nurse"}, agents=1), T0)
    d.set_device_state(ep(1), "INUSE", T0)
    assert of(Queued, d.join("c1", "q", T0))  # busy on another call still staffs the queue
    (over,) = d.set_presence(ep(1), "logged_out", T0 + 5)
    assert isinstance(over, Overflow) and over.reason == "no_agents" and over.target is not None
    (refused,) = d.join("c2", "q", T0 + 6)
    assert isinstance(refused, Overflow) and refused.reason == "no_agents"


# -- agents: wrap-up, presence, device state ------------------------------------------------------


def test_wrap_up_keeps_the_agent_from_ringing_until_it_is_over() -> None:
    d = Dispatcher(section(wrapup_s=20, agents=1), T0)
    d.join("c1", "q", T0)
    d.agent_answered("c1", ep(1), T0 + 1)
    d.join("c2", "q", T0 + 2)
    assert d.call_ended("c1", T0 + 60) == []
    assert d.snapshot("q", T0 + 61).agents.busy == 1
    assert d.next_deadline() == T0 + 80
    assert rings(d.step(T0 + 80)) == [("c2", (ep(1),))]


def test_pausing_a_ringing_agent_cancels_the_leg_and_rings_someone_else() -> None:
    d = Dispatcher(section(strategy="round_robin", agents=2), T0)
    d.join("c1", "q", T0)
    out = d.set_presence(ep(1), "paused", T0 + 1)
    assert out[0] == CancelRings("c1", (ep(1),), "agent_paused")
    assert rings(out) == [("c1", (ep(2),))]
    assert d.set_presence(ep(1), "dancing", T0 + 2) == [] and d.ignored_events == 1


def test_device_state_in_use_elsewhere_or_unreachable_makes_an_agent_unavailable() -> None:
    d = Dispatcher(section(agents=2), T0)
    d.set_device_state(ep(1), "INUSE", T0)
    d.set_device_state(ep(2), "UNAVAILABLE", T0)
    snap = d.snapshot("q", T0)
    assert (snap.agents.available, snap.agents.busy, snap.agents.unavailable) == (0, 1, 1)
    assert rings(d.join("c1", "q", T0)) == []
    assert rings(d.set_device_state(ep(2), "NOT_INUSE", T0 + 1)) == [("c1", (ep(2),))]
    assert d.set_device_state("PJSIP/ghost", "NOT_INUSE", T0 + 1) == []


# -- announcements ------------------------------------------------------------------------------


def test_waiting_callers_hear_position_and_wait_now_and_every_announce_every_s() -> None:
    d = Dispatcher(section(announce_every_s=30, default_handle_s=120, agents=1), T0)
    d.set_device_state(ep(1), "INUSE", T0)
    d.join("c1", "q", T0)
    (second,) = of(Announce, d.join("c2", "q", T0 + 1))
    assert second.position == 2 and second.media[:3] == ("sound:queue-thereare", "number:2", "sound:queue-callswaiting")
    assert second.expected_wait_s == pytest.approx(240.0)  # two callers ahead of a free slot, one agent, 120 s each
    assert d.step(T0 + 29) == []
    again = of(Announce, d.step(T0 + 30))
    assert [a.caller_id for a in again] == ["c1"]
    assert again[0].media[0] == "sound:queue-youarenext"


# -- overrides ----------------------------------------------------------------------------------


def override(kind: str, scope: str, target: str | None, start: float, minutes: int = 30) -> Override:
    return Override(kind, scope, "maria", "provider out sick", at(start), at(start) + dt.timedelta(minutes=minutes), target)  # type: ignore[arg-type]


def test_closing_a_queue_mid_stream_moves_its_callers_within_the_step_and_refuses_new_ones() -> None:
    d = Dispatcher(section(strategy="ring_all", max_wait_s=900, overflow_on_time={"target": "after_hours"}, agents=1), T0)
    d.join("c1", "q", T0)
    d.join("c2", "q", T0 + 1)
    out = d.set_overrides(OverrideSet().add(override("close_queue", "q", None, T0 + 5)), T0 + 5)
    assert out[0] == CancelRings("c1", (ep(1),), "closed")
    overflows = of(Overflow, out)
    assert [(o.caller_id, o.reason) for o in overflows] == [("c1", "closed"), ("c2", "closed")]
    assert all(o.target is not None and o.target.target == "after_hours" for o in overflows)
    (refused,) = d.join("c3", "q", T0 + 6)
    assert isinstance(refused, Overflow) and refused.reason == "closed"
    assert d.snapshot("q", T0 + 6).state == "closed"
    # 30 minutes later the override has expired on its own: the queue admits callers again.
    assert d.next_deadline() == T0 + 5 + 1800
    assert of(Queued, d.join("c4", "q", T0 + 5 + 1800))


def test_redirecting_a_queue_sends_callers_to_the_staff_target() -> None:
    d = Dispatcher(section(agents=0), T0)
    d.join("c1", "q", T0)
    (over,) = d.set_overrides(OverrideSet().add(override("redirect_queue", "q", "frontdesk", T0 + 1)), T0 + 1)
    assert isinstance(over, Overflow) and over.reason == "redirected"
    assert over.target is not None and over.target.target == "frontdesk"


def test_an_agent_presence_override_pauses_the_agent_until_it_expires() -> None:
    d = Dispatcher(section(agents=1), T0)
    d.set_overrides(OverrideSet().add(override("agent_presence", ep(1), "paused", T0, minutes=10)), T0)
    assert rings(d.join("c1", "q", T0 + 1)) == []
    assert d.snapshot("q", T0 + 1).agents.paused == 1
    assert d.next_deadline() == T0 + 600
    assert rings(d.step(T0 + 600)) == [("c1", (ep(1),))]


# -- stats and restart --------------------------------------------------------------------------


def test_stats_count_answers_within_the_service_level_and_feed_the_rules() -> None:
    d = Dispatcher(section(service_level_s=20, agents=2), T0)
    d.join("fast", "q", T0)
    d.join("slow", "q", T0)
    d.agent_answered("fast", ep(1), T0 + 5)
    d.agent_answered("slow", ep(2), T0 + 25)
    d.join("waiting", "q", T0 + 30)
    snap = d.snapshot("q", T0 + 40)
    view = snap.to_dict()
    assert (view["answered"], view["answered_within_sl"], view["service_level_pct"]) == (2, 1, 50.0)
    assert view["waiting"] == 1 and view["longest_wait_s"] == 10.0 and view["agents"]["busy"] == 2
    facts = d.facts(T0 + 40)["q"]
    assert (facts.callers_waiting, facts.agents_available, facts.longest_wait_s) == (1, 0, 10.0)
    calls = {c["caller_id"]: c for c in d.calls_view(T0 + 40)}
    assert calls["waiting"]["state"] == "waiting" and calls["fast"]["state"] == "talking"
    json.dumps(view), json.dumps(d.calls_view(T0 + 40)), json.dumps(d.agents_view(T0 + 40))


def test_a_restarted_daemon_gets_its_callers_back_in_order_and_serves_them() -> None:
    d = Dispatcher(section(strategy="longest_idle", agents=2), T0)
    d.set_presence(ep(2), "paused", T0)
    d.join("talking", "q", T0)
    d.agent_answered("talking", ep(1), T0 + 1)
    for n, prio in enumerate((5, 5, 2)):
        d.join(f"w{n}", "q", T0 + 2 + n, priority=prio)
    stored = json.loads(json.dumps(d.to_dict()))

    fresh = Dispatcher(section(strategy="longest_idle", agents=2), T0 + 100)
    assert fresh.restore(stored, T0 + 100) == []
    assert [c.caller_id for c in fresh.waiting("q")] == ["w2", "w0", "w1"]
    assert fresh.talking() == {"talking": ep(1)}
    out = fresh.set_presence(ep(2), "logged_in", T0 + 101)  # staff presence restored as paused
    assert rings(out) == [("w2", (ep(2),))]
    assert rings(fresh.call_ended("talking", T0 + 102)) == [("w0", (ep(1),))]
    assert fresh.snapshot("q", T0 + 102).counters.offered == 4


def test_membership_can_be_rebuilt_from_the_holding_bridge_and_the_database() -> None:
    d = Dispatcher(section(agents=1), T0)
    d.set_presence(ep(1), "paused", T0)
    _actions, problems = d.restore_callers("q", [("b", 5, T0 + 2), ("a", 5, T0 + 1), ("u", 1, T0 + 3), ("a", 5, T0)], T0 + 10)
    assert [c.caller_id for c in d.waiting("q")] == ["u", "a", "b"]
    assert problems == ["caller a listed twice: kept the first"]
    assert d.restore_callers("gone", [("x", 5, T0)], T0)[1]


def test_a_damaged_snapshot_restores_what_it_can_and_says_what_it_dropped() -> None:
    d = Dispatcher(section(agents=1), T0)
    with pytest.raises(ValueError, match="snapshot"):
        d.restore({"version": 99}, T0)
    problems = d.restore({
        "version": 1,
        "queues": {
            "q": {"callers": [{"caller_id": "ok", "priority": 5, "joined_at": T0}, {"caller_id": "bad"}], "counters": {"offered": -1}},
            "removed": {"callers": []},
        },
        "agents": {"PJSIP/ghost": {}, ep(1): {"presence": "paused", "idle_since": "never"}},
    }, T0)
    assert [c.caller_id for c in d.waiting("q")] == ["ok"]
    assert len(problems) == 5, problems


def test_unknown_queue_hands_the_caller_back_to_routing() -> None:
    d = Dispatcher(section(agents=1), T0)
    (over,) = d.join("c1", "nope", T0)
    assert isinstance(over, Overflow) and over.reason == "unknown_queue" and over.target is None
    assert d.join("c2", "q", T0)
    assert d.join("c2", "q", T0) == []  # a repeated join keeps the caller's place
