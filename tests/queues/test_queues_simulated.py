"""Whole-queue runs with a fake clock: scripted agents and callers, every caller accounted for."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_router.queues.overrides import Override, OverrideSet, at

from queue_sim import T0, AgentScript, CallerScript, Sim, ep, section

STRATEGIES = ["ring_all", "longest_idle", "round_robin", "fewest_calls", "skills"]


def test_100_callers_10_agents_every_caller_ends_answered_overflowed_or_abandoned() -> None:
    rng = random.Random(5)
    sec = section(
        strategy="longest_idle", ring_timeout_s=12, retry_s=2, wrapup_s=5,
        max_wait_s=240, overflow_on_time={"callback": {}}, max_len=40, overflow_on_length={"message": "sound:busy"},
        announce_every_s=45, agents=10,
    )
    scripts = {ep(i): AgentScript(answer_after=rng.uniform(1, 6), talk_s=rng.uniform(20, 120)) for i in range(1, 11)}
    scripts[ep(8)] = AgentScript(answer_after=None)  # never answers
    scripts[ep(9)] = AgentScript(fail="busy")  # always busy
    scripts[ep(10)] = AgentScript(answer_after=2, talk_s=3)  # hangs up mid-call
    sim = Sim.of(sec, scripts)
    for n in range(100):
        patience = rng.choice([None, None, None, rng.uniform(5, 200)])
        sim.caller(f"c{n:03}", CallerScript(arrive_at=rng.uniform(0, 300), priority=rng.choice([1, 5, 5, 5]), patience_s=patience))
    sim.run(5_000)

    assert len(sim.outcome) == 100
    snap = sim.dispatcher.snapshot("q", sim.now)
    c = snap.counters
    assert c.offered == 100 == c.answered + c.abandoned + c.overflowed_total + snap.waiting
    assert snap.waiting == 0 and sim.live_legs == {} and sim.talking == {}
    outcomes = sim.outcomes()
    assert (outcomes["answered"], outcomes["abandoned"], outcomes["overflowed"]) == (c.answered, c.abandoned, c.overflowed_total)
    assert c.answered > 50  # seven working agents do most of the work
    assert c.failed_legs > 0 and c.unanswered_rings > 0  # a8 and a9 were tried, skipped and counted
    assert ep(8) not in sim.answered_by.values() and ep(9) not in sim.answered_by.values()
    assert sim.announcements and all(a.media[-1] == "sound:queue-thankyou" for a in sim.announcements)
    # Once the last wrap-up is over, every agent but the always-busy one is free again.
    later = sim.now + max(q.config.wrapup_s for q in sim.dispatcher.queues.values()) + 1
    assert sim.dispatcher.ringing() == {} and all(a.status(later) == "available" for a in sim.dispatcher.pool.all()
                                                     if a.endpoint not in (ep(9),))


def test_urgent_callers_are_answered_before_routine_ones_that_arrived_earlier() -> None:
    sim = Sim.of(section(strategy="round_robin", agents=1), {ep(1): AgentScript(answer_after=1, talk_s=60)})
    sim.caller("first", CallerScript(arrive_at=0))
    for n in range(3):
        sim.caller(f"routine{n}", CallerScript(arrive_at=1 + n))
    sim.caller("urgent", CallerScript(arrive_at=10, priority=1))
    sim.run(1_000)
    order = [b.caller_id for b in sim.bridges]
    assert order == ["first", "urgent", "routine0", "routine1", "routine2"]


# -- properties ---------------------------------------------------------------------------------

agent_script = st.builds(
    AgentScript,
    answer_after=st.one_of(st.none(), st.floats(0.1, 30)),
    talk_s=st.floats(1, 120),
    fail=st.sampled_from([None, None, None, "busy", "unreachable"]),
)
caller_script = st.builds(
    CallerScript,
    arrive_at=st.floats(0, 200),
    priority=st.integers(1, 5),
    patience_s=st.one_of(st.none(), st.floats(1, 300)),
    skills=st.sampled_from([{}, {}, {"ko": 1}]),
)
staff_event = st.tuples(
    st.floats(0, 300),
    st.sampled_from(["set_presence", "set_device_state"]),
    st.integers(1, 4),
    st.sampled_from(["logged_in", "paused", "logged_out", "NOT_INUSE", "INUSE", "UNAVAILABLE", "bogus"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(STRATEGIES),
    agents=st.lists(agent_script, min_size=1, max_size=4),
    callers=st.lists(caller_script, min_size=1, max_size=12),
    staff=st.lists(staff_event, max_size=8),
    retry=st.sampled_from([0.0, 3.0]),
    close_at=st.one_of(st.none(), st.floats(0, 300)),
)
def test_any_event_sequence_keeps_agents_single_rung_and_loses_no_caller(
    strategy: str, agents: list[AgentScript], callers: list[CallerScript],
    staff: list[tuple[float, str, int, str]], retry: float, close_at: float | None,
) -> None:
    agent_cfg = {f"a{i}": {"queues": ["q"], "skills": {"ko": i % 2}} for i in range(1, len(agents) + 1)}
    sec = section(
        strategy=strategy, ring_timeout_s=8, retry_s=retry, wrapup_s=2, max_wait_s=400,
        overflow_on_time={"callback": {}}, max_len=8, overflow_on_length={"message": "sound:busy"},
        announce_every_s=30, agents=agent_cfg,
    )
    sim = Sim.of(sec, {ep(i): s for i, s in enumerate(agents, 1)})
    for n, c in enumerate(callers):
        sim.caller(f"c{n}", c)
    for t, method, agent, value in staff:
        if agent <= len(agents):
            sim.at(T0 + t, "call", method, (ep(agent), value))
    if close_at is not None:
        closing = Override("close_queue", "q", "maria", "closing early", at(T0 + close_at), at(T0 + close_at + 60))
        sim.at(T0 + close_at, "call", "set_overrides", (OverrideSet().add(closing),))
    sim.run(3_000)  # Sim.perform checks the invariants after every batch of actions

    # Staff may have logged everyone out; nobody waits beyond max_wait, so the run drains.
    assert len(sim.outcome) == len(callers)
    snap = sim.dispatcher.snapshot("q", sim.now)
    c = snap.counters
    assert c.offered == len(callers) == c.answered + c.abandoned + c.overflowed_total + snap.waiting
    assert snap.waiting == 0 and sim.live_legs == {}
    for b in sim.bridges:  # an agent answered for a caller it was actually ringing for
        assert b.waited_s >= 0
