"""Emergency callers in daemon-owned queues: they do not wait for agents who are not there, and
they stay emergency callers across a daemon restart (the place in line on the channel carries
the urgency)."""

from __future__ import annotations

from pbx_router.testing import AgentBehaviour

from helpers import eventually
from queueing.conftest import QueueBed, agents_for
from queueing.test_queue_restart import crash

VOICEMAIL = {"voicemail": {"context": "clinic-voicemail", "extension": "q1"}}
# Logged in and rung, but never picks up: callers wait (a paused agent would not staff the queue,
# and an emergency caller would not even join).
RINGS = {"PJSIP/agent1": AgentBehaviour.never_answer(ring=True)}


async def test_emergency_caller_leaves_a_queue_whose_agents_all_log_out_for_a_person(bed: QueueBed) -> None:
    # q1 keeps routine callers waiting when nobody is logged in (no leave_when_empty), and its
    # overflow is voicemail; the emergency chain is q1, then a person (the fallback context).
    await bed.start({"q1": {"max_wait_s": 600, "overflow_on_time": VOICEMAIL}}, agents_for(1), RINGS)
    routine, emergency = await bed.call("1"), await bed.call("9")
    await bed.queued(routine)
    await bed.queued(emergency)
    bed.service.set_presence("PJSIP/agent1", "logged_out")
    await emergency.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert emergency.continued_to == ("pbx-router-fallback", "s", 1)  # the chain's `person`
    assert routine.channel_id in bed.holding()  # the routine caller still waits, as configured
    await routine.hangup()
    await bed.settled()


async def test_an_adopted_emergency_caller_is_still_kept_with_a_person(bed: QueueBed) -> None:
    queues = {"q1": {"max_wait_s": 600, "overflow_on_time": VOICEMAIL}}
    agents = agents_for(1)
    await bed.start(queues, agents, RINGS)
    emergency = await bed.call("9")
    await bed.queued(emergency)
    await crash(bed.daemon)

    await bed.start(queues, agents)
    await eventually(lambda: [c["caller_id"] for c in bed.service.calls_view()] == [emergency.channel_id],
                     what="emergency caller back in line")
    # Nobody logged in any more: a routine caller would wait (then q1's voicemail); this one is
    # still known as an emergency and goes to a person.
    bed.service.set_presence("PJSIP/agent1", "logged_out")
    await emergency.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert emergency.continued_to == ("pbx-router-fallback", "s", 1)
    await bed.settled()
