"""A caller routed to a daemon-owned queue: holding bridge with music, an agent rung, both joined."""

from __future__ import annotations

from pbx_router.testing import AgentBehaviour

from helpers import eventually
from queueing.conftest import QueueBed, agents_for


async def test_caller_waits_with_music_then_talks_to_the_agent_who_answers(bed: QueueBed) -> None:
    await bed.start({"q1": {"moh_class": "clinic"}}, agents_for(1),
                    {"PJSIP/agent1": AgentBehaviour.answer_after(0.3)})
    caller = await bed.call()
    await bed.queued(caller)
    assert bed.pbx.bridges["queue-q1"].bridge_type == "holding"
    # Music starts right after the caller enters (two requests; a loaded machine can see between).
    await eventually(lambda: bed.pbx.bridges["queue-q1"].moh_class == "clinic", what="music for the caller")
    await bed.answered(caller)
    assert bed.agent_of(caller) == "PJSIP/agent1"
    assert caller.channel_id not in bed.holding()
    snap = bed.snapshot()
    assert (snap["answered"], snap["waiting"], snap["answered_within_sl"]) == (1, 0, 1)
    await caller.hangup()
    await bed.settled()
    # The holding bridge stays (fixed id, reused by the next caller and by a restarted daemon).
    assert "queue-q1" in bed.pbx.bridges


async def test_a_caller_who_queues_after_the_line_emptied_hears_music_too(bed: QueueBed) -> None:
    """Asterisk's music announcer leaves a holding bridge when the last caller does (it is a
    "lonely" channel), and the music stops with it (issue 11, D1: on the real PBX the second
    caller of the day waited in silence). Whoever enters next must hear music again."""
    await bed.start({"q1": {"moh_class": "clinic"}}, agents_for(1),
                    {"PJSIP/agent1": AgentBehaviour.answer_after(0.5)})
    first = await bed.call()
    await bed.queued(first)
    await eventually(lambda: bed.pbx.bridges["queue-q1"].moh_class == "clinic", what="music for the first caller")
    await bed.answered(first)
    # The first caller left for the agent: the bridge is empty and Asterisk stopped the music.
    assert bed.holding() == []
    assert bed.pbx.bridges["queue-q1"].moh_class is None
    await first.hangup()
    await bed.settled()
    second = await bed.call()
    await bed.queued(second)
    await eventually(lambda: bed.pbx.bridges["queue-q1"].moh_class == "clinic", what="music for the second caller")
    assert second.channel_id in bed.holding()
    await bed.answered(second)


async def test_an_agent_hanging_up_ends_the_call_without_deleting_what_asterisk_already_ended(
    bed: QueueBed,
) -> None:
    """Issue 11, D5: the answered agent hung up, Asterisk ended that leg, and the daemon still
    sent DELETE for it (404, a request that fails for nothing)."""
    await bed.start({"q1": {}}, agents_for(1), {"PJSIP/agent1": AgentBehaviour.answer_then_hangup(0.2, 0.5)})
    caller = await bed.call()
    await bed.answered(caller)
    await caller.wait_for(lambda c: not c.alive, timeout=10)
    await bed.settled()
    refused = [(r.method, r.path, r.status) for r in bed.pbx.requests
               if r.method == "DELETE" and r.path.startswith("/ari/channels/") and r.status == 404]
    assert refused == []


async def test_an_agent_who_answers_during_an_announcement_is_connected_at_once(bed: QueueBed) -> None:
    """Issue 11, D3: Asterisk takes an addChannel for a caller only once the announcement playing
    to them has ended. The daemon asked first and stopped the announcement after, so the request
    waited out the whole announcement (on the real PBX: beyond the request timeout; the agent was
    connected to nobody and the caller went back in line)."""
    for s in ("queue-youarenext", "queue-thereare", "queue-callswaiting", "queue-thankyou"):
        bed.pbx.sounds[s] = 8.0
    await bed.start({"q1": {"announce_every_s": 0.3}}, agents_for(1),
                    {"PJSIP/agent1": AgentBehaviour.answer_after(0.5)})
    caller = await bed.call()
    await bed.queued(caller)
    await eventually(lambda: any(p.media_uri.startswith("sound:queue-") for p in caller.playbacks),
                     what="an announcement playing to the caller")
    await eventually(lambda: bed.ringing("PJSIP/agent1"), what="the agent's phone ringing")
    # The agent answers 0.5 s into the ring: connected well within the announcement's 8 s (and the
    # daemon's 5 s request timeout).
    await bed.answered(caller, timeout=3.0)
    assert bed.snapshot()["answered"] == 1
