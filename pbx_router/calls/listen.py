"""Hearing the caller: a ``spy=in`` snoop bridged with an externalMedia channel whose RTP comes to
a UDP port we lease, an endpointer marking speech, and a recogniser fed only voiced audio.

Everything the listener learns is delivered into the call's inbox as :class:`ListenEvent`, so
the call's own task sees speech, DTMF, playbacks and hangups in one ordered stream.

Ids: ``pbxr-<role>.<generation>.<serial>-<caller channel id>`` (roles ``s`` snoop, ``m``
externalMedia, ``mb`` their bridge). The caller's id at the end lets the registry and a
restarted daemon tell which call a leg belongs to. The generation is drawn once per daemon
(:class:`MediaSettings`): a daemon killed mid-utterance leaves its snoop, externalMedia channel
and bridge behind in Asterisk, which refuses a bridge id in use (409) and a channel id ever used
before (409, even once the channel is gone), so the next daemon must never ask for those ids
again; and its resync hangs up every listening leg of another generation (nobody is listening
on them any more). The serial makes a call's second listener (booking after routing) unique too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pbx_router.ari import AriClient, AriError
from pbx_router.ari import events as ev
from pbx_router.calls.call import Call
from pbx_router.log import get_logger
from pbx_router.media.codecs import FORMATS, Resampler, WireFormat
from pbx_router.media.endpoint import RtpEndpoint
from pbx_router.media.ports import PortPool
from pbx_router.media.vad import (
    Audio,
    Endpointer,
    EndpointerConfig,
    NoInput,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from pbx_router.speech import EnginePool, SpeechError, Transcript

log = get_logger("pbx_router.calls")

ID_PREFIX = "pbxr-"
LISTEN_ROLES = ("s", "m", "mb")  # snoop, externalMedia channel, the bridge joining them
_LISTEN_ID = re.compile(r"^pbxr-(?:s|m|mb)\.([0-9a-f]+)\.\d+-.")
# Ids of daemons from before generations (pbxr-s-<cid>, pbxr-mb1-<cid>, booking's pbxr-bs-<cid>):
# whoever made them is gone.
_LEGACY_LISTEN_ID = re.compile(r"^pbxr-(?:s|m|mb|bs|bm|bb)\d*-.")
_serials = itertools.count()
# No RTP for this long means a silence gap (a caller that sends nothing while quiet).
GAP_S = 0.2
# How long the snoop and externalMedia legs may take to enter Stasis after Asterisk answered
# their requests (issue 11, D2), and the first pause between addChannel attempts (doubling).
STASIS_ENTRY_S = 3.0
STASIS_RETRY_S = 0.01


@dataclass(frozen=True, slots=True)
class ListenEvent(ev.Event):
    """``kind``: speech_started | final | no_input | error."""

    kind: str = ""
    transcript: Transcript | None = None
    detail: str = ""
    # final: ms from the confirmed end of the utterance to its transcript
    wait_ms: int | None = None


def new_generation() -> str:
    """A fresh daemon generation: 8 hex digits (never a ``-``, which ends the role part)."""
    return secrets.token_hex(4)


def listen_id(role: str, caller_channel_id: str, generation: str, serial: int) -> str:
    return f"{ID_PREFIX}{role}.{generation}.{serial}-{caller_channel_id}"


def listening_generation(object_id: str) -> str | None:
    """The generation of the daemon that made a listening leg or bridge (``""`` for one made
    before generations existed); None when ``object_id`` is not a listening id."""
    m = _LISTEN_ID.match(object_id)
    if m is not None:
        return m.group(1)
    return "" if _LEGACY_LISTEN_ID.match(object_id) else None


@dataclass(frozen=True)
class MediaSettings:
    rtp_host: str = "127.0.0.1"
    format: str = "slin16"
    endpointer: EndpointerConfig | None = None
    recognition_timeout: float = 5.0
    # One per daemon (app.py builds one MediaSettings): in every listening id (module doc).
    generation: str = field(default_factory=new_generation)


class Listener:
    """Owns one call's listening resources; ``stop()`` gives every one of them back."""

    def __init__(
        self,
        call: Call,
        ari: AriClient,
        registrar: Any,
        speech: EnginePool,
        ports: PortPool,
        settings: MediaSettings,
    ) -> None:
        self.call = call
        self.ari = ari
        self.registrar = registrar
        self.speech = speech
        self.ports = ports
        self.settings = settings
        self.fmt: WireFormat = FORMATS[settings.format]
        cid = call.channel_id
        # A call may listen more than once (booking after routing): the serial tells them apart.
        serial = next(_serials)
        self.snoop_id, self.media_id, self.bridge_id = (
            listen_id(role, cid, settings.generation, serial) for role in LISTEN_ROLES)
        self.endpoint: RtpEndpoint | None = None
        self.endpointer = Endpointer(settings.endpointer or EndpointerConfig(), self.fmt.sample_rate)
        self._task: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.utterances = 0
        self.log = log.bind(call_id=call.call_id)

    async def start(self) -> None:
        call = self.call
        for cid in (self.snoop_id, self.media_id):
            self.registrar.claim(call, cid)
            call.owned_channels.add(cid)
        call.owned_bridges.add(self.bridge_id)
        self.endpoint = await RtpEndpoint.open_from_pool(self.ports, self.settings.rtp_host, self.fmt)
        port = self.endpoint.local_address[1]
        await self.ari.create_bridge("mixing", bridge_id=self.bridge_id, name=f"listen {call.call_id}")
        await self.ari.snoop(call.channel_id, spy="in", app_args=("snoop-in", call.channel_id),
                             snoop_id=self.snoop_id)
        media = await self.ari.external_media(f"{self.settings.rtp_host}:{port}", fmt=self.fmt.name,
                                              channel_id=self.media_id)
        host = media.channelvars.get("UNICASTRTP_LOCAL_ADDRESS")
        peer_port = media.channelvars.get("UNICASTRTP_LOCAL_PORT")
        if not (host and peer_port):
            host = await self.ari.get_variable(self.media_id, "UNICASTRTP_LOCAL_ADDRESS")
            peer_port = await self.ari.get_variable(self.media_id, "UNICASTRTP_LOCAL_PORT")
        self.endpoint.expect_peer(host, int(peer_port))
        await self._join_legs()
        self._task = asyncio.create_task(self._pump(), name=f"listen-{call.channel_id}")
        self._task.add_done_callback(self._pump_done)

    async def _join_legs(self) -> None:
        """Snoop and externalMedia legs into the listening bridge. Asterisk enters Stasis for each
        on a thread of its own, sometimes only after answering the request that made it; until
        then addChannel answers 422 "Channel not in Stasis application" (issue 11, D2: such calls
        went deaf for their whole length). So 422 is tried again, briefly, and only 422."""
        pause = STASIS_RETRY_S
        async with asyncio.timeout(STASIS_ENTRY_S):
            while True:
                try:
                    await self.ari.add_channel(self.bridge_id, [self.snoop_id, self.media_id])
                    return
                except AriError as exc:
                    if exc.status != 422:
                        raise
                    self.log.debug("listen_legs_not_in_stasis_yet", retry_in_s=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)

    async def _open(self) -> tuple[Any, Any]:
        """A recogniser session for an utterance: (context manager, session), or (None, None)
        with an error delivered (the call falls back to the keypad)."""
        try:
            session_cm = self.speech.session()
            return session_cm, await session_cm.__aenter__()
        except SpeechError as exc:
            self.call.deliver(ListenEvent(type="PbxRouterListen", kind="error", detail=str(exc)))
            return None, None

    async def _recognise(self, session_cm: Any, session: Any, resampler: Resampler | None) -> Transcript:
        """The utterance's final transcript; its session is closed whatever happens."""
        try:
            if resampler is not None:
                tail = resampler.flush()
                if tail:
                    await session.feed(tail)
            result: Transcript = await session.finish(timeout=self.settings.recognition_timeout)
            return result
        finally:
            await _close(session_cm)

    async def _deliver(self, result: Awaitable[Transcript], reason: str) -> None:
        loop = asyncio.get_running_loop()
        ended = loop.time()
        try:
            t = await result
        except SpeechError as exc:
            self.call.deliver(ListenEvent(type="PbxRouterListen", kind="error", detail=str(exc)))
            return
        self.utterances += 1
        self.call.deliver(ListenEvent(type="PbxRouterListen", kind="final", transcript=t, detail=reason,
                                      wait_ms=round((loop.time() - ended) * 1000)))

    def _background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        task.add_done_callback(_retrieve)
        return task

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        # Ears that stop must not leave the caller waiting for a transcript that never comes.
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("listen_failed", error=repr(exc))
        # Crashed, or the RTP socket closed under us: either way nothing more will be heard.
        detail = f"listener failed: {exc!r}" if exc is not None else "caller audio stopped"
        self.call.deliver(ListenEvent(type="PbxRouterListen", kind="error", detail=detail))

    def new_turn(self) -> None:
        """The prompt finished: the no-input clock starts now."""
        self.endpointer.reset()

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._task, *self._finishing) if t is not None]
        for t in tasks:
            t.cancel()
        # gather, not a bare await: our own cancellation must still propagate.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        # Free Asterisk's side now (before an agent is rung), not at the end of the call.
        for cid in (self.snoop_id, self.media_id):
            with contextlib.suppress(AriError):
                await self.ari.hangup(cid)
            self.call.owned_channels.discard(cid)
        with contextlib.suppress(AriError):
            await self.ari.delete_bridge(self.bridge_id)
        self.call.owned_bridges.discard(self.bridge_id)

    async def _pump(self) -> None:
        assert self.endpoint is not None
        endpoint = self.endpoint
        session_cm: Any = None
        session: Any = None
        resampler: Resampler | None = None
        # Recognition started at a pause (SpeechPaused): the final transcript if the caller stays
        # silent, withdrawn if they go on. The utterance's audio is kept for that case: the new
        # session hears it whole, not just what came after the pause.
        early: asyncio.Task[Transcript] | None = None
        keep_audio = self.endpointer.cfg.early_final_ms > 0
        utterance = bytearray()
        try:
            while True:
                try:
                    pcm = await endpoint.next_frame(GAP_S)
                except TimeoutError:
                    events = self.endpointer.gap(int(GAP_S * 1000))
                else:
                    if pcm is None:
                        return
                    events = self.endpointer.feed(pcm)
                for e in events:
                    if isinstance(e, SpeechStarted):
                        self.call.deliver(ListenEvent(type="PbxRouterListen", kind="speech_started"))
                        utterance.clear()
                        session_cm, session = await self._open()
                        resampler = Resampler(self.fmt.sample_rate, self.speech.sample_rate)
                    elif isinstance(e, Audio):
                        if early is not None:
                            # The caller went on after the pause: the utterance is not over.
                            early.cancel()
                            early = None
                            session_cm, session = await self._open()
                            resampler = Resampler(self.fmt.sample_rate, self.speech.sample_rate)
                            pcm_in = bytes(utterance) + e.pcm
                        else:
                            pcm_in = e.pcm
                        if keep_audio:
                            utterance += e.pcm
                        if session is None or resampler is None:
                            continue
                        try:
                            await session.feed(resampler.process(pcm_in))
                        except SpeechError as exc:
                            await _close(session_cm)
                            session_cm = session = None
                            self.call.deliver(ListenEvent(type="PbxRouterListen", kind="error", detail=str(exc)))
                    elif isinstance(e, SpeechPaused):
                        if session is not None:
                            early = self._background(self._recognise(session_cm, session, resampler))
                            session_cm = session = resampler = None
                    elif isinstance(e, SpeechEnded):
                        utterance.clear()
                        # Finish in a task of its own: audio keeps flowing (and being counted)
                        # while the recogniser completes, so a slow worker never turns into lost RTP.
                        if early is not None:
                            self._background(self._deliver(early, e.reason))
                            early = None
                        elif session is not None:
                            self._background(self._deliver(self._recognise(session_cm, session, resampler), e.reason))
                            session_cm = session = resampler = None
                        else:
                            # An utterance nobody could transcribe (its recogniser failed): it
                            # must not count as "the caller said something" for this turn.
                            self.endpointer.reset()
                    elif isinstance(e, NoInput):
                        self.call.deliver(ListenEvent(type="PbxRouterListen", kind="no_input"))
        finally:
            await _close(session_cm)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A withdrawn early recognition may end in an error nobody awaits: seen, not warned about.
    if not task.cancelled():
        task.exception()


async def _close(cm: Any) -> None:
    if cm is not None:
        # Bounded: closing a session whose worker just died must not stall the caller's audio.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await cm.__aexit__(None, None, None)
