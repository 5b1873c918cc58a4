"""Daemon-owned queues across restarts of either side: a conversation with staff survives a daemon
restart, and callers are still queued (not left in silence) after Asterisk restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from helpers import eventually
from queueing.conftest import QueueBed, agents_for


@pytest.fixture
def bed(pbx: AsteriskEmulator, start_daemon: Any, tmp_path: Path) -> QueueBed:
    pbx.sounds["hello-world"] = 0.05
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    return QueueBed(pbx, start_daemon, tmp_path)


async def test_caller_talking_to_a_queue_agent_stays_bridged_when_the_daemon_restarts(bed: QueueBed) -> None:
    await bed.start({"q1": {}}, agents_for(1), {"PJSIP/agent1": AgentBehaviour.answer_after(0.1)}, db=False)
    caller = await bed.call("1")
    await bed.answered(caller)
    agent_leg = next(iter(caller.bridged_with))
    first = bed.daemon
    await first.stop()  # SIGTERM: caller and agent are talking, so they are left alone
    assert bed.pbx.handle(agent_leg).alive, "shutdown hung up the agent of a live conversation"
    assert bed.agent_of(caller) == "PJSIP/agent1"

    second = await bed.start({"q1": {}}, agents_for(1), db=False)  # returns once resync (and its hooks) ran
    await eventually(lambda: caller.channel_id in second.supervisor.calls, what="call adopted")
    assert bed.pbx.handle(agent_leg).alive, "the new daemon hung up the agent of a live conversation"
    assert bed.agent_of(caller) == "PJSIP/agent1"
    await caller.hangup()
    await eventually(lambda: not bed.pbx.handle(agent_leg).alive, what="agent leg hung up after the caller left")


async def test_callers_are_queued_again_after_asterisk_restarts(bed: QueueBed) -> None:
    agents = agents_for(1)
    agents["agent1"]["presence"] = "paused"  # nobody answers: callers stay in the holding bridge
    await bed.start({"q1": {}}, agents, db=False)
    before = await bed.call("1")
    await bed.queued(before)
    stream = bed.daemon.app.stream
    connects = stream.stats.connects

    await bed.pbx.restart()  # every channel and bridge gone, the holding bridge too
    await eventually(lambda: stream.stats.connects > connects and stream.ready.is_set(), timeout=15,
                     what="daemon reconnected to the restarted Asterisk")
    after = await bed.call("1")
    await bed.queued(after)  # not left in Stasis in silence
    await after.hangup()
    await bed.settled()
