"""The call flow: answer, greet, route. (The hearing and deciding steps slot in between.)

Ids of everything a call creates are derived from the caller's channel id (``pbxr-...``), so a
restarted daemon can tell, from Asterisk's own lists, which call owns which leg and bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pbx_router.ari import AriClient, AriConflict, AriError, AriGone
from pbx_router.ari import events as ev
from pbx_router.ari.models import Playback
from pbx_router.calls.call import RESYNCED, Call, CallerGone, Route, utcnow
from pbx_router.log import get_logger

log = get_logger("pbx_router.calls")

ID_PREFIX = "pbxr-"
# The channel variable naming the last prompt started to the caller: a daemon that adopts the
# caller after another was killed stops it. Asterisk runs a channel's commands in order, so a
# prompt the dead daemon started (a 20 s greeting, an announcement) would otherwise hold up every
# addChannel until it ends (issue 11, D3); and it has no way to list a channel's playbacks.
PLAYBACK_VAR = "PBXR_PLAYBACK"


def bridge_id_for(caller_channel_id: str) -> str:
    return f"{ID_PREFIX}b-{caller_channel_id}"


def leg_id_for(caller_channel_id: str, tag: str) -> str:
    return f"{ID_PREFIX}l{tag}-{caller_channel_id}"


def owner_of(object_id: str) -> str | None:
    """The caller channel id an id we generated belongs to, or None if it is not ours."""
    if not object_id.startswith(ID_PREFIX):
        return None
    _, _, rest = object_id[len(ID_PREFIX):].partition("-")
    return rest or None


class Router(Protocol):
    def route(self, call: Call) -> Route: ...


class Registrar(Protocol):
    """The registry side a flow needs: claim ids before the request that creates them, and who
    takes an adopted caller back where they were (a queue, say) before the conversation would."""

    @property
    def adoption_handlers(self) -> Sequence[Callable[[CallFlow], Awaitable[bool]]]:
        """Each is asked in turn; the first that answers True has the call."""
        ...

    def claim(self, call: Call, channel_id: str) -> None: ...

    def answer_issued(self, call: Call) -> None: ...

    def talking_started(self, call: Call) -> None: ...

    def fallback_attempt_failed(self, call: Call) -> None: ...

    def fallback_gave_up(self, call: Call) -> None: ...


@dataclass(frozen=True, slots=True)
class FallbackRetry:
    """How hard a flow tries to hand a caller to the dialplan fallback before hanging up."""

    attempts: int = 4
    first_delay_s: float = 0.5  # doubled after every failed attempt, up to max_delay_s
    max_delay_s: float = 4.0
    attempt_timeout_s: float = 5.0


#: At shutdown the drain has already used its time: one quick retry, then hang up.
SHUTDOWN_FALLBACK = FallbackRetry(attempts=2, first_delay_s=0.2, attempt_timeout_s=2.0)


class CallFlow:
    """Everything one call does, in order. One instance per call task."""

    def __init__(
        self,
        call: Call,
        ari: AriClient,
        router: Router,
        registrar: Registrar,
        *,
        greeting: Sequence[str],
        greeting_timeout: float,
        fallback: Route,
        brain: Any = None,
        fallback_retry: FallbackRetry | None = None,
    ) -> None:
        self.brain = brain
        self.fallback_retry = fallback_retry or FallbackRetry()
        self.conversation: Any = None
        self.call = call
        self.ari = ari
        self.router = router
        self.registrar = registrar
        self.greeting = list(greeting)
        self.greeting_timeout = greeting_timeout
        self.fallback = fallback
        self.log = log.bind(call_id=call.call_id, channel_id=call.channel_id)

    # --- ARI helpers that turn "channel gone" into CallerGone -----------------------------------

    async def _caller_op(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except AriGone:
            self.call.gone.set()
            raise CallerGone(self.call.channel_id) from None

    async def answer(self) -> None:
        if self.call.t_answer_issued is None:
            self.call.t_answer_issued = time.monotonic()
            self.registrar.answer_issued(self.call)
        if self.call.channel.state != "Up":
            await self._caller_op(self.ari.answer(self.call.channel_id))
        if self.call.summary.answered_at is None:
            self.call.summary.answered_at = utcnow()

    async def play(self, media: Sequence[str], timeout: float) -> str:
        """Play ``media`` to the caller and wait until it finishes. Returns the final state."""
        playback_id = f"{ID_PREFIX}p-{uuid.uuid4().hex[:12]}"

        def finished(e: ev.Event) -> bool:
            return e is RESYNCED or (
                isinstance(e, ev.PlaybackFinished) and e.playback is not None and e.playback.id == playback_id
            )

        try:
            pb = await self._play_on_caller(media, playback_id)
        except AriGone:
            self.call.gone.set()
            raise CallerGone(self.call.channel_id) from None
        if pb.state == "failed":
            self.log.warning("playback_failed", media=",".join(media))
            # Asterisk still sends Started/Finished(failed); nothing to wait for.
            return "failed"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                e = await self.call.next_event(finished, timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.log.warning("playback_timeout", media=",".join(media), timeout_s=timeout)
                await self._stop_playback(playback_id)
                return "timeout"
            if isinstance(e, ev.PlaybackFinished) and e.playback is not None:
                return e.playback.state
            # Reconnected: PlaybackFinished may have been lost. Asterisk forgets finished playbacks.
            try:
                await self.ari.get_playback(playback_id)
            except AriGone:
                return "done"
            except AriError:
                pass

    async def start_playback(self, media: Sequence[str]) -> str | None:
        """Start ``media`` on the caller; the playback id, or None when nothing will play."""
        playback_id = f"{ID_PREFIX}p-{uuid.uuid4().hex[:12]}"
        try:
            pb = await self._play_on_caller(media, playback_id)
        except AriGone:
            self.call.gone.set()
            raise CallerGone(self.call.channel_id) from None
        except AriError as exc:
            self.log.warning("playback_refused", error=str(exc))
            return None
        if pb.state == "failed":
            self.log.warning("playback_failed", media=",".join(media))
            return None
        return playback_id

    async def stop_playback(self, playback_id: str) -> None:
        await self._stop_playback(playback_id)

    async def playback_alive(self, playback_id: str) -> bool:
        try:
            await self.ari.get_playback(playback_id)
        except AriGone:
            return False
        except AriError:
            return True
        return True

    async def hangup_caller(self) -> None:
        await self._hangup_quiet(self.call.channel_id)
        self.call.gone.set()

    async def _play_on_caller(self, media: Sequence[str], playback_id: str) -> Playback:
        """Start a prompt, its id noted on the channel (PLAYBACK_VAR) at the same time."""
        async def note() -> None:
            with contextlib.suppress(AriError):
                await self.ari.set_variable(self.call.channel_id, PLAYBACK_VAR, playback_id)

        _, pb = await asyncio.gather(note(), self.ari.play(self.call.channel_id, media, playback_id=playback_id))
        return pb

    async def _stop_dead_playback(self) -> None:
        """Adopted: stop the prompt a killed daemon left playing to the caller, if any."""
        try:
            playback_id = await self.ari.get_variable(self.call.channel_id, PLAYBACK_VAR)
        except AriError:
            return
        if playback_id:
            await self._stop_playback(playback_id)

    async def _stop_playback(self, playback_id: str) -> None:
        try:
            await self.ari.stop_playback(playback_id)
        except AriError:
            pass

    # --- the flow ----------------------------------------------------------------------------

    async def run(self) -> None:
        call = self.call
        self.log.info("call_started", dialled=call.dialled, adopted=call.adopted)
        if call.adopted and call.resume_talk_leg:
            # Already talking to an agent when we (re)started: keep out of the way until a
            # side hangs up, then clean up as usual.
            call.owned_bridges.add(bridge_id_for(call.channel_id))
            call.owned_channels.add(call.resume_talk_leg)
            self.registrar.claim(call, call.resume_talk_leg)
            call.summary.outcome = "bridged:adopted"
            await self.talk(call.resume_talk_leg)
            return
        if call.adopted:
            await self._stop_dead_playback()
            for handler in self.registrar.adoption_handlers:
                if await handler(self):
                    return
        if self.brain is not None:
            from pbx_router.calls.conversation import Conversation

            self.conversation = Conversation(self, self.brain)
            if call.adopted:
                # Picked up by a restarted daemon: the greeting may have been heard already.
                self.greeting = []
            await self.conversation.run()
            return
        if call.adopted:
            # A restarted daemon picked this caller up mid-call: the greeting may have been
            # heard already, so go straight to routing.
            await self.answer()
        else:
            await self.answer()
            if self.greeting:
                await self.play(self.greeting, timeout=self.greeting_timeout)
        call.raise_if_gone()
        route = self.router.route(call)
        call.summary.route = route.to_dict()
        self.log.info("call_routed", route=route.describe(), reason=route.reason)
        await self.act(route)

    async def act(self, route: Route) -> None:
        if route.kind == "endpoint":
            await self.dial_and_bridge(route)
        else:
            await self.continue_to(route, outcome="routed")

    async def continue_to(self, route: Route, *, outcome: str) -> None:
        await self._caller_op(
            self.ari.continue_in_dialplan(self.call.channel_id, route.context, route.extension, route.priority)
        )
        self.call.summary.outcome = f"{outcome}:dialplan:{route.context}"
        # The caller now belongs to the dialplan; StasisEnd follows, which ends our ownership.
        try:
            await self.call.wait_gone(timeout=5.0)
        except TimeoutError:
            self.log.warning("stasis_end_not_seen_after_continue")

    async def dial_and_bridge(self, route: Route) -> None:
        """Dial ``route.endpoint``; on answer, join caller and agent in a mixing bridge; when
        nobody answers, the fallback."""
        failed = await self.dial(route)
        if failed is not None:
            await self.to_fallback(f"{failed}:dialplan:{self.fallback.context}")

    async def dial(self, route: Route) -> str | None:
        """Dial ``route.endpoint``; on answer, join caller and agent and talk until either hangs
        up (None). When the dial fails or nobody answers, ``"dial_failed"`` / ``"no_answer"``:
        the caller is still ours, waiting for where to go next."""
        call = self.call
        leg_id = leg_id_for(call.channel_id, uuid.uuid4().hex[:8])
        bridge_id = bridge_id_for(call.channel_id)
        # Events for the leg can arrive before the originate's response: claim the id first.
        self.registrar.claim(call, leg_id)
        call.owned_channels.add(leg_id)
        ringback = await self._start_ringback()
        try:
            await self.ari.originate(
                route.endpoint,
                app_args=("dial", call.channel_id),
                channel_id=leg_id,
                caller_id=f'"{call.summary.caller_name}" <{call.summary.caller_number}>'
                if call.summary.caller_number
                else None,
                timeout=int(route.timeout),
            )
        except AriError as exc:
            call.owned_channels.discard(leg_id)
            self.log.warning("dial_failed", endpoint=route.endpoint, error=str(exc))
            await self._stop_playback_quiet(ringback)
            return "dial_failed"

        def leg_answered_or_failed(e: ev.Event) -> bool:
            if e is RESYNCED:
                return True
            if isinstance(e, ev.StasisStart) and e.channel and e.channel.id == leg_id:
                return True
            return isinstance(e, ev.ChannelDestroyed) and e.channel is not None and e.channel.id == leg_id

        loop = asyncio.get_running_loop()
        deadline = loop.time() + route.timeout + 5.0
        e: ev.Event | None = None
        while True:
            try:
                e = await call.next_event(leg_answered_or_failed, timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                e = None
            if e is not RESYNCED:
                break
            e = await self._leg_state_after_resync(leg_id)
            if e is not None:
                break
        await self._stop_playback_quiet(ringback)
        if not isinstance(e, ev.StasisStart):
            cause = e.cause_txt if isinstance(e, ev.ChannelDestroyed) else "timeout"
            self.log.info("agent_no_answer", endpoint=route.endpoint, cause=cause)
            await self._hangup_quiet(leg_id)
            call.owned_channels.discard(leg_id)
            return "no_answer"

        try:
            await self.ari.create_bridge("mixing", bridge_id=bridge_id, name=f"call {call.call_id}")
        except AriConflict:
            pass  # left over from a previous life of this call; reuse it
        call.owned_bridges.add(bridge_id)
        try:
            await self.ari.add_channel(bridge_id, [call.channel_id, leg_id])
        except AriError:
            # A 404 here names the bridge (a missing channel is a 400): the caller is only gone
            # if we were told so. Anything else is an error, and errors end at the fallback.
            if call.gone.is_set():
                raise CallerGone(call.channel_id) from None
            raise
        call.summary.outcome = f"bridged:{route.endpoint}"
        self.log.info("call_bridged", endpoint=route.endpoint)
        await self.talk(leg_id)
        return None

    async def _leg_state_after_resync(self, leg_id: str) -> ev.Event | None:
        """Events about the leg may have been lost while reconnecting: ask Asterisk directly."""
        try:
            chan = await self.ari.get_channel(leg_id)
        except AriGone:
            return ev.ChannelDestroyed(type="ChannelDestroyed", cause_txt="gone while disconnected")
        except AriError:
            return None
        if chan.state == "Up" and chan.stasis_app() == self.ari.app:
            return ev.StasisStart(type="StasisStart", channel=chan, args=tuple(chan.stasis_args()))
        return None

    async def talk(self, leg_id: str) -> None:
        """Caller and agent are bridged: wait until either hangs up, then end the other."""
        call = self.call
        self.registrar.talking_started(call)

        def leg_gone(e: ev.Event) -> bool:
            return (
                isinstance(e, ev.ChannelHangupRequest | ev.ChannelDestroyed | ev.StasisEnd)
                and e.channel is not None
                and e.channel.id == leg_id
            )

        while True:
            e = await call.next_event(lambda e: e is RESYNCED or leg_gone(e))  # CallerGone if the caller leaves
            if e is not RESYNCED:
                break
            try:
                await self.ari.get_channel(leg_id)
            except AriGone:
                break
            except AriError:
                pass
        # The agent's phone hung up: Asterisk ends that leg by itself, so it is no longer ours to
        # hang up (a DELETE now is a 404 for nothing: issue 11, D5).
        call.owned_channels.discard(leg_id)
        self.log.info("agent_hung_up")
        await self._hangup_quiet(call.channel_id)
        call.gone.set()

    async def _start_ringback(self) -> str | None:
        playback_id = f"{ID_PREFIX}p-{uuid.uuid4().hex[:12]}"
        try:
            await self.ari.play(self.call.channel_id, ["tone:ring"], playback_id=playback_id)
        except AriGone:
            self.call.gone.set()
            raise CallerGone(self.call.channel_id) from None
        except AriError:
            return None
        return playback_id

    async def _stop_playback_quiet(self, playback_id: str | None) -> None:
        if playback_id:
            await self._stop_playback(playback_id)

    async def _hangup_quiet(self, channel_id: str) -> None:
        try:
            await self.ari.hangup(channel_id)
        except AriError:
            pass

    # --- endings -----------------------------------------------------------------------------

    async def release(self) -> None:
        """Give back everything this call created. Safe to call more than once, after hangup."""
        call = self.call
        if self.conversation is not None:
            await self.conversation.stop_listening()
        for cid in list(call.owned_channels):
            await self._hangup_quiet(cid)
            call.owned_channels.discard(cid)
        for bid in list(call.owned_bridges):
            try:
                await self.ari.delete_bridge(bid)
            except AriError:
                pass
            call.owned_bridges.discard(bid)

    async def send_to_fallback(self, why: str, retry: FallbackRetry | None = None) -> None:
        """Nobody is left in dead air: continue the caller into the fallback context (after an
        error, a refusal or at shutdown). Never raises for a caller who has gone."""
        if self.call.gone.is_set():
            return
        self.log.warning("call_sent_to_fallback", why=why, context=self.fallback.context)
        try:
            # No waiting for StasisEnd: the call ends right here (and at shutdown the events
            # websocket may already be going).
            await self.to_fallback(f"fallback:{why}", retry=retry, wait_left=False)
        except CallerGone:
            pass

    async def to_fallback(self, outcome: str, *, retry: FallbackRetry | None = None, wait_left: bool = True) -> None:
        """Continue the caller into the dialplan fallback (a person), recording ``outcome``.

        A failed attempt (Asterisk slow, erroring or unreachable) is retried with backoff; when
        every attempt failed the caller is hung up as the last resort, logged at error and
        counted (``fallback_gave_up`` in the status): never left in Stasis in silence. Raises
        CallerGone when the caller hangs up meanwhile."""
        call, route = self.call, self.fallback
        policy = retry or self.fallback_retry
        delay = policy.first_delay_s
        error = ""
        for attempt in range(1, max(1, policy.attempts) + 1):
            call.raise_if_gone()
            try:
                async with asyncio.timeout(policy.attempt_timeout_s):
                    await self.ari.continue_in_dialplan(call.channel_id, route.context, route.extension, route.priority)
            except AriGone:
                call.gone.set()
                raise CallerGone(call.channel_id) from None
            except AriConflict:
                # "Not in Stasis": the caller already left us (an earlier attempt whose answer
                # was lost went through). The dialplan has them.
                call.summary.outcome = outcome
                self.log.info("fallback_already_left_stasis")
                return
            except (AriError, TimeoutError) as exc:
                error = str(exc) or type(exc).__name__
                self.registrar.fallback_attempt_failed(call)
                self.log.warning("fallback_attempt_failed", attempt=attempt, attempts=policy.attempts, error=error)
                if attempt < policy.attempts:
                    with contextlib.suppress(TimeoutError):
                        await call.wait_gone(timeout=delay)  # backoff; a hangup ends it early
                    delay = min(delay * 2, policy.max_delay_s)
                continue
            call.summary.outcome = outcome
            if wait_left:
                try:
                    await call.wait_gone(timeout=5.0)
                except TimeoutError:
                    self.log.warning("stasis_end_not_seen_after_continue")
            return
        call.raise_if_gone()
        # Last resort: a hangup the caller hears (and can call back, or dial 911) beats silence.
        self.registrar.fallback_gave_up(call)
        self.log.error("fallback_failed_hung_up", attempts=policy.attempts, error=error, context=route.context)
        call.summary.outcome = f"fallback_failed:hung_up:{outcome}"
        await self._hangup_quiet(call.channel_id)
        call.gone.set()
