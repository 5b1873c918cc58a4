"""The queue service's actions on the wire: holding bridges and their music, agent legs rung
and cancelled, announcements, the mixing bridge on answer, overflow and leaving (one part of
:class:`~pbx_router.calls.queueing.QueueService`, see ``calls/queueing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import TYPE_CHECKING

from pbx_router.ari import AriError, AriGone
from pbx_router.calls.call import CallerGone
from pbx_router.calls.flow import CallFlow, bridge_id_for
from pbx_router.queues import (
    Action,
    Announce,
    Bridge,
    CancelRings,
    Overflow,
    Queued,
    RingAgents,
)

if TYPE_CHECKING:
    pass

from pbx_router.calls.queue_state import (
    QUEUE_VAR,
    Member,
    Overflowed,
    QueueState,
    _Requeue,
    agent_leg_id,
    format_place,
    log,
)


class QueueWire(QueueState):
    """Performs the dispatcher's actions for one caller over ARI."""

    # --- performing actions -----------------------------------------------------------------

    async def _perform(self, flow: CallFlow, m: Member, action: Action) -> None:
        try:
            if isinstance(action, Queued):
                await self._enter_holding(flow, m, action)
            elif isinstance(action, RingAgents):
                await self._ring(flow, m, action)
            elif isinstance(action, CancelRings):
                await self._cancel(m, action)
            elif isinstance(action, Announce):
                await self._announce(flow, m, action)
        except AriGone:
            flow.call.gone.set()
            raise CallerGone(flow.call.channel_id) from None

    async def _enter_holding(self, flow: CallFlow, m: Member, action: Queued) -> None:
        # Our place in line (and urgency), kept on the channel itself: a restarted daemon reads it
        # back. Written before the caller enters the holding bridge: a daemon that dies between the
        # two must not leave a caller in line whose place (an emergency's urgency) is lost.
        with contextlib.suppress(AriError):
            await self.ari.set_variable(flow.call.channel_id, QUEUE_VAR,
                                        format_place(m.queue, m.priority, m.joined_at, m.urgency))
        await self._holding_bridge(action.queue, action.bridge_id)
        try:
            await self.ari.add_channel(action.bridge_id, flow.call.channel_id)
        except AriGone:
            # addChannel answers 404 only for a missing *bridge* (a missing channel is 400): the
            # holding bridge we made earlier is gone (Asterisk restarted). Make it again, once.
            self._holding.pop(action.queue, None)
            await self._holding_bridge(action.queue, action.bridge_id)
            await self.ari.add_channel(action.bridge_id, flow.call.channel_id)
        m.holding = action.bridge_id
        await self._start_music(action.bridge_id, action.moh_class)

    async def _holding_bridge(self, queue: str, bridge_id: str) -> None:
        """Get-or-create the queue's holding bridge, once per daemon life."""
        task = self._holding.get(queue)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # Asterisk has no get-or-create: POST answers 409 for an existing id, then GET.
            task = asyncio.get_running_loop().create_task(self._ari_bridge(bridge_id))
            self._holding[queue] = task
        await asyncio.shield(task)

    async def _ari_bridge(self, bridge_id: str) -> None:
        await self.ari.get_or_create_bridge(bridge_id, "holding", name=bridge_id)

    async def _start_music(self, bridge_id: str, moh_class: str) -> None:
        """Music for whoever is in the holding bridge, started on every entry. Asterisk's music
        announcer is a "lonely" bridge channel: it leaves with the last caller and the music
        stops with it (issue 11, D1), so a bridge that had music may have none now. Starting it
        while it plays reuses the same announcer (204)."""
        try:
            await self.ari.start_bridge_moh(bridge_id, moh_class)
        except AriError as exc:
            # No music is bad, but the callers still wait and are served.
            self.stats.ari_errors += 1
            log.warning("queue_moh_failed", bridge=bridge_id, error=str(exc))

    async def _ring(self, flow: CallFlow, m: Member, action: RingAgents) -> None:
        call = flow.call
        legs = [(agent_leg_id(call.channel_id), agent) for agent in action.agents]
        for leg, agent in legs:
            # Events for a leg can beat the originate's reply: claim its id first.
            flow.registrar.claim(call, leg)
            call.owned_channels.add(leg)
            m.legs[leg] = agent
        caller_id = (
            f'"{call.summary.caller_name}" <{call.summary.caller_number}>' if call.summary.caller_number else None
        )
        # Asterisk's own timer a little later than ours: the dispatcher decides when a ring ends.
        timeout = math.ceil(action.timeout_s) + 1
        jobs = [self._originate(m, leg, agent, caller_id, timeout) for leg, agent in legs]
        if not m.mixing_ready:
            jobs.append(self._prepare_mixing(flow, m))
        await asyncio.gather(*jobs)
        if not m.rung and any(leg in m.legs for leg, _ in legs):
            m.rung = True
            self.stats.decision_to_ringing_ms.append((time.perf_counter() - m.t_joined) * 1000)

    async def _originate(self, m: Member, leg: str, agent: str, caller_id: str | None, timeout: int) -> None:
        try:
            await self.ari.originate(agent, app_args=("agent", m.caller_id), channel_id=leg, caller_id=caller_id,
                                     timeout=timeout)
        except AriError as exc:
            # 500 "Allocation failed" (unknown or unreachable endpoint) and friends: skip, count.
            log.info("queue_leg_refused", agent=agent, status=exc.status, error=str(exc))
            if leg in m.legs:
                self._leg_ended(m, leg, "unreachable")

    async def _prepare_mixing(self, flow: CallFlow, m: Member) -> None:
        """Create the caller's mixing bridge while agents ring, so answer -> bridged is one request."""
        bridge_id = bridge_id_for(flow.call.channel_id)
        flow.call.owned_bridges.add(bridge_id)
        try:
            await self.ari.get_or_create_bridge(bridge_id, "mixing", name=f"queue {m.queue}")
            m.mixing_ready = True
        except AriError as exc:
            self.stats.ari_errors += 1
            log.warning("queue_mixing_bridge_failed", error=str(exc))

    async def _cancel(self, m: Member, action: CancelRings) -> None:
        doomed = [leg for agent in action.agents if agent != action.except_agent and (leg := m.leg_of(agent))]
        for leg in doomed:
            m.legs.pop(leg, None)
            if m.call is not None:
                m.call.owned_channels.discard(leg)
        await asyncio.gather(*(self._hangup(leg) for leg in doomed))

    async def _announce(self, flow: CallFlow, m: Member, action: Announce) -> None:
        if m.announcement is not None:
            return  # the previous one is still playing: never talk over ourselves
        if m.state != "waiting":
            return  # being connected: an announcement now would hold up the connection (D3)
        m.announcement = await flow.start_playback(action.media)

    # --- outcomes ---------------------------------------------------------------------------

    async def _connect(self, flow: CallFlow, m: Member, action: Bridge) -> None:
        """The agent answered: caller and agent into the mixing bridge, then talk."""
        call = flow.call
        leg = m.leg_of(action.agent)
        m.state = "talking"
        if leg is None:  # pragma: no cover - the dispatcher only bridges legs we reported
            raise RuntimeError("bridge for an unknown leg")
        t_answer = m.t_answer or time.perf_counter()
        bridge_id = bridge_id_for(call.channel_id)
        if not m.mixing_ready:
            await self._prepare_mixing(flow, m)
        if m.announcement is not None:
            # First: Asterisk runs a channel's commands in order on the channel's own thread, so
            # an addChannel waits until an announcement playing to the caller ends (issue 11, D3:
            # seen on a real Asterisk 22.10.1, the request outlived our timeout, the agent was
            # connected to nobody and the caller went back in line).
            await flow.stop_playback(m.announcement)
            m.announcement = None
        try:
            # Adding to the mixing bridge takes the caller out of the holding bridge.
            await self.ari.add_channel(bridge_id, [call.channel_id, leg])
        except AriError as exc:
            if call.gone.is_set():
                raise CallerGone(call.channel_id) from None
            if isinstance(exc, AriGone):
                # 404 from addChannel names the bridge (a missing channel is a 400): make it
                # again before the next answer.
                m.mixing_ready = False
            # The agent vanished between answer and bridge, or the bridge did: back in line,
            # same place.
            log.warning("queue_bridge_failed", agent=action.agent, error=str(exc))
            self._push(self.dispatcher.call_ended(m.caller_id, self.clock()))
            m.state = "done"
            raise _Requeue(m.queue, m.priority, m.joined_at) from None
        self.stats.answer_to_bridged_ms.append((time.perf_counter() - t_answer) * 1000)
        m.holding = None
        call.summary.outcome = f"queue:{m.queue}:answered"
        call.summary.extra["queue"] = {"queue": m.queue, "agent": action.agent, "waited_s": round(action.waited_s, 1)}
        flow.log.info("queue_answered", queue=m.queue, agent=action.agent, waited_s=round(action.waited_s, 1))
        while m.pending:  # cancels of the other legs
            pending = m.pending.popleft()
            if isinstance(pending, CancelRings):
                await self._cancel(m, pending)
        # The answered leg now belongs to the conversation (released with the call, like a
        # direct dial), not to the ringing: leaving the queue must not hang it up, or a shutdown
        # that leaves callers talking to staff would cut this one.
        m.legs.pop(leg, None)
        await flow.talk(leg)

    async def _overflow(self, flow: CallFlow, m: Member, action: Overflow) -> Overflowed:
        """The queue lets the caller go: no leg rings, out of the holding bridge. Where they go
        next is the target executor's to decide (an emergency never takes a callback)."""
        call = flow.call
        m.state = "done"
        flow.log.info("queue_overflow", queue=m.queue, reason=action.reason,
                      target=action.target.kind if action.target else None, urgency=m.urgency)
        call.summary.extra["queue"] = {"queue": m.queue, "overflow": action.reason}
        await self._cancel_all_legs(m)
        await self._leave_holding(m)
        return Overflowed(m.queue, action.reason, action.target, action.priority, action.joined_at)

    async def _leave_holding(self, m: Member) -> None:
        if m.holding is not None:
            with contextlib.suppress(AriError):
                await self.ari.remove_channel(m.holding, m.caller_id)
            m.holding = None

    async def _cancel_all_legs(self, m: Member) -> None:
        legs = list(m.legs)
        m.legs.clear()
        if m.call is not None:
            for leg in legs:
                m.call.owned_channels.discard(leg)
        await asyncio.gather(*(self._hangup(leg) for leg in legs))

    async def _leave(self, m: Member) -> None:
        """Whatever ended the serve (hangup, overflow, talk over): settle the dispatcher."""
        if self.members.get(m.caller_id) is m:
            del self.members[m.caller_id]
        now = self.clock()
        if m.state == "waiting":
            self._push(self.dispatcher.caller_left(m.caller_id, now))
        elif m.state == "talking":
            self._push(self.dispatcher.call_ended(m.caller_id, now))
        m.state = "done"
        await self._cancel_all_legs(m)
