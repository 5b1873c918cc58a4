"""Daemon-owned queues on the wire: holding bridges, music on hold, agents rung over ARI, the
mixing bridge on answer, overflow, and recovery after a daemon restart.

Who does what:

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
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pbx_router.ari import AriClient, AriError, AriGone
from pbx_router.ari import events as ev
from pbx_router.ari.models import Bridge as AriBridge
from pbx_router.ari.models import Channel
from pbx_router.calls.call import RESYNCED, Call, CallerGone
from pbx_router.calls.flow import ID_PREFIX, CallFlow, bridge_id_for
from pbx_router.log import get_logger
from pbx_router.queues import (
    DEFAULT_PRIORITY,
    Action,
    Announce,
    Bridge,
    CancelRings,
    Dispatcher,
    Overflow,
    OverflowSpec,
    OverrideSet,
    Queued,
    QueuesSection,
    RingAgents,
)
from pbx_router.queues.model import PRESENCES
from pbx_router.rules.facts import QueueFacts

if TYPE_CHECKING:
    from pbx_router.calls.supervisor import CallSupervisor

log = get_logger("pbx_router.calls.queueing")

QUEUE_VAR = "PBXR_QUEUE"
HOLDING_PREFIX = "queue-"
LEG_TAG = "q"
#: Wakes a caller's task when actions were queued for it (the actions live on the member).
QUEUE_WAKE = ev.Event(type="PbxRouterQueueWake")
# The clock task re-checks at least this often even when nothing is due (cheap, and a safety net).
MAX_IDLE_S = 1.0
ADOPTION_WAIT_S = 5.0
LATENCY_SAMPLES = 100_000

LegOutcome = Literal["busy", "unreachable", "congestion", "rejected", "error", "no_answer"]
# Q.850 causes of a leg that ended before answering -> what the dispatcher makes of it.
_CAUSES: dict[int, LegOutcome] = {
    17: "busy", 18: "no_answer", 19: "no_answer", 16: "no_answer", 21: "rejected",
    1: "unreachable", 3: "unreachable", 20: "unreachable", 27: "unreachable", 31: "no_answer",
    34: "congestion", 38: "congestion", 41: "congestion", 42: "congestion",
}


def holding_bridge_id(queue: str) -> str:
    return f"{HOLDING_PREFIX}{queue}"


def agent_leg_id(caller_channel_id: str) -> str:
    """Unique for ever (Asterisk refuses a reused channel id), owned by the caller's call."""
    return f"{ID_PREFIX}{LEG_TAG}{uuid.uuid4().hex[:10]}-{caller_channel_id}"


def is_agent_leg(channel_id: str) -> bool:
    return channel_id.startswith(f"{ID_PREFIX}{LEG_TAG}")


def format_place(queue: str, priority: int, joined_at: float, urgency: str = "routine") -> str:
    place = f"{queue},{priority},{joined_at:.3f}"
    # The urgency survives a daemon restart too: an adopted emergency caller stays one.
    return place if urgency == "routine" else f"{place},{urgency}"


def parse_place(value: str) -> tuple[str, int, float] | None:
    """``PBXR_QUEUE`` back into (queue, priority, joined_at); None when malformed."""
    parts = value.split(",")
    if len(parts) not in (3, 4) or not parts[0]:
        return None
    try:
        joined_at = float(parts[2])
        priority = int(parts[1])
    except ValueError:
        return None
    return (parts[0], priority, joined_at) if math.isfinite(joined_at) else None


def urgency_of_place(value: str) -> str:
    parts = value.split(",")
    return parts[3] if len(parts) == 4 and parts[3] in ("urgent", "emergency") else "routine"


@dataclass(eq=False)
class Member:
    """One caller known to the queues (waiting, being rung, or talking)."""

    caller_id: str
    queue: str
    priority: int
    joined_at: float
    call: Call | None = None
    flow: CallFlow | None = None
    state: Literal["waiting", "talking", "done"] = "waiting"
    pending: deque[Action] = field(default_factory=deque)
    legs: dict[str, str] = field(default_factory=dict)  # leg channel id -> agent endpoint
    holding: str | None = None  # holding bridge the caller is in
    mixing_ready: bool = False
    announcement: str | None = None  # playback id of the announcement playing now
    t_joined: float = field(default_factory=time.perf_counter)
    t_answer: float = 0.0  # perf_counter when the answering leg's StasisStart was taken in
    rung: bool = False
    urgency: str = "routine"

    def leg_of(self, agent: str) -> str | None:
        return next((leg for leg, a in self.legs.items() if a == agent), None)


@dataclass
class QueueServiceStats:
    dropped_actions: int = 0  # actions for callers no longer here
    late_legs_hung_up: int = 0
    stale_legs_hung_up: int = 0
    restored: int = 0
    ari_errors: int = 0
    decision_to_ringing_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    answer_to_bridged_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The queue let the caller go unanswered; the caller is out of the holding bridge, no leg
    rings, and the target executor decides where they go (``spec``: the queue's own overflow,
    None when there is none)."""

    queue: str
    reason: str
    spec: OverflowSpec | None
    priority: int
    joined_at: float


class _Requeue(Exception):
    """The caller goes back in line in the same queue (a failed bridge), keeping their place."""

    def __init__(self, queue: str, priority: int, joined_at: float) -> None:
        super().__init__(queue)
        self.queue, self.priority, self.joined_at = queue, priority, joined_at


class QueueService:
    """Daemon-owned queues for one daemon. See the module docstring."""

    def __init__(
        self,
        ari: AriClient,
        section: QueuesSection,
        *,
        overrides: OverrideSet | None = None,
        clock: Callable[[], float] = time.time,
        supervisor_calls: Callable[[], Mapping[str, Call]] = dict,
    ) -> None:
        self.ari = ari
        self.section = section
        self.clock = clock
        self._supervisor_calls = supervisor_calls
        self.dispatcher = Dispatcher(section, clock(), overrides)
        self.members: dict[str, Member] = {}
        self.stats = QueueServiceStats()
        self._changed = asyncio.Event()
        self._holding: dict[str, asyncio.Task[None]] = {}  # queue -> bridge ready (created + MOH)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconciled_at = -math.inf  # monotonic time of the last resync hook run
        self._reconciled = asyncio.Condition()

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

    def _push(self, actions: Iterable[Action], *, wake_clock: bool = True) -> None:
        """Hand each action to its caller's task."""
        for action in actions:
            member = self.members.get(action.caller_id)
            if member is None:
                self.stats.dropped_actions += 1
                continue
            member.pending.append(action)
            if member.call is not None:
                member.call.deliver(QUEUE_WAKE)
        if wake_clock:
            self._changed.set()

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

    def _leg_ended(self, m: Member, leg: str, outcome: LegOutcome) -> None:
        agent = m.legs.pop(leg, None)
        if m.call is not None:
            m.call.owned_channels.discard(leg)
        if agent is not None:
            self._push(self.dispatcher.agent_leg_failed(m.caller_id, agent, self.clock(), outcome))

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
        await self._holding_bridge(action.queue, action.bridge_id, action.moh_class)
        try:
            await self.ari.add_channel(action.bridge_id, flow.call.channel_id)
        except AriGone:
            # addChannel answers 404 only for a missing *bridge* (a missing channel is 400): the
            # holding bridge we made earlier is gone (Asterisk restarted). Make it again, once.
            self._holding.pop(action.queue, None)
            await self._holding_bridge(action.queue, action.bridge_id, action.moh_class)
            await self.ari.add_channel(action.bridge_id, flow.call.channel_id)
        m.holding = action.bridge_id
        # Our place in line, kept on the channel itself: a restarted daemon reads it back.
        with contextlib.suppress(AriError):
            await self.ari.set_variable(flow.call.channel_id, QUEUE_VAR,
                                        format_place(m.queue, m.priority, m.joined_at, m.urgency))

    async def _holding_bridge(self, queue: str, bridge_id: str, moh_class: str) -> None:
        """Get-or-create the queue's holding bridge with its music, once per daemon life."""
        task = self._holding.get(queue)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.get_running_loop().create_task(self._make_holding(bridge_id, moh_class))
            self._holding[queue] = task
        await asyncio.shield(task)

    async def _make_holding(self, bridge_id: str, moh_class: str) -> None:
        # Asterisk has no get-or-create: POST answers 409 for an existing id, then GET.
        await self.ari.get_or_create_bridge(bridge_id, "holding", name=bridge_id)
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
        if m.announcement is not None:
            await flow.stop_playback(m.announcement)
            m.announcement = None
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

    async def _hangup(self, channel_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.hangup(channel_id)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- supervisor hooks -------------------------------------------------------------------

    def handle_unclaimed(self, event: ev.Event) -> bool:
        """Events no call claimed: agent device states, and legs whose caller has gone."""
        if isinstance(event, ev.DeviceStateChanged):
            if event.device_name in self.dispatcher.pool:
                self._push(self.dispatcher.set_device_state(event.device_name, event.device_state, self.clock()))
                return True
            return False
        if isinstance(event, ev.StasisStart) and event.channel is not None and is_agent_leg(event.channel.id):
            # An agent answered a leg after its caller left: hang it up, nobody is there.
            self.stats.late_legs_hung_up += 1
            self._spawn(self._hangup(event.channel.id), f"late-leg-{event.channel.id}")
            return True
        if isinstance(event, ev.ChannelEvent | ev.Dial) and any(is_agent_leg(c) for c in event.channel_ids()):
            return True  # the rest of a finished leg's life: expected, not worth counting
        return False

    async def on_resync(self, channels: list[Channel], bridges: list[AriBridge]) -> None:
        """After every (re)connect: agent device states, then callers found in our holding
        bridges that this process does not know (a restart) are put back in line, in order."""
        try:
            await self._refresh_devices()
            now = self.clock()
            calls = self._supervisor_calls()
            for bridge in bridges:
                name = bridge.id.removeprefix(HOLDING_PREFIX)
                if not bridge.id.startswith(HOLDING_PREFIX) or name not in self.section.queues:
                    continue
                # The bridge exists (with its music) from our previous life: no need to create it.
                if name not in self._holding:
                    self._holding[name] = asyncio.get_running_loop().create_task(asyncio.sleep(0))
                entries: list[tuple[str, int, float]] = []
                urgencies: dict[str, str] = {}
                for position, cid in enumerate(bridge.channels):
                    if cid in self.members or cid not in calls:
                        continue
                    raw = await self._read_place(cid)
                    place = parse_place(raw)
                    priority, joined_at = (place[1], place[2]) if place and place[0] == name else (
                        DEFAULT_PRIORITY, now - 1e-3 * (len(bridge.channels) - position))
                    entries.append((cid, priority, joined_at))
                    urgencies[cid] = urgency_of_place(raw)
                for cid, priority, joined_at in entries:
                    m = Member(cid, name, priority, joined_at, holding=bridge.id, urgency=urgencies[cid])
                    m.t_joined = time.perf_counter()
                    self.members[cid] = m
                if entries:
                    escalating = [cid for cid, u in urgencies.items() if u == "emergency"]
                    actions, problems = self.dispatcher.restore_callers(name, entries, now,
                                                                        leave_when_empty=escalating)
                    self.stats.restored += len(entries)
                    for problem in problems:
                        log.warning("queue_restore_problem", problem=problem)
                    log.info("queue_restored", queue=name, callers=len(entries))
                    self._push(actions)
            live_legs = {leg for m in self.members.values() for leg in m.legs}
            # Legs a live call talks on (answered here, or found bridged by the supervisor's
            # adoption of a restarted daemon's conversation) are not stale.
            for call in calls.values():
                live_legs |= call.owned_channels
                if call.resume_talk_leg:
                    live_legs.add(call.resume_talk_leg)
            for chan in channels:
                if is_agent_leg(chan.id) and chan.id not in live_legs:
                    # Rung by a previous life of the daemon: its caller is rung afresh instead.
                    self.stats.stale_legs_hung_up += 1
                    await self._hangup(chan.id)
        finally:
            async with self._reconciled:
                self._reconciled_at = time.monotonic()
                self._reconciled.notify_all()

    async def _read_place(self, channel_id: str) -> str:
        try:
            return await self.ari.get_variable(channel_id, QUEUE_VAR)
        except AriError:
            return ""

    async def _refresh_devices(self) -> None:
        for agent in self.dispatcher.pool.all():
            name = agent.endpoint
            with contextlib.suppress(AriError):
                await self.ari.subscribe(f"deviceState:{name}")
            try:
                data = await self.ari.request("GET", f"/deviceStates/{quote(name, safe='')}")
            except AriError:
                continue
            state = str((data or {}).get("state") or "") if isinstance(data, dict) else ""
            if state:
                self._push(self.dispatcher.set_device_state(name, state, self.clock()))

    async def adopted_member(self, call: Call) -> Member | None:
        """For an adopted call: wait for the resync hook that ran after its adoption, then say
        whether it was waiting in one of our queues."""
        try:
            async with asyncio.timeout(ADOPTION_WAIT_S):
                async with self._reconciled:
                    await self._reconciled.wait_for(lambda: self._reconciled_at >= call.t_stasis)
        except TimeoutError:
            log.warning("queue_adoption_verdict_timeout")
            return None
        m = self.members.get(call.channel_id)
        return m if m is not None and m.flow is None else None

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
