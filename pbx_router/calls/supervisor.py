"""The call supervisor: creates one task per call, routes ARI events to calls, resyncs after a
reconnect, and shuts down in stages.

It is the only holder of live calls (the registry). Events are delivered synchronously from
the websocket task into each call's inbox; the call's own task does all the awaiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from pbx_router.ari import AriClient, AriError
from pbx_router.ari import events as ev
from pbx_router.ari.models import Channel
from pbx_router.calls.call import RESYNCED, Call, CallerGone, CallSummary, Route, utcnow
from pbx_router.calls.flow import (
    ID_PREFIX,
    SHUTDOWN_FALLBACK,
    CallFlow,
    FallbackRetry,
    Router,
    bridge_id_for,
    owner_of,
)
from pbx_router.calls.listen import listening_generation
from pbx_router.log import get_logger

log = get_logger("pbx_router.calls")

# StasisStart args[0] of channels we create ourselves (never a new inbound call).
SECONDARY_ROLES = frozenset({"dial", "snoop-in", "snoop-out", "media", "agent"})


class RecordSink(Protocol):
    def submit(self, summary: CallSummary) -> None: ...


class NullSink:
    def submit(self, summary: CallSummary) -> None:
        pass


@dataclass
class SupervisorStats:
    started: int = 0
    adopted: int = 0
    ended: int = 0
    failed: int = 0
    refused: int = 0
    orphans_cleaned: int = 0
    unrouted_events: int = 0
    fallback_retries: int = 0  # attempts to reach the dialplan fallback that failed and were retried
    fallback_gave_up: int = 0  # callers hung up because the fallback could not be reached at all


@dataclass(frozen=True)
class FlowSettings:
    greeting: tuple[str, ...]
    greeting_timeout: float
    fallback: Route
    max_concurrent: int = 500
    fallback_retry: FallbackRetry = FallbackRetry()


class CallSupervisor:
    def __init__(
        self,
        ari: AriClient,
        router: Router,
        settings: FlowSettings,
        sink: RecordSink | None = None,
        *,
        flow_factory: Callable[..., CallFlow] = CallFlow,
        brain: Any = None,
    ) -> None:
        self.brain = brain
        # This daemon's listening generation (calls/listen.py); None when it never listens.
        self.listen_generation: str | None = brain.media.generation if brain is not None else None
        self.ari = ari
        self.router = router
        self.settings = settings
        self.sink: RecordSink = sink or NullSink()
        self.flow_factory = flow_factory
        self.calls: dict[str, Call] = {}  # caller channel id -> call
        self.flows: dict[str, CallFlow] = {}  # caller channel id -> its flow (for live views)
        self._claims: dict[str, Call] = {}  # secondary channel id -> owning call
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        # Set while handing every call over to another daemon (calls/leadership.py): cancelled
        # calls are then left to it as they are, not sent to the fallback.
        self._handing_over = False
        self.stats = SupervisorStats()
        # Recent StasisStart -> answer-issued latencies (bounded).
        self.setup_latencies_ms: deque[float] = deque(maxlen=100_000)
        self._idle = asyncio.Event()
        self._idle.set()
        self._routing_done = asyncio.Event()
        # Services that own Asterisk state outside any one call (daemon-owned queues): they
        # get events no call claimed, and run after every resync to reconcile their state.
        self.unclaimed_handlers: list[Callable[[ev.Event], bool]] = []
        self.resync_hooks: list[Callable[[list[Channel], list[Any]], Any]] = []
        # Asked, in order, to take over an adopted caller (e.g. one who was waiting in a queue);
        # the first that returns True has handled the call.
        self.adoption_handlers: list[Callable[[CallFlow], Awaitable[bool]]] = []

    # --- registry ----------------------------------------------------------------------------

    def claim(self, call: Call, channel_id: str) -> None:
        self._claims[channel_id] = call

    def answer_issued(self, call: Call) -> None:
        """StasisStart -> answer request, daemon side: kept for metrics and benchmarks."""
        assert call.t_answer_issued is not None
        ms = (call.t_answer_issued - call.t_stasis) * 1000
        self.setup_latencies_ms.append(ms)

    def _owner(self, channel_id: str) -> Call | None:
        call = self.calls.get(channel_id) or self._claims.get(channel_id)
        if call is None:
            owner = owner_of(channel_id)
            if owner:
                call = self.calls.get(owner)
        return call

    @property
    def active(self) -> int:
        return len(self.calls)

    # --- events ------------------------------------------------------------------------------

    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StasisStart) and event.channel is not None:
            if self._owner(event.channel.id) is None and not self._is_secondary(event.channel, event.args):
                self._start_call(event.channel, event.args, adopted=False)
                return
        delivered = False
        seen: set[int] = set()
        for cid in event.channel_ids():
            call = self._owner(cid)
            if call is not None and id(call) not in seen:
                seen.add(id(call))
                call.deliver(event)
                delivered = True
        if not delivered:
            for handler in self.unclaimed_handlers:
                if handler(event):
                    return
            self.stats.unrouted_events += 1

    @staticmethod
    def _is_secondary(channel: Channel, args: tuple[str, ...]) -> bool:
        return channel.id.startswith(ID_PREFIX) or (bool(args) and args[0] in SECONDARY_ROLES) or (
            channel.name.startswith(("UnicastRTP/", "Snoop/", "AudioSocket/"))
        )

    def _start_call(self, channel: Channel, args: tuple[str, ...], *, adopted: bool) -> Call | None:
        if channel.id in self.calls:
            return self.calls[channel.id]
        call = Call(channel, args, adopted=adopted)
        if not self.accepting or len(self.calls) >= self.settings.max_concurrent:
            # Shutting down or over capacity: the caller goes straight to a human.
            self.stats.refused += 1
            self._spawn(self._refuse(call), name=f"refuse-{channel.id}")
            return None
        self.calls[channel.id] = call
        self._idle.clear()
        if adopted:
            self.stats.adopted += 1
        self.stats.started += 1
        self._spawn(self._run_call(call), name=f"call-{channel.id}")
        return call

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _flow(self, call: Call) -> CallFlow:
        return self.flow_factory(
            call,
            self.ari,
            self.router,
            self,
            greeting=self.settings.greeting,
            greeting_timeout=self.settings.greeting_timeout,
            fallback=self.settings.fallback,
            brain=self.brain,
            fallback_retry=self.settings.fallback_retry,
        )

    async def _refuse(self, call: Call) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(call_id=call.call_id)
        flow = self._flow(call)
        call.summary.outcome = "refused"
        self.sink.submit(call.summary)
        await flow.send_to_fallback("not_accepting")
        call.summary.ended_at = utcnow()
        self.sink.submit(call.summary)

    async def _run_call(self, call: Call) -> None:
        # A fresh context per task: call_id is on every log line of this call, and only this call.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(call_id=call.call_id)
        flow = self._flow(call)
        self.flows[call.channel_id] = flow
        self.sink.submit(call.summary)
        handed_over = False
        try:
            await flow.run()
            if call.summary.outcome is None:
                call.summary.outcome = "completed"
        except CallerGone:
            if call.summary.outcome is None:
                call.summary.outcome = "abandoned"
            flow.log.info("caller_hung_up", outcome=call.summary.outcome)
        except asyncio.CancelledError:
            if call.talking or self._handing_over:
                # A conversation with staff is not interrupted by our shutdown: caller and agent
                # stay bridged in Asterisk, and the next daemon adopts the call (resync).
                handed_over = True
                flow.log.info("call_handed_over" if self._handing_over else "call_left_talking",
                              outcome=call.summary.outcome)
                raise
            # Shutdown ran out of time: hand the caller to a human, then let cancellation go on.
            await asyncio.shield(flow.send_to_fallback("shutdown", retry=SHUTDOWN_FALLBACK))
            raise
        except Exception as exc:  # any bug: nobody is left in dead air
            self.stats.failed += 1
            flow.log.exception("call_flow_failed", error=type(exc).__name__)
            await flow.send_to_fallback("error")
        finally:
            if handed_over:
                if self._handing_over:
                    call.summary.extra["handed_to_active_daemon"] = True
                    # Our own listening legs are of no use to the next daemon (it listens with
                    # its own); the RTP port and recogniser session are ours to give back.
                    if flow.conversation is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(flow.conversation.stop_listening())
                else:
                    call.summary.extra["left_talking_at_shutdown"] = True
                self.sink.submit(call.summary)
                self._forget(call)
            else:
                try:
                    await asyncio.shield(flow.release())
                finally:
                    call.summary.ended_at = utcnow()
                    self.sink.submit(call.summary)
                    self._forget(call)
                    flow.log.info("call_ended", outcome=call.summary.outcome)

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.channel_id, None)
        self.flows.pop(call.channel_id, None)
        for cid in [c for c, owner in self._claims.items() if owner is call]:
            del self._claims[cid]
        self.stats.ended += 1
        if not self.calls:
            self._idle.set()
        self._check_routing_done()

    # --- resync ------------------------------------------------------------------------------

    async def resync(self) -> None:
        """After every (re)connect: adopt our callers, end calls that vanished, clean orphans."""
        # Only calls that existed before we asked can be missing from the answer because they
        # hung up; a call whose StasisStart raced the listing is simply not in it yet.
        known_before = dict(self.calls)
        channels = await self.ari.list_channels()
        bridges = await self.ari.list_bridges()
        app = self.ari.app
        present = {c.id for c in channels}
        ours = [c for c in channels if c.stasis_app() == app]

        # Calls whose caller disappeared while we were not listening; the others re-check
        # whatever they were waiting for.
        for chan_id, call in known_before.items():
            if chan_id not in present:
                call.gone.set()
            call.deliver(RESYNCED)

        talking = {b.id: b for b in bridges if b.id.startswith(ID_PREFIX) and len(b.channels) >= 2}
        callers = [c for c in ours if not self._is_secondary(c, tuple(c.stasis_args()))]
        for chan in callers:
            if chan.id not in self.calls:
                log.info("call_adopted", channel_id=chan.id)
                adopted = self._start_call(chan, tuple(chan.stasis_args()), adopted=True)
                bridge = talking.get(bridge_id_for(chan.id))
                if adopted is not None and bridge is not None:
                    adopted.resume_talk_leg = next((c for c in bridge.channels if c != chan.id), None)

        # Secondary channels and bridges whose owner is no longer a live call are orphans.
        for chan in ours:
            if chan.id in self.calls or not self._is_secondary(chan, tuple(chan.stasis_args())):
                continue
            if self._dead_listening(chan.id) or (self._owner(chan.id) is None and self._owner_by_args(chan) is None):
                await self._cleanup("channel", chan.id)
        for bridge in bridges:
            if not bridge.id.startswith(ID_PREFIX):
                continue
            owner = owner_of(bridge.id)
            if owner is None or owner not in self.calls or self._dead_listening(bridge.id):
                await self._cleanup("bridge", bridge.id)
        for hook in self.resync_hooks:
            result = hook(channels, bridges)
            if asyncio.iscoroutine(result):
                await result

    def _dead_listening(self, object_id: str) -> bool:
        """A snoop, externalMedia leg or listening bridge made by another daemon (one killed
        mid-call): nobody reads its audio any more, and an adopted caller gets ears of ours."""
        generation = listening_generation(object_id)
        return generation is not None and generation != self.listen_generation

    def _owner_by_args(self, chan: Channel) -> Call | None:
        args = chan.stasis_args()
        if len(args) >= 2 and args[0] in SECONDARY_ROLES:
            call = self.calls.get(args[1])
            if call is not None:
                self.claim(call, chan.id)
                call.owned_channels.add(chan.id)
            return call
        return None

    async def _cleanup(self, kind: str, object_id: str) -> None:
        try:
            if kind == "channel":
                await self.ari.hangup(object_id)
            else:
                await self.ari.delete_bridge(object_id)
            self.stats.orphans_cleaned += 1
            log.info("orphan_cleaned", kind=kind, id=object_id)
        except AriError as exc:
            log.warning("orphan_cleanup_failed", kind=kind, id=object_id, error=str(exc))

    # --- shutdown ----------------------------------------------------------------------------

    def fallback_attempt_failed(self, call: Call) -> None:
        self.stats.fallback_retries += 1

    def fallback_gave_up(self, call: Call) -> None:
        self.stats.fallback_gave_up += 1

    def talking_started(self, call: Call) -> None:
        """The call's routing is done (caller and staff are talking): drain need not wait for it."""
        call.talking = True
        self._check_routing_done()

    def _check_routing_done(self) -> None:
        if all(c.talking for c in self.calls.values()):
            self._routing_done.set()

    @property
    def routing(self) -> int:
        return sum(1 for c in self.calls.values() if not c.talking)

    async def drain(self, timeout: float) -> None:
        """Stop accepting, give calls still being routed ``timeout`` seconds, then cancel the
        rest. Calls already talking to staff are left talking (the next daemon adopts them)."""
        self.accepting = False
        log.info("calls_draining", routing=self.routing, talking=self.active - self.routing, timeout_s=timeout)
        self._routing_done.clear()
        self._check_routing_done()
        try:
            async with asyncio.timeout(timeout):
                await self._routing_done.wait()
        except TimeoutError:
            log.warning("calls_drain_timeout", remaining=self.routing)
        await self.cancel_all()

    async def hand_over(self) -> None:
        """Another daemon is (or is about to be) the active one for our Stasis app and adopts
        every caller in it: forget our calls without touching them in Asterisk (no fallback, no
        hangup of staff legs), so the two daemons never act on one caller."""
        if not self._tasks:
            return
        log.warning("calls_handed_over", calls=self.active)
        self._handing_over = True
        try:
            await self.cancel_all()
        finally:
            self._handing_over = False

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel("pbx-router shutting down")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._tasks)


class StaticRouter:
    """Routes every call to one configured target (the placeholder before rules)."""

    def __init__(self, route: Route) -> None:
        self._route = route

    def route(self, call: Call) -> Route:
        return self._route
