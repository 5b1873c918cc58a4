"""One live call: its identity, its inbox of ARI events, and what it owns in Asterisk.

Only the call's own task reads the inbox. The registry delivers events into it synchronously;
a hangup also sets ``gone`` directly, so even a full inbox can never hide the end of a call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pbx_router.ari import events as ev
from pbx_router.ari.models import Channel
from pbx_router.intents.spec import URGENCY_RANK


class CallerGone(Exception):
    """The caller hung up (or the channel vanished). Raised at the call's current ``await``."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes, and why. ``kind`` is ``dialplan`` or ``endpoint``."""

    kind: str
    context: str = ""
    extension: str = "s"
    priority: int = 1
    endpoint: str = ""
    timeout: float = 30.0
    reason: str = ""
    rule: str | None = None
    trace: Any = None

    def describe(self) -> str:
        if self.kind == "endpoint":
            return f"endpoint {self.endpoint}"
        return f"dialplan {self.context},{self.extension},{self.priority}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "reason": self.reason, "rule": self.rule}
        if self.kind == "endpoint":
            d.update(endpoint=self.endpoint, timeout=self.timeout)
        else:
            d.update(context=self.context, extension=self.extension, priority=self.priority)
        if self.trace is not None:
            d["trace"] = self.trace
        return d


@dataclass
class CallSummary:
    """What the store records for every call (written at start, answer and end)."""

    call_id: str
    channel_id: str
    caller_number: str
    caller_name: str
    dialled: str
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    route: dict[str, Any] | None = None
    transcript: str | None = None
    intent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


HANGUP_EVENTS = (ev.ChannelHangupRequest, ev.ChannelDestroyed, ev.StasisEnd)

#: Delivered to every live call after the events websocket reconnected: events raised while we
#: were away are lost for good (Asterisk re-sends nothing), so a flow waiting for one must check.
RESYNCED = ev.Event(type="PbxRouterResynced")


# Namespace of call ids derived from channels (call_id_for); fixed for ever: changing it would
# split the records of calls in progress across an upgrade.
_CALL_NAMESPACE = uuid.UUID("4f0d6d5e-8b55-4a8f-9f4b-7d3c2b1a9e10")


def call_id_for(channel: Channel) -> str:
    """One call, one id, whichever daemon handles it: derived from the channel's Asterisk id and
    creation time, so a daemon that adopts a caller after another was killed goes on writing the
    same call record instead of opening a second one and leaving the first never closed (issue 11,
    D4)."""
    if not channel.creationtime:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_CALL_NAMESPACE, f"{channel.id}|{channel.creationtime}"))


def channel_started_at(channel: Channel) -> datetime | None:
    """When Asterisk created the channel (``2026-12-02T02:53:24.123+0000``), if it says."""
    try:
        return datetime.strptime(channel.creationtime, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except ValueError:
        return None


class Call:
    INBOX_SIZE = 256

    def __init__(self, channel: Channel, args: tuple[str, ...], *, adopted: bool = False) -> None:
        self.call_id = call_id_for(channel)
        # When StasisStart reached us (monotonic), for the setup-latency figures.
        self.t_stasis = time.monotonic()
        self.t_answer_issued: float | None = None
        self.channel = channel
        self.channel_id = channel.id
        self.args = args
        self.adopted = adopted
        self.dialled = args[0] if args else channel.dialplan.exten
        self.inbox: asyncio.Queue[ev.Event] = asyncio.Queue(self.INBOX_SIZE)
        self._pushback: list[ev.Event] = []
        self.gone = asyncio.Event()
        self.left_stasis = False
        self.dtmf: list[str] = []
        self.dropped_events = 0
        # Set by resync when a restarted daemon finds this caller already talking to an agent.
        self.resume_talk_leg: str | None = None
        # Caller and staff are bridged: routing is done, and a shutdown leaves them talking.
        self.talking = False
        # The most urgent thing this caller said (routine / urgent / emergency). Only ever rises:
        # once an emergency, every later hand-off (queue overflow, booking, fallback) treats the
        # caller as one (calls/targets.py).
        self.urgency = "routine"
        # Channels and bridges this call created; released when it ends.
        self.owned_channels: set[str] = set()
        self.owned_bridges: set[str] = set()
        self.summary = CallSummary(
            call_id=self.call_id,
            channel_id=channel.id,
            caller_number=channel.caller.number,
            caller_name=channel.caller.name,
            dialled=self.dialled,
            # An adopted call started when its caller did, not when this daemon met them.
            started_at=(channel_started_at(channel) if adopted else None) or utcnow(),
        )

    def raise_urgency(self, urgency: str) -> None:
        if URGENCY_RANK.get(urgency, 0) > URGENCY_RANK.get(self.urgency, 0):
            self.urgency = urgency

    @property
    def emergency(self) -> bool:
        return self.urgency == "emergency"

    # --- delivery (registry side, synchronous) -------------------------------------------------

    def deliver(self, event: ev.Event) -> None:
        if isinstance(event, HANGUP_EVENTS) and event.channel and event.channel.id == self.channel_id:
            if isinstance(event, ev.StasisEnd):
                self.left_stasis = True
            self.gone.set()
        if isinstance(event, ev.ChannelDtmfReceived) and event.channel and event.channel.id == self.channel_id:
            self.dtmf.append(event.digit)
        try:
            self.inbox.put_nowait(event)
        except asyncio.QueueFull:
            # Drop the oldest: the flow only ever waits for recent events.
            self.dropped_events += 1
            self.inbox.get_nowait()
            self.inbox.put_nowait(event)

    # --- waiting (call task side) ------------------------------------------------------------

    def raise_if_gone(self) -> None:
        if self.gone.is_set():
            raise CallerGone(self.channel_id)

    async def next_event(
        self, predicate: Callable[[ev.Event], bool], timeout: float | None = None
    ) -> ev.Event:
        """The next inbox event matching ``predicate``. Others are discarded.

        Raises :class:`CallerGone` when the caller hangs up first and ``TimeoutError`` after
        ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                while self._pushback or not self.inbox.empty():
                    e = self._pushback.pop() if self._pushback else self.inbox.get_nowait()
                    if predicate(e):
                        return e
                self.raise_if_gone()
                get = asyncio.ensure_future(self.inbox.get())
                gone = asyncio.ensure_future(self.gone.wait())
                done: set[asyncio.Future[Any]] = set()
                try:
                    done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
                    if not get.done():
                        get.cancel()
                    elif get not in done and not get.cancelled() and get.exception() is None:
                        # Taken from the inbox just as the timeout (or a cancel) hit: keep it
                        # for the next wait instead of losing it (a keypad digit, say).
                        self._pushback.append(get.result())
                if get in done and not get.cancelled():
                    e = get.result()
                    if predicate(e):
                        return e

    async def wait_gone(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.gone.wait()
