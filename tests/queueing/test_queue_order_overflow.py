"""Who is served first, and where callers go when a queue cannot keep them."""

from __future__ import annotations

import datetime as dt

from pbx_router.queues import Override, OverrideSet
from pbx_router.testing import AgentBehaviour

from helpers import eventually
from queueing.conftest import QueueBed, agents_for


async def test_urgent_caller_is_served_before_routine_callers_who_came_earlier(bed: QueueBed) -> None:
    await bed.start({"q1": {}}, agents_for(1), {"PJSIP/agent1": AgentBehaviour.answer_after(0.1)})
    bed.service.set_presence("PJSIP/agent1", "paused")  # nobody answers while the line builds up
    routine = []
    for _ in range(2):  # one after the other: arrival order is the order they joined
        routine.append(await bed.call("1"))
        await bed.queued(routine[-1])
    urgent = await bed.call("2")
    await bed.queued(urgent)
    assert [c["caller_id"] for c in bed.service.calls_view()] == [urgent.channel_id] + [c.channel_id for c in routine]
    bed.service.set_presence("PJSIP/agent1", "logged_in")
    served = []
    for expected in [urgent, *routine]:
        await bed.answered(expected)
        served.append(expected.channel_id)
        await expected.hangup()
    assert served == [urgent.channel_id] + [c.channel_id for c in routine]
    await bed.settled()


async def test_overflow_on_time_sends_the_caller_to_the_overflow_target(bed: QueueBed) -> None:
    await bed.start({"q1": {"max_wait_s": 0.6, "overflow_on_time": {"voicemail": {"context": "clinic-voicemail",
                                                                                    "extension": "q1"}}}},
                    agents_for(1), {"PJSIP/agent1": AgentBehaviour.never_answer(ring=True)})
    caller = await bed.call()
    await caller.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert caller.continued_to == ("clinic-voicemail", "q1", 1)
    snap = bed.snapshot()
    assert (snap["overflowed"], snap["overflowed_by_reason"]) == (1, {"max_wait": 1})
    await bed.settled()


async def test_overflow_on_length_plays_the_message_and_moves_to_another_queue_keeping_the_place(bed: QueueBed) -> None:
    bed.pbx.sounds["custom/full"] = 0.1
    await bed.start({"q1": {"max_len": 1, "overflow_on_length": {"queue": "q2"}}}, agents_for(1, ["q1", "q2"]))
    bed.service.set_presence("PJSIP/agent1", "paused")
    first = await bed.call()
    await bed.queued(first)
    second = await bed.call()
    await bed.queued(second, "q2")
    assert bed.snapshot("q1")["overflowed_by_reason"] == {"max_len": 1}
    assert bed.snapshot("q2")["waiting"] == 1
    await second.hangup()
    await first.hangup()
    await bed.settled()


async def test_closing_a_queue_mid_stream_moves_its_waiting_callers_at_once(bed: QueueBed) -> None:
    await bed.start({"q1": {"overflow_on_time": {"voicemail": {"context": "clinic-voicemail", "extension": "q1"}},
                            "max_wait_s": 600}}, agents_for(1))
    bed.service.set_presence("PJSIP/agent1", "paused")
    callers = [await bed.call() for _ in range(2)]
    for c in callers:
        await bed.queued(c)
    now = dt.datetime.now(dt.UTC)
    close = Override("close_queue", "q1", "staff", "fire drill", now, now + dt.timedelta(hours=1))
    admin = getattr(bed.daemon.app, "admin", None)
    if admin is not None:  # the staff path: admin API backend -> queue service
        await admin.add_override(close)
    else:
        bed.service.set_overrides(OverrideSet((close,)))
    for c in callers:
        await c.wait_for(lambda x: x.fate == "continued", timeout=10)
        assert c.continued_to == ("clinic-voicemail", "q1", 1)
    assert bed.snapshot()["overflowed_by_reason"] == {"closed": 2}
    # A new caller meets the closed queue at the door.
    late = await bed.call()
    await late.wait_for(lambda x: x.fate == "continued", timeout=10)
    await bed.settled()


async def test_announcements_tell_the_position_while_waiting(bed: QueueBed) -> None:
    for s in ("queue-youarenext", "queue-thereare", "queue-callswaiting", "queue-thankyou"):
        bed.pbx.sounds[s] = 0.05
    await bed.start({"q1": {"announce_every_s": 0.5}}, agents_for(1))
    bed.service.set_presence("PJSIP/agent1", "paused")
    first, second = await bed.call(), await bed.call()
    await bed.queued(first)
    await bed.queued(second)
    await eventually(lambda: any(p.media_uri == "sound:queue-thereare" for p in second.playbacks), what="position 2")
    assert any(p.media_uri == "sound:queue-youarenext" for p in first.playbacks)
    await first.hangup()
    await second.hangup()
    await bed.settled()
