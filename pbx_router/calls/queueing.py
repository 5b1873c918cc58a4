"""Daemon-owned queues on the wire: holding bridges, music on hold, agents rung over ARI, the
mixing bridge on answer, overflow, and recovery after a daemon restart.

Who does what (the service is one class composed of parts, by concern):
* ``queue_state.py``: ids and the ``PBXR_QUEUE`` place, the member record, the counters, and the
  state every part shares (:class:`QueueState`); ``queue_wire.py``: the actions on the wire
  (holding bridges, legs, announcements, the mixing bridge, overflow, leaving);
  ``queue_recovery.py``: unclaimed events and the resync after every (re)connect; this module:
  queries, the clock task, a caller's task (serve / resume) and the wiring.

* :class:`QueueService` (one per daemon) owns the pure :class:`~pbx_router.queues.Dispatcher`.
  Every dispatcher call is synchronous, so the tasks that feed it never interleave inside it.
  Its ``run()`` task wakes at the dispatcher's next deadline (ring timeouts, maximum waits,
  announcements, wrap-up ends, override changes) and calls ``step()``.
* The **caller's own task** runs :meth:`QueueService.serve`: it performs the actions addressed to
  its caller (they are put on the member's ``pending`` list and the task is woken through its
  inbox), and it sees its agent legs' events because leg ids follow the supervisor's convention
  ``pbxr-q<token>-<caller channel id>``.

Where a caller goes when the queue lets them go unanswered (overflow, a closed queue) is not
decided here: :meth:`QueueService.serve` returns an :class:`Overflowed` and the caller's target
executor (``calls/targets.py``) sends them on, so an emergency caller follows the emergency chain
instead of the queue's callback or voicemail.

Asterisk is the source of truth for who waits: the holding bridge ``queue-<name>`` (not
``pbxr-``-prefixed, so the supervisor's orphan cleanup leaves it alone) lists the callers, and a
channel variable on each caller (``PBXR_QUEUE=<queue>,<priority>,<joined_at>[,<urgency>]``) keeps
its place.
A restarted daemon reads both in its resync hook and rebuilds the line in order; no database is
needed, so queues keep working while PostgreSQL is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from pbx_router.ari import AriClient, AriError, AriGone
from pbx_router.ari import events as ev
from pbx_router.calls.call import RESYNCED
from pbx_router.calls.flow import CallFlow
from pbx_router.calls.queue_recovery import QueueRecovery
from pbx_router.calls.queue_state import (
    _CAUSES,
    MAX_IDLE_S,
    QUEUE_VAR,
    QUEUE_WAKE,
    Member,
    Overflowed,
    QueueServiceStats,
    _Requeue,
    format_place,
    holding_bridge_id,
    is_agent_leg,
    log,
    parse_place,
    urgency_of_place,
)
from pbx_router.calls.queue_wire import QueueWire
from pbx_router.queues import (
    DEFAULT_PRIORITY,
    Bridge,
    Overflow,
    OverrideSet,
    QueuesSection,
)
from pbx_router.queues.model import PRESENCES
from pbx_router.rules.facts import QueueFacts

if TYPE_CHECKING:
    from pbx_router.calls.supervisor import CallSupervisor


class QueueService(QueueRecovery, QueueWire):
    """Daemon-owned queues for one daemon. See the module docstring."""

    # --- queries (admin API, rules) ---------------------------------------------------------

    def has_queue(self, name: str) -> bool:
        return name in self.section.queues

    def facts(self) -> dict[str, QueueFacts]:
        return self.dispatcher.facts(self.clock())

    def queues_view(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.dispatcher.snapshots(self.clock()).values()]

    def agents_view(self) -> list[dict[str, Any]]:
        return self.dispatcher.agents_view(self.clock())

    def calls_view(self) -> list[dict[str, Any]]:
        return self.dispatcher.calls_view(self.clock())

    def set_presence(self, endpoint: str, presence: str) -> bool:
        """Staff presence (logged_in / paused / logged_out); False for an unknown agent or value."""
        if endpoint not in self.dispatcher.pool or presence not in PRESENCES:
            return False
        self._push(self.dispatcher.set_presence(endpoint, presence, self.clock()))
        return True

    def set_overrides(self, overrides: OverrideSet) -> None:
        """Staff overrides changed (admin API): they act on waiting callers at once."""
        self._push(self.dispatcher.set_overrides(overrides, self.clock()))

    # --- the clock --------------------------------------------------------------------------

    async def serve_forever(self) -> None:
        """Drive the dispatcher's timers until cancelled (the app's TaskGroup owns this task)."""
        try:
            while True:
                deadline = self.dispatcher.next_deadline()
                now = self.clock()
                wait = MAX_IDLE_S if deadline is None else min(max(0.0, deadline - now), MAX_IDLE_S)
                self._changed.clear()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._changed.wait()
                self._push(self.dispatcher.step(self.clock()), wake_clock=False)
        finally:
            for task in list(self._tasks):
                task.cancel()

    # --- a caller's task --------------------------------------------------------------------

    async def serve(
        self, flow: CallFlow, queue: str, *, priority: int | None = None, intent: str | None = None,
        joined_at: float | None = None,
    ) -> Overflowed | None:
        """Queue the caller until an agent takes the call (then until either hangs up: None) or
        the queue lets them go unanswered (an :class:`Overflowed` for the target executor). Runs in
        the caller's own task; raises CallerGone if they hang up. An emergency caller
        (``flow.call.urgency``) leaves as soon as nobody staffs the queue."""
        prio = DEFAULT_PRIORITY if priority is None else int(priority)
        urgency = flow.call.urgency
        while True:
            now = self.clock()
            member = Member(flow.call.channel_id, queue, prio, now if joined_at is None else joined_at,
                            call=flow.call, flow=flow, urgency=urgency)
            self.members[member.caller_id] = member
            flow.log.info("queue_join", queue=queue, priority=prio, intent=intent, urgency=urgency)
            self._push(self.dispatcher.join(member.caller_id, queue, now, priority=prio, joined_at=joined_at,
                                            leave_when_empty=urgency == "emergency"))
            try:
                return await self._serve_member(flow, member)
            except _Requeue as move:
                queue, prio, joined_at = move.queue, move.priority, move.joined_at

    async def resume(self, flow: CallFlow, member: Member) -> Overflowed | None:
        """A restarted daemon's adopted caller, already back in line by the resync hook."""
        member.call, member.flow = flow.call, flow
        flow.call.raise_urgency(member.urgency)
        flow.log.info("queue_resumed", queue=member.queue, urgency=member.urgency)
        if member.pending:
            flow.call.deliver(QUEUE_WAKE)
        try:
            return await self._serve_member(flow, member)
        except _Requeue as move:
            return await self.serve(flow, move.queue, priority=move.priority, joined_at=move.joined_at)

    async def _serve_member(self, flow: CallFlow, m: Member) -> Overflowed | None:
        try:
            terminal = await self._wait_for_outcome(flow, m)
            if isinstance(terminal, Bridge):
                await self._connect(flow, m, terminal)
                return None
            return await self._overflow(flow, m, terminal)
        finally:
            await asyncio.shield(self._leave(m))

    async def _wait_for_outcome(self, flow: CallFlow, m: Member) -> Bridge | Overflow:
        call = flow.call

        def wanted(e: ev.Event) -> bool:
            if e is QUEUE_WAKE or e is RESYNCED:
                return True
            if isinstance(e, ev.PlaybackFinished):
                return e.playback is not None and e.playback.id == m.announcement
            return isinstance(e, ev.StasisStart | ev.ChannelDestroyed) and e.channel is not None and is_agent_leg(
                e.channel.id
            )

        while True:
            while m.pending:
                action = m.pending.popleft()
                if isinstance(action, Bridge | Overflow):
                    return action
                await self._perform(flow, m, action)
            e = await call.next_event(wanted)
            if e is RESYNCED:
                await self._recheck_legs(m)
            elif isinstance(e, ev.PlaybackFinished):
                m.announcement = None
            elif isinstance(e, ev.StasisStart) and e.channel is not None:
                self._leg_answered(m, e.channel.id)
            elif isinstance(e, ev.ChannelDestroyed) and e.channel is not None:
                self._leg_ended(m, e.channel.id, _CAUSES.get(e.cause, "error"))

    def _leg_answered(self, m: Member, leg: str) -> None:
        agent = m.legs.get(leg)
        if agent is None:
            # Cancelled a moment ago, or from a previous life: nobody waits for it.
            self.stats.late_legs_hung_up += 1
            self._spawn(self._hangup(leg), f"late-leg-{leg}")
            return
        m.t_answer = time.perf_counter()
        self._push(self.dispatcher.agent_answered(m.caller_id, agent, self.clock()))

    async def _recheck_legs(self, m: Member) -> None:
        """Events were lost while the websocket was down: ask Asterisk how each leg stands."""
        for leg in list(m.legs):
            try:
                chan = await self.ari.get_channel(leg)
            except AriGone:
                self._leg_ended(m, leg, "no_answer")
                continue
            except AriError:
                continue
            if chan.state == "Up" and chan.stasis_app() == self.ari.app:
                self._leg_answered(m, leg)

    # --- wiring ----------------------------------------------------------------------------

    def attach(self, supervisor: CallSupervisor) -> None:
        """Plug into the call supervisor: unclaimed events and resync. (Adopted callers who were
        waiting here are taken back by the target executor, which also sends them on if the
        queue lets them go: ``TargetExecutor.attach``.)"""
        supervisor.unclaimed_handlers.append(self.handle_unclaimed)
        supervisor.resync_hooks.append(self.on_resync)


def build(ari: AriClient, section: QueuesSection, supervisor: CallSupervisor,
          overrides: OverrideSet | None = None) -> QueueService:
    """The daemon's queue service (``App._build_services`` calls this when the rules file has
    ``queues:``), plugged into the supervisor. ``overrides``: those already in force; later
    changes arrive through ``set_overrides`` (the admin backend)."""
    service = QueueService(ari, section, overrides=overrides, supervisor_calls=lambda: supervisor.calls)
    service.attach(supervisor)
    log.info("queues_ready", queues=sorted(section.queues), agents=len(section.agents))
    return service


__all__ = [
    "QUEUE_VAR", "Member", "Overflowed", "QueueService", "QueueServiceStats", "build", "format_place",
    "holding_bridge_id", "is_agent_leg", "parse_place", "urgency_of_place",
]
