"""The ARI events websocket: connect, keep alive, parse, de-duplicate, reconnect, resync.

Asterisk re-sends nothing after a reconnect (FINDINGS §7): events raised while we were away
are lost, so every (re)connect is followed by ``on_connected`` (the resync: list channels and
bridges and reconcile). The socket is opened *before* the resync so nothing falls between the two.

ApplicationReplaced (another program connected a websocket for our app) ends ``run()`` instead of
reconnecting: reconnecting would replace the other one, which would do the same, a storm in which
both lose events. Whoever runs the stream decides what comes next (calls/leadership.py).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from pbx_router.ari.client import AriClient
from pbx_router.ari.events import ApplicationReplaced, Deduplicator, Event, parse_event
from pbx_router.log import get_logger

log = get_logger("pbx_router.ari")

EventHandler = Callable[[Event], None]
ConnectedHook = Callable[[], Awaitable[None]]


class StreamState(enum.Enum):
    CONNECTING = "connecting"
    SYNCING = "syncing"
    READY = "ready"
    BACKOFF = "backoff"
    STANDBY = "standby"  # not connected on purpose: another daemon is the active one
    REPLACED = "replaced"  # Asterisk gave our app to another websocket
    STOPPED = "stopped"


@dataclass
class StreamStats:
    connects: int = 0
    disconnects: int = 0
    received: int = 0
    malformed: int = 0
    duplicates: int = 0
    unknown: int = 0
    handler_errors: int = 0
    replaced: int = 0


class Backoff:
    """Jittered exponential backoff: 0.5 s doubling to a 30 s cap, reset after a healthy link."""

    def __init__(self, minimum: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        # The exponent stops at 60 (far past any cap): 2**1024 does not fit in a float, and after
        # ~1,000 failed attempts (hours of Asterisk down) the multiplication raised OverflowError,
        # which ended the reconnect loop for good.
        ceiling = min(self.maximum, self.minimum * 2.0 ** min(self._attempt, 60))
        self._attempt += 1
        # "Equal jitter": never less than half the ceiling, so a flapping Asterisk is not hammered.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self._attempt = 0


KNOWN_TYPES = frozenset(
    {
        "StasisStart", "StasisEnd", "ChannelCreated", "ChannelDestroyed", "ChannelStateChange",
        "ChannelHangupRequest", "ChannelDtmfReceived", "ChannelVarset", "ChannelDialplan",
        "ChannelCallerId", "ChannelConnectedLine", "ChannelEnteredBridge", "ChannelLeftBridge",
        "ChannelTalkingStarted", "ChannelTalkingFinished", "ChannelHold", "ChannelUnhold",
        "BridgeCreated", "BridgeDestroyed", "BridgeMerged", "BridgeBlindTransfer",
        "BridgeAttendedTransfer", "BridgeVideoSourceChanged", "PlaybackStarted",
        "PlaybackContinuing", "PlaybackFinished", "RecordingStarted", "RecordingFinished",
        "RecordingFailed", "Dial", "ApplicationReplaced", "ApplicationMoveFailed",
        "DeviceStateChanged", "EndpointStateChange", "TextMessageReceived", "ChannelUserevent",
        "ChannelToneDetected", "ContactStatusChange", "PeerStatusChange",
    }
)


class EventStream:
    """Owns the websocket. ``run()`` loops until cancelled; ``ready`` tells if events flow."""

    # A connection that lived this long counts as healthy and resets the backoff.
    HEALTHY_AFTER = 5.0

    def __init__(
        self,
        client: AriClient,
        handler: EventHandler,
        *,
        on_connected: ConnectedHook | None = None,
        ping_interval: float = 20.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.handler = handler
        self.on_connected = on_connected
        self.ping_interval = ping_interval
        self.backoff = backoff or Backoff()
        self.state = StreamState.CONNECTING
        self.stats = StreamStats()
        self.ready = asyncio.Event()
        self._dedup = Deduplicator()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._replaced = False
        self._closing = False

    @property
    def url(self) -> str:
        base = self.client.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{base}/ari/events"

    async def run(self) -> None:
        """Connect, resync, deliver, and reconnect with backoff, until cancelled; returns (state
        REPLACED) when Asterisk replaced this socket by another one for the same app."""
        self._replaced = False
        self._closing = False
        try:
            while True:
                started = asyncio.get_running_loop().time()
                try:
                    await self._session_once()
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("ari_connect_failed", error=str(exc) or type(exc).__name__, url=self.url)
                except Exception:  # a bug in resync must not end the daemon's link to Asterisk
                    log.exception("ari_stream_error")
                finally:
                    self.ready.clear()
                if self._replaced:
                    return
                if asyncio.get_running_loop().time() - started >= self.HEALTHY_AFTER:
                    self.backoff.reset()
                delay = self.backoff.next_delay()
                self.state = StreamState.BACKOFF
                log.info("ari_reconnect_scheduled", delay_s=round(delay, 2))
                await asyncio.sleep(delay)
        finally:
            self.state = StreamState.REPLACED if self._replaced else StreamState.STOPPED
            self.ready.clear()

    async def _session_once(self) -> None:
        self.state = StreamState.CONNECTING
        params = {"app": self.client.app, "subscribeAll": "false"}
        async with self.client.session.ws_connect(
            self.url,
            params=params,
            heartbeat=self.ping_interval,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            max_msg_size=16 * 1024 * 1024,
        ) as ws:
            self._ws = ws
            self.stats.connects += 1
            log.info("ari_connected", app=self.client.app, connects=self.stats.connects)
            self.state = StreamState.SYNCING
            resync = asyncio.create_task(self._resync(), name="ari-resync")
            orderly = False
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        if self._deliver(msg.data):
                            break  # ApplicationReplaced: this socket is dead to Asterisk
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        self.stats.malformed += 1
                    elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
            except asyncio.CancelledError:
                orderly = True  # our own shutdown: not a lost link
                raise
            finally:
                if not resync.done():
                    resync.cancel()
                # return_exceptions keeps the resync's own failure from masking why we left;
                # our own cancellation still propagates out of the await.
                await asyncio.gather(resync, return_exceptions=True)
                self._ws = None
                self.stats.disconnects += 1
                self.ready.clear()
                if orderly or self._closing:
                    log.info("ari_closed", disconnects=self.stats.disconnects)
                else:
                    log.warning("ari_disconnected", disconnects=self.stats.disconnects)

    async def _resync(self) -> None:
        if self.on_connected is not None:
            # A failed resync must be tried again: until one succeeds, calls whose events were
            # lost while we were away are never reconciled (e.g. a bridged call whose agent hung
            # up meanwhile waits for ever), and the daemon reports itself not ready.
            delay = self.backoff.minimum
            while True:
                try:
                    await self.on_connected()
                    break
                except Exception:  # noqa: BLE001 - CancelledError (socket closed) still propagates
                    log.exception("ari_resync_failed", retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff.maximum)
        self.state = StreamState.READY
        self.ready.set()
        log.info("ari_ready")

    def _deliver(self, text: str) -> bool:
        """Parse and hand one message to the handler. True when the socket must be dropped."""
        self.stats.received += 1
        if self._dedup.seen(text):
            self.stats.duplicates += 1
            return False
        try:
            event = parse_event(text)
        except ValueError as exc:
            self.stats.malformed += 1
            log.warning("ari_event_malformed", error=str(exc)[:200], count=self.stats.malformed)
            return False
        if isinstance(event, ApplicationReplaced):
            # The old socket stays open but silent (FINDINGS §7): close it, and do not reconnect
            # (that would replace the other one in turn).
            self.stats.replaced += 1
            self._replaced = True
            log.error("ari_application_replaced", app=self.client.app,
                      note="another websocket took this Stasis app; not reconnecting")
            return True
        if event.type not in KNOWN_TYPES:
            self.stats.unknown += 1
        try:
            self.handler(event)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("ari_event_handler_failed", event_type=event.type)
        return False

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
