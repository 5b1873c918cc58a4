"""A daemon that dies with callers waiting: the next one finds them in the holding bridge, in
the same order, and serves them."""

from __future__ import annotations

import asyncio
import contextlib

from pbx_router.testing import AgentBehaviour

from queueing.conftest import QueueBed, agents_for


async def crash(daemon: object) -> None:
    """Kill the daemon without any goodbye to Asterisk: every REST call it still tries fails."""
    app = daemon.app  # type: ignore[attr-defined]
    app.ari.base_url = "http://127.0.0.1:9"  # nothing listens there
    daemon.stopped = True  # type: ignore[attr-defined]
    daemon.task.cancel()  # type: ignore[attr-defined]
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await daemon.task  # type: ignore[attr-defined]
    await app.supervisor.cancel_all()


async def test_callers_waiting_survive_a_daemon_restart_in_order_and_are_served(bed: QueueBed) -> None:
    agents = agents_for(1)
    agents["agent1"]["presence"] = "paused"  # nobody takes calls until staff say so
    await bed.start({"q1": {"moh_class": "default"}}, agents, {"PJSIP/agent1": AgentBehaviour.answer_after(0.1)})
    first, second = await bed.call("1"), await bed.call("1")
    urgent = await bed.call("2")
    for c in (first, second, urgent):
        await bed.queued(c)
    await crash(bed.daemon)
    assert [(c.alive, bed.agent_of(c)) for c in (first, second, urgent)] == [(True, None)] * 3  # still waiting

    await bed.start({"q1": {"moh_class": "default"}}, agents, {})
    order = [c["caller_id"] for c in bed.service.calls_view()]
    assert order == [urgent.channel_id, first.channel_id, second.channel_id]
    assert bed.snapshot()["waiting"] == 3
    bed.service.set_presence("PJSIP/agent1", "logged_in")
    for expected in (urgent, first, second):
        await bed.answered(expected)
        assert bed.agent_of(expected) == "PJSIP/agent1"
        await expected.hangup()
    await bed.settled()
    assert bed.snapshot()["answered"] == 3
