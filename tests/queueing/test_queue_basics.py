"""A caller routed to a daemon-owned queue: holding bridge with music, an agent rung, both joined."""

from __future__ import annotations

from pbx_router.testing import AgentBehaviour

from queueing.conftest import QueueBed, agents_for


async def test_caller_waits_with_music_then_talks_to_the_agent_who_answers(bed: QueueBed) -> None:
    await bed.start({"q1": {"moh_class": "clinic"}}, agents_for(1),
                    {"PJSIP/agent1": AgentBehaviour.answer_after(0.3)})
    caller = await bed.call()
    await bed.queued(caller)
    assert bed.pbx.bridges["queue-q1"].bridge_type == "holding"
    assert bed.pbx.bridges["queue-q1"].moh_class == "clinic"
    await bed.answered(caller)
    assert bed.agent_of(caller) == "PJSIP/agent1"
    assert caller.channel_id not in bed.holding()
    snap = bed.snapshot()
    assert (snap["answered"], snap["waiting"], snap["answered_within_sl"]) == (1, 0, 1)
    await caller.hangup()
    await bed.settled()
    # The holding bridge stays (fixed id, reused by the next caller and by a restarted daemon).
    assert "queue-q1" in bed.pbx.bridges
