"""Agents on the wire: strategies, ring timeout then the next agent, failed legs skipped and
counted, the caller leaving while agents ring, and an agent leaving mid-call (then wrap-up)."""

from __future__ import annotations

import pytest

from pbx_router.testing import AgentBehaviour

from helpers import eventually
from queueing.conftest import QueueBed, agents_for

NEVER = AgentBehaviour.never_answer(ring=True)


async def test_ring_all_rings_every_free_agent_and_the_first_answer_wins(bed: QueueBed) -> None:
    behaviours = {"PJSIP/agent1": NEVER, "PJSIP/agent2": AgentBehaviour.answer_after(0.4), "PJSIP/agent3": NEVER}
    await bed.start({"q1": {"strategy": "ring_all", "ring_timeout_s": 3}}, agents_for(3), behaviours)
    caller = await bed.call()
    await eventually(lambda: all(bed.ringing(f"PJSIP/agent{i}") for i in (1, 2, 3)), what="all three ringing")
    await bed.answered(caller)
    assert bed.agent_of(caller) == "PJSIP/agent2"
    # The other legs were cancelled the moment agent2 answered.
    await eventually(lambda: not bed.ringing("PJSIP/agent1") and not bed.ringing("PJSIP/agent3"),
                     what="other legs cancelled")
    await caller.hangup()
    await bed.settled()


@pytest.mark.parametrize(
    ("strategy", "extra", "first"),
    [
        # agent3 is listed last but has never been called since... all equal: YAML order decides.
        ("longest_idle", {}, "PJSIP/agent1"),
        ("round_robin", {}, "PJSIP/agent1"),
        ("fewest_calls", {}, "PJSIP/agent1"),
        # skills: only agent3 has the required skill level.
        ("skills", {"required_skills": {"triage": 2}}, "PJSIP/agent3"),
    ],
)
async def test_one_at_a_time_strategies_ring_the_agent_they_choose(
    bed: QueueBed, strategy: str, extra: dict[str, object], first: str
) -> None:
    agents = agents_for(3)
    agents["agent3"]["skills"] = {"triage": 3}
    agents["agent2"]["skills"] = {"triage": 1}
    await bed.start({"q1": {"strategy": strategy, **extra}}, agents,
                    {f"PJSIP/agent{i}": AgentBehaviour.answer_after(0.2) for i in (1, 2, 3)})
    caller = await bed.call()
    await bed.answered(caller)
    assert bed.agent_of(caller) == first
    # Exactly one agent was rung for this caller.
    rung = [e for e in ("PJSIP/agent1", "PJSIP/agent2", "PJSIP/agent3") if bed.pbx.endpoint(e).channels]
    assert rung == [first]
    await caller.hangup()
    await bed.settled()


async def test_round_robin_and_fewest_calls_spread_consecutive_callers(bed: QueueBed) -> None:
    await bed.start({"q1": {"strategy": "round_robin"}, "q2": {"strategy": "fewest_calls"}},
                    agents_for(2, ["q1", "q2"]))
    served: list[str | None] = []
    for key in ("1", "1", "3", "3"):
        caller = await bed.call(key)
        await bed.answered(caller)
        served.append(bed.agent_of(caller))
        await caller.hangup()
        await bed.settled()
    # round robin: agent1 then agent2; fewest calls (per queue): agent1 then agent2.
    assert served == ["PJSIP/agent1", "PJSIP/agent2", "PJSIP/agent1", "PJSIP/agent2"]


async def test_longest_idle_prefers_the_agent_whose_last_call_ended_longest_ago(bed: QueueBed) -> None:
    await bed.start({"q1": {"strategy": "longest_idle"}}, agents_for(2))
    first = await bed.call()
    await bed.answered(first)
    assert bed.agent_of(first) == "PJSIP/agent1"
    await first.hangup()
    await bed.settled()
    second = await bed.call()
    await bed.answered(second)
    assert bed.agent_of(second) == "PJSIP/agent2"  # agent1 just finished a call
    await second.hangup()
    await bed.settled()


async def test_ring_timeout_moves_on_to_the_next_agent(bed: QueueBed) -> None:
    await bed.start({"q1": {"strategy": "longest_idle", "ring_timeout_s": 0.5}}, agents_for(2),
                    {"PJSIP/agent1": NEVER, "PJSIP/agent2": AgentBehaviour.answer_after(0.1)})
    caller = await bed.call()
    await bed.answered(caller)
    assert bed.agent_of(caller) == "PJSIP/agent2"
    assert not bed.ringing("PJSIP/agent1")
    assert bed.snapshot()["unanswered_rings"] == 1
    await caller.hangup()
    await bed.settled()


@pytest.mark.parametrize("failure", [AgentBehaviour.busy(), AgentBehaviour.unreachable()], ids=["busy", "unreachable"])
async def test_a_failed_agent_leg_is_skipped_and_counted(bed: QueueBed, failure: AgentBehaviour) -> None:
    await bed.start({"q1": {"strategy": "round_robin", "retry_s": 5}}, agents_for(2),
                    {"PJSIP/agent1": failure, "PJSIP/agent2": AgentBehaviour.answer_after(0.1)})
    caller = await bed.call()
    await bed.answered(caller)
    assert bed.agent_of(caller) == "PJSIP/agent2"
    assert bed.snapshot()["failed_legs"] == 1
    agent1 = next(a for a in bed.service.agents_view() if a["endpoint"] == "PJSIP/agent1")
    assert agent1["failed_legs"] == 1
    await caller.hangup()
    await bed.settled()


async def test_caller_hanging_up_while_agents_ring_cancels_the_legs(bed: QueueBed) -> None:
    await bed.start({"q1": {"strategy": "ring_all", "ring_timeout_s": 10}}, agents_for(2),
                    {"PJSIP/agent1": NEVER, "PJSIP/agent2": NEVER})
    caller = await bed.call()
    await eventually(lambda: bed.ringing("PJSIP/agent1") and bed.ringing("PJSIP/agent2"), what="agents ringing")
    await caller.hangup()
    await eventually(lambda: not bed.ringing("PJSIP/agent1") and not bed.ringing("PJSIP/agent2"),
                     what="legs cancelled")
    snap = bed.snapshot()
    assert (snap["abandoned"], snap["waiting"], snap["answered"]) == (1, 0, 0)
    await bed.settled()


async def test_agent_hanging_up_ends_the_call_and_wrapup_keeps_them_free_of_new_calls(bed: QueueBed) -> None:
    await bed.start({"q1": {"wrapup_s": 30}}, agents_for(1),
                    {"PJSIP/agent1": AgentBehaviour.answer_then_hangup(0.1, 0.3)})
    first = await bed.call()
    await first.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=10)
    second = await bed.call()
    await bed.queued(second)
    agent1 = bed.service.agents_view()[0]
    assert agent1["status"] == "wrapup"
    assert not bed.ringing("PJSIP/agent1")
    assert bed.snapshot()["waiting"] == 1
    await second.hangup()
    await bed.settled()
