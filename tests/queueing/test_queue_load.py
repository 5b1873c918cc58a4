"""100 callers x 10 agents: every caller ends answered, overflowed or abandoned, all accounted
for, and nothing of ours is left in Asterisk or in the daemon."""

from __future__ import annotations

import asyncio

from pbx_router.testing import AgentBehaviour

from helpers import eventually
from queueing.conftest import QueueBed, agents_for


async def test_100_callers_10_agents_all_accounted_for_nothing_leaked(bed: QueueBed) -> None:
    behaviours = {f"PJSIP/agent{i}": AgentBehaviour.answer_then_hangup(0.05, 0.15) for i in range(1, 11)}
    behaviours["PJSIP/agent9"] = AgentBehaviour.busy()
    behaviours["PJSIP/agent10"] = AgentBehaviour.never_answer(ring=True)
    await bed.start({"q1": {"strategy": "longest_idle", "ring_timeout_s": 0.5, "max_wait_s": 8, "max_len": 60,
                            "overflow_on_time": {"voicemail": {"context": "clinic-voicemail", "extension": "q1"}},
                            "overflow_on_length": {"voicemail": {"context": "clinic-voicemail", "extension": "q1"}}}},
                    agents_for(10), behaviours)
    callers = []
    for n in range(100):
        # Every seventh caller gives up after a while.
        callers.append(await bed.call(hangup_after=1.0 if n % 7 == 0 else None))
        await asyncio.sleep(0)  # let the daemon breathe between arrivals (not a wait for a condition)
    await eventually(lambda: all(not c.alive or c.fate == "continued" for c in callers), timeout=90,
                     what="every caller finished")
    snap = bed.snapshot()
    assert snap["offered"] == 100 == snap["answered"] + snap["abandoned"] + snap["overflowed"] + snap["waiting"]
    assert snap["waiting"] == 0 and snap["answered"] > 0 and snap["failed_legs"] > 0
    await bed.settled(timeout=20)
    assert not bed.service.members and bed.service.dispatcher.ringing() == {}
    assert bed.service.dispatcher.talking() == {}
