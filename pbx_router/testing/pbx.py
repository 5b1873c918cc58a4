"""The telephony behaviour of the emulator: what Asterisk 22 does to channels, bridges and
playbacks, and which events it emits in which order. Every sequence here is taken from
``ari-samples/*/events.jsonl``; where the recordings had nothing, the comment says "unrecorded".

HTTP lives in ``http_api``; this module raises ``AriError`` with the exact status and body.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx_router.log import get_logger
from pbx_router.testing import wire
from pbx_router.testing.agents import AgentBehaviour
from pbx_router.testing.apps import StasisApp
from pbx_router.testing.audio import RTP_FORMATS, CallerAudio, Samples, tone
from pbx_router.testing.call import PlaybackRecord, SimulatedCall
from pbx_router.testing.model import (
    Bridge,
    Channel,
    Dialplan,
    Endpoint,
    Party,
    Playback,
    RequestRecord,
)
from pbx_router.testing.rtp import FRAME_SECONDS, ExternalMediaStream
from pbx_router.testing.sounds import DEFAULT_SOUNDS, plan_media

log = get_logger(__name__)

DEFAULT_APP = "pbx-router"
HANGUP_REASONS: dict[str, int] = {
    "normal": 16, "busy": 17, "congestion": 34, "no_answer": 19, "timeout": 19,
    "rejected": 21, "unallocated": 1, "normal_unspecified": 31, "number_incomplete": 28,
    "codec_mismatch": 58, "interworking": 127, "failure": 38, "answered_elsewhere": 26,
}
CAUSE_TEXT: dict[int, str] = {
    0: "Unknown", 1: "Unallocated (unassigned) number", 16: "Normal Clearing",
    17: "User busy", 19: "User alerting, no answer", 21: "Call Rejected",
    26: "Answered elsewhere", 28: "Invalid number format (incomplete number)",
    31: "Normal, unspecified", 34: "Circuit/channel congestion", 38: "Network out of order",
    58: "Bearer capability not available", 127: "Interworking, unspecified",
}
KNOWN_FORMATS = frozenset({"ulaw", "alaw", "slin", "slin16", "gsm", "g722", "g729", "slin12",
                           "slin24", "slin32", "slin44", "slin48", "slin96", "slin192", "opus",
                           "speex", "ilbc", "g726", "lpc10", "adpcm", "siren7", "siren14"})
DTMF_DURATION_MS = 100
TALK_START_DELAY = 0.2  # ChannelTalkingStarted came ~0.2 s after speech began
TALK_SILENCE = 2.5  # default TALK_DETECT silence threshold (2500 ms)


class AriError(Exception):
    """An ARI error reply: status and JSON body exactly as Asterisk sends them."""

    def __init__(self, status: int, message: str, key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.body = {key: message}


def parse_caller_id(text: str | None) -> Party:
    """``Name <number>`` or a bare number, as ``callerId`` on originate."""
    if not text:
        return Party()
    if "<" in text and text.rstrip().endswith(">"):
        name, _, number = text.rpartition("<")
        return Party(name.strip().strip('"'), number.rstrip()[:-1].strip())
    return Party("", text.strip())


class Pbx:
    def __init__(self) -> None:
        self.sounds: dict[str, float] = dict(DEFAULT_SOUNDS)
        self.requests: list[RequestRecord] = []
        self.sent_events: list[dict[str, Any]] = []
        self._channels: dict[str, Channel] = {}
        self._bridges: dict[str, Bridge] = {}
        self._playbacks: dict[str, Playback] = {}
        self._pending: dict[str, list[Playback]] = {}  # target uri -> queued playbacks
        self._current: dict[str, Playback] = {}  # target uri -> playing/paused playback
        self._endpoints: dict[str, Endpoint] = {}
        self._apps: dict[str, StasisApp] = {}
        self._contexts: set[str] = {"default", "from-pstn", "from-phones", "from-agents"}
        self._device_states: dict[str, str] = {}  # Stasis: devices set through PUT
        self._calls: list[SimulatedCall] = []
        self._handles: dict[str, SimulatedCall] = {}
        self._used_channel_ids: set[str] = set()
        self._ids = itertools.count(random.randint(10, 60))
        self._name_counters: dict[str, itertools.count[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.startup_time = time.time()
        self.add_endpoint("PJSIP/softphone")

    # ----------------------------------------------------------------- read-only views
    @property
    def channels(self) -> Mapping[str, Channel]:
        return MappingProxyType(self._channels)

    @property
    def bridges(self) -> Mapping[str, Bridge]:
        return MappingProxyType(self._bridges)

    @property
    def playbacks(self) -> Mapping[str, Playback]:
        return MappingProxyType(self._playbacks)

    @property
    def calls(self) -> tuple[SimulatedCall, ...]:
        return tuple(self._calls)

    @property
    def endpoints(self) -> Mapping[str, Endpoint]:
        return MappingProxyType(self._endpoints)

    @property
    def apps(self) -> Mapping[str, StasisApp]:
        return MappingProxyType(self._apps)

    # ----------------------------------------------------------------- configuration
    def add_endpoint(self, name: str, behaviour: AgentBehaviour | None = None) -> Endpoint:
        tech, _, resource = name.partition("/")
        if not tech or not resource:
            raise ValueError(f"endpoint must look like TECH/resource, got {name!r}")
        endpoint = Endpoint(tech, resource, behaviour or AgentBehaviour.answer_after(0.0))
        self._endpoints[endpoint.key] = endpoint
        return endpoint

    def add_context(self, name: str) -> None:
        self._contexts.add(name)

    def endpoint(self, name: str) -> EndpointView:
        if name not in self._endpoints:
            raise KeyError(name)
        return EndpointView(self, name)

    def handle(self, channel_id: str) -> SimulatedCall:
        """A test-side handle on any channel (callers, agent legs, ...)."""
        existing = self._handles.get(channel_id)
        if existing is None:
            existing = SimulatedCall(self, channel_id)
            channel = self._channels.get(channel_id)
            if channel is not None:
                existing.name = channel.name
            self._handles[channel_id] = existing
        return existing

    # ----------------------------------------------------------------- tasks & clock
    def _spawn(self, coro: Coroutine[Any, Any, None], channel: Channel | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if channel is not None:
            channel.tasks.add(task)
            task.add_done_callback(channel.tasks.discard)

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # a timer must never take the emulator down; it is a test bug
            log.exception("emulator_task_failed")

    def _later(self, delay: float, action: Callable[[], None],
               channel: Channel | None = None) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            action()
        self._spawn(run(), channel)

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def flush(self) -> None:
        """Wait until every queued event is on the wire (events precede the HTTP reply)."""
        sockets = {id(a.socket): a.socket for a in self._apps.values() if a.socket is not None}
        for socket in sockets.values():
            await socket.flush()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ----------------------------------------------------------------- ids & names
    def _new_channel_id(self, wanted: str | None) -> str:
        if wanted:
            if wanted in self._used_channel_ids:
                raise AriError(409, "Channel with given unique ID already exists")
            channel_id = wanted
        else:
            channel_id = f"{int(time.time())}.{next(self._ids)}"
        self._used_channel_ids.add(channel_id)
        return channel_id

    def _seq_name(self, counter: str) -> str:
        # chan_pjsip, Snoop and the unreal (Local/Announcer) drivers each number on their own.
        numbers = self._name_counters.setdefault(counter, itertools.count())
        return f"{next(numbers):08x}"

    # ----------------------------------------------------------------- apps & delivery
    def app(self, name: str) -> StasisApp:
        app = self._apps.get(name)
        if app is None:
            app = self._apps[name] = StasisApp(name)
        return app

    def app_exists(self, name: str) -> bool:
        app = self._apps.get(name)
        return app is not None and (app.active or bool(app.channel_ids) or bool(app.bridge_ids))

    def _deliver(self, app: StasisApp, event: dict[str, Any]) -> None:
        if not app.send(event):
            return
        self.sent_events.append(event)
        for key in ("channel", "peer"):
            if key in event:
                handle = self._handles.get(event[key]["id"])
                if handle is not None:
                    handle.events.append(event)
        playback = event.get("playback")
        if playback is not None and playback["target_uri"].startswith("channel:"):
            handle = self._handles.get(playback["target_uri"][8:])
            if handle is not None:
                handle.events.append(event)

    def _channel_event(self, channel: Channel, event_type: str, key: str = "channel",
                       once: bool = False, endpoint_only: bool = False,
                       **fields: Any) -> None:
        """Send to every app watching the channel: once per subscription that matches, which
        is why channel events come twice under an endpoint subscription (FINDINGS §6)."""
        snapshot = channel.json()
        for app in list(self._apps.values()):
            copies = 0
            if not endpoint_only and channel.id in app.channel_ids:
                copies += 1
            if app.subscribes_endpoint(channel.endpoint):
                copies += 1
            if app.subscribe_all:
                copies = max(copies, 1)
            if once:
                copies = min(copies, 1)
            for _ in range(copies):
                self._deliver(app, wire.event(event_type, app.name, **fields, **{key: snapshot}))

    def _bridge_event(self, bridge: Bridge, channel: Channel, event_type: str) -> None:
        bridge_json = bridge.json()
        for app in list(self._apps.values()):
            if channel.id in app.channel_ids or bridge.id in app.bridge_ids or app.subscribe_all:
                self._deliver(app, wire.event(event_type, app.name, bridge=bridge_json,
                                              channel=channel.json()))

    def _playback_event(self, playback: Playback, event_type: str) -> None:
        app = self._apps.get(playback.app)
        if app is not None:
            self._deliver(app, wire.event(event_type, app.name, playback=playback.json()))

    def _varset(self, channel: Channel, variable: str, value: str) -> None:
        self._channel_event(channel, "ChannelVarset", variable=variable, value=value)

    def _endpoint_changed(self, endpoint_key: str | None) -> None:
        endpoint = self._endpoints.get(endpoint_key or "")
        if endpoint is None:
            return
        for app in list(self._apps.values()):
            if app.subscribes_endpoint(endpoint.key):
                self._deliver(app, wire.event("EndpointStateChange", app.name,
                                              endpoint=endpoint.json()))

    def _device_changed(self, name: str, state: str) -> None:
        for app in list(self._apps.values()):
            if name in app.device_names:
                event = wire.event("DeviceStateChanged", app.name,
                                   device_state={"name": name, "state": state})
                self._deliver(app, event)

    def device_state(self, name: str) -> str:
        if name in self._device_states:
            return self._device_states[name]
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            return "INVALID"
        states = [self._channels[c].state for c in endpoint.channel_ids if c in self._channels]
        if not states:
            return "NOT_INUSE"
        return "INUSE" if "Up" in states else "RINGING"

    # ----------------------------------------------------------------- channel lifecycle
    def _register(self, channel: Channel) -> None:
        self._channels[channel.id] = channel
        endpoint = self._endpoints.get(channel.endpoint or "")
        if endpoint is not None:
            endpoint.channel_ids.append(channel.id)

    def _enter_stasis(self, channel: Channel, app_name: str, args: list[str],
                      send_status_var: bool) -> bool:
        """Run Stasis(app,args). Returns False (STASISSTATUS=FAILED) without an events socket."""
        app_data = ",".join([app_name, *args])
        channel.dialplan = Dialplan(channel.dialplan.context, channel.dialplan.exten,
                                    channel.dialplan.priority, "Stasis", app_data)
        app = self._apps.get(app_name)
        if app is None or not app.active:
            channel.variables["STASISSTATUS"] = "FAILED"
            log.info("emulator_stasis_app_not_active", app=app_name)
            return False
        channel.app = app_name
        channel.args = list(args)
        if channel.id not in app.channel_ids:
            app.channel_ids.append(channel.id)
        channel.variables["STASISSTATUS"] = ""
        if send_status_var:
            self._varset(channel, "STASISSTATUS", "")
        self._channel_event(channel, "StasisStart", once=True, args=list(args))
        return True

    def _leave_stasis(self, channel: Channel) -> None:
        if channel.app is None:
            return
        self._channel_event(channel, "StasisEnd", once=True)
        app = self._apps.get(channel.app)
        channel.app = None
        if app is not None and not channel.subscribed_to_end and channel.id in app.channel_ids:
            app.channel_ids.remove(channel.id)

    def _destroy(self, channel: Channel, cause: int, tech_cause: int | None = None) -> None:
        """Remove the channel; ChannelDestroyed only reaches apps still subscribed to it."""
        if channel.gone:
            return
        channel.gone = True
        if channel.subscribed_to_end:
            fields: dict[str, Any] = {"cause": cause, "cause_txt": CAUSE_TEXT.get(cause, "Unknown")}
            if tech_cause is not None:
                fields["tech_cause"] = tech_cause
            self._channel_event(channel, "ChannelDestroyed", **fields)
        elif channel.endpoint:
            self._channel_event(channel, "ChannelDestroyed", endpoint_only=True,
                                cause=cause, cause_txt=CAUSE_TEXT.get(cause, "Unknown"))
        for app in self._apps.values():
            if channel.id in app.channel_ids:
                app.channel_ids.remove(channel.id)
        self._channels.pop(channel.id, None)
        endpoint = self._endpoints.get(channel.endpoint or "")
        if endpoint is not None and channel.id in endpoint.channel_ids:
            endpoint.channel_ids.remove(channel.id)
            self._endpoint_changed(endpoint.key)
            self._device_changed(endpoint.key, self.device_state(endpoint.key))
        if channel.media is not None:
            channel.media.close()
        current = asyncio.current_task()
        for task in list(channel.tasks):
            if task is not current:
                task.cancel()

    def hangup_channel(self, channel: Channel, *, by_app: bool, cause: int = 16,
                       request_fields: dict[str, Any] | None = None) -> None:
        """The hangup sequence: HangupRequest, playbacks failed, leave bridge, StasisEnd,
        snoops torn down, then STASISSTATUS + ChannelDestroyed for channels the app created."""
        if channel.gone:
            return
        if request_fields is None:
            request_fields = {"cause": 32, "soft": True} if by_app else {}
        handle = self._handles.get(channel.id)
        if channel.app is not None or channel.subscribed_to_end:
            self._channel_event(channel, "ChannelHangupRequest", **request_fields)
        self._fail_playbacks(f"channel:{channel.id}")
        if channel.bridge_id is not None:
            bridge = self._bridges.get(channel.bridge_id)
            if bridge is not None:
                bridge.destroy_visible = True  # a hangup inside subscribes the bridge
                self._leave_bridge(channel, bridge)
        was_in_stasis = channel.app is not None
        self._leave_stasis(channel)
        for snoop_id in list(channel.snoops):
            snoop = self._channels.get(snoop_id)
            if snoop is not None:
                self._end_snoop(snoop)
        if was_in_stasis and channel.subscribed_to_end:
            self._varset(channel, "STASISSTATUS", "SUCCESS")
        if channel.kind == "created":
            channel.dialplan = Dialplan(channel.dialplan.context, channel.dialplan.exten,
                                        channel.dialplan.priority, "", "")
        elif channel.kind in ("originated", "external_media"):
            channel.dialplan = Dialplan(channel.dialplan.context, channel.dialplan.exten,
                                        channel.dialplan.priority, "AppDial2", "(Outgoing Line)")
        self._destroy(channel, cause)
        if handle is not None and handle.fate in ("in_stasis", "bridged"):
            handle.fate = "hung_up_by_app" if by_app else "hung_up_by_caller"

    def _end_snoop(self, snoop: Channel) -> None:
        """Recorded: the snoop leaves its bridge and Stasis, with no HangupRequest/Destroyed."""
        if snoop.bridge_id is not None:
            bridge = self._bridges.get(snoop.bridge_id)
            if bridge is not None:
                bridge.destroy_visible = True
                self._leave_bridge(snoop, bridge)
        self._leave_stasis(snoop)
        snoop.subscribed_to_end = False
        self._destroy(snoop, 16)

    # ----------------------------------------------------------------- inbound calls
    def place_inbound(self, *, caller_number: str, caller_name: str, dialled: str,
                      endpoint: str, context: str, app_args: list[str] | None, app_name: str,
                      audio: CallerAudio | None, audio_at: float,
                      dtmf: list[tuple[float, str]], hangup_after: float | None) -> SimulatedCall:
        tech = endpoint.split("/", 1)[0]
        channel = Channel(
            id=self._new_channel_id(None),
            name=f"{endpoint}-{self._seq_name(tech)}",
            kind="inbound",
            dialplan=Dialplan(context, dialled, 1, "Stasis", app_name),
            created_at=time.time(),
            state="Ring",
            protocol_id=f"{random.randint(1, 99)}-{random.randint(10000, 99999)}@127.0.0.1",
            caller=Party(caller_name, caller_number),
            endpoint=endpoint if endpoint in self._endpoints else None,
            audio=audio,
            audio_at=audio_at,
        )
        self._contexts.add(context)
        self._register(channel)
        call = self.handle(channel.id)
        call.name = channel.name
        call.dtmf_plan = list(dtmf)
        self._calls.append(call)
        self._endpoint_changed(channel.endpoint)
        args = [dialled] if app_args is None else list(app_args)
        if not self._enter_stasis(channel, app_name, args, send_status_var=False):
            call.fate = "stasis_failed"
            self._destroy(channel, 16)  # the dialplan goes on to Hangup()
            return call
        call.fate = "in_stasis"
        if hangup_after is not None:
            self._later(hangup_after, lambda: self.remote_hangup(channel), channel)
        return call

    def remote_hangup(self, channel: Channel, cause: int = 16) -> None:
        """The far end sends BYE: HangupRequest without cause (recorded with sipp)."""
        self.hangup_channel(channel, by_app=False, cause=cause, request_fields={})

    def answer(self, channel: Channel) -> None:
        if channel.state == "Up":
            return
        channel.state = "Up"
        channel.answered_at = self._now()
        self._channel_event(channel, "ChannelStateChange")
        call = self._handles.get(channel.id)
        if call is not None:
            call.answered = True
            for at, digit in call.dtmf_plan:
                self._later(at, functools.partial(self.caller_dtmf, channel, digit), channel)
        if channel.talk_detect:
            self._schedule_talk_detect(channel)

    def caller_dtmf(self, channel: Channel, digit: str) -> None:
        if not channel.gone and channel.app is not None:
            self._channel_event(channel, "ChannelDtmfReceived", digit=digit,
                                duration_ms=DTMF_DURATION_MS)

    def caller_says(self, channel: Channel, audio: CallerAudio, after: float = 0.0) -> None:
        """The caller speaks again, ``after`` seconds from now (what they said before is over)."""
        if channel.answered_at is None:
            raise RuntimeError(f"{channel.id}: a caller speaks only once answered")
        channel.audio = audio
        channel.audio_at = self._now() + after - channel.answered_at
        if channel.talk_detect:
            self._schedule_talk_detect(channel)

    def _caller_audio_window(self, channel: Channel) -> tuple[float, float] | None:
        if channel.audio is None or channel.answered_at is None:
            return None
        start = channel.answered_at + channel.audio_at
        return start, start + channel.audio.seconds

    def _schedule_talk_detect(self, channel: Channel) -> None:
        """ChannelTalkingStarted/Finished from the energy of the caller's audio."""
        window = self._caller_audio_window(channel)
        if window is None or channel.audio is None:
            return
        pcm = channel.audio.samples(8000)
        frames = len(pcm) // 160
        if frames == 0:
            return
        energy = np.sqrt(np.mean(pcm[: frames * 160].reshape(frames, 160).astype(np.float64) ** 2,
                                 axis=1))
        voiced = np.flatnonzero(energy > 500.0)
        if len(voiced) == 0:
            return
        segments: list[tuple[int, int]] = []
        first = last = int(voiced[0])
        for index in voiced[1:]:
            if (index - last) * FRAME_SECONDS >= TALK_SILENCE:
                segments.append((first, last))
                first = int(index)
            last = int(index)
        segments.append((first, last))
        now = self._now()
        for begin, end in segments:
            started = window[0] + begin * FRAME_SECONDS + TALK_START_DELAY
            finished = window[0] + (end + 1) * FRAME_SECONDS + TALK_SILENCE
            duration = int((end + 1 - begin) * FRAME_SECONDS * 1000)
            self._later(max(0.0, started - now), lambda: self._talk(channel, None), channel)
            self._later(max(0.0, finished - now), functools.partial(self._talk, channel, duration),
                        channel)

    def _talk(self, channel: Channel, duration: int | None) -> None:
        if channel.gone or not channel.talk_detect or channel.app is None:
            return
        if duration is None:
            self._channel_event(channel, "ChannelTalkingStarted")
        else:
            self._channel_event(channel, "ChannelTalkingFinished", duration=duration)

    def continue_in_dialplan(self, channel: Channel, context: str | None, extension: str | None,
                             priority: int | None) -> None:
        target_context = context or channel.dialplan.context
        target_exten = extension or channel.dialplan.exten
        target_priority = priority if priority is not None else channel.dialplan.priority + 1
        self._fail_playbacks(f"channel:{channel.id}")
        if channel.bridge_id is not None:
            bridge = self._bridges.get(channel.bridge_id)
            if bridge is not None:
                self._leave_bridge(channel, bridge)
        self._leave_stasis(channel)
        channel.dialplan = Dialplan(target_context, target_exten, target_priority, "", "")
        handle = self._handles.get(channel.id)
        if handle is not None:
            handle.fate = "continued"
            handle.continued_to = (target_context, target_exten, target_priority)
        if target_context not in self._contexts:
            # Recorded: 204, StasisEnd, then the PBX hangs up ("sent to invalid extension").
            self._later(0.005, lambda: self._destroy(channel, 16), channel)

    # ----------------------------------------------------------------- outbound legs
    def originate(self, params: Mapping[str, str], create_only: bool) -> Channel:
        endpoint_name = params.get("endpoint", "")
        if not endpoint_name:
            raise AriError(400, "Endpoint must be specified")
        if "/" not in endpoint_name:
            raise AriError(400, "Invalid endpoint specified")
        app_name = params.get("app", "")
        if not app_name and not params.get("extension") and not create_only:
            raise AriError(400, "Application or extension must be specified")
        if create_only and not app_name:
            raise AriError(400, "Application must be specified")
        if params.get("channelId") and params["channelId"] in self._used_channel_ids:
            raise AriError(409, "Channel with given unique ID already exists")
        endpoint = self._endpoints.get(endpoint_name)
        if endpoint is None or (endpoint.behaviour and endpoint.behaviour.mode == "unreachable"):
            raise AriError(500, "Allocation failed", key="error")
        caller = parse_caller_id(params.get("callerId"))
        channel = Channel(
            id=self._new_channel_id(params.get("channelId")),
            name=f"{endpoint.key}-{self._seq_name(endpoint.technology)}",
            kind="created" if create_only else "originated",
            dialplan=Dialplan("from-agents", "s", 1, "" if create_only else "AppDial2",
                              "" if create_only else "(Outgoing Line)"),
            created_at=time.time(),
            protocol_id=str(uuid.uuid4()),
            caller=caller,
            connected=Party(caller.name, caller.number),
            endpoint=endpoint.key,
            agent=endpoint.behaviour,
            subscribed_to_end=bool(app_name),
        )
        try:
            channel.dial_timeout = float(params.get("timeout", "30") or 30)
        except ValueError as exc:
            raise AriError(400, "timeout must be a number") from exc
        args = [a for a in params.get("appArgs", "").split(",")] if params.get("appArgs") else []
        if app_name:
            app = self.app(app_name)
            if channel.id not in app.channel_ids:
                app.channel_ids.append(channel.id)
        self._register(channel)
        handle = self.handle(channel.id)
        handle.name = channel.name
        handle.fate = "in_stasis"
        if create_only:
            self._later(0.001, lambda: self._created(channel, app_name, args), channel)
        else:
            self._later(0.001, lambda: self._ring(channel, app_name, args, dialstring_kept=True),
                        channel)
        return channel

    def _announce_new_channel(self, channel: Channel) -> None:
        """What only an endpoint subscription sees of a new leg (states/events.jsonl)."""
        self._endpoint_changed(channel.endpoint)
        created = Channel(**{**channel.__dict__, "tasks": set()})
        created.protocol_id, created.caller, created.connected = "", Party(), Party()
        created.dialplan = Dialplan("from-agents", "s", 1, "", "")
        self._channel_event(created, "ChannelCreated", endpoint_only=True)
        self._channel_event(channel, "ChannelDialplan", endpoint_only=True,
                            dialplan_app=channel.dialplan.app_name,
                            dialplan_app_data=channel.dialplan.app_data)
        self._channel_event(channel, "ChannelCallerId", endpoint_only=True,
                            caller_presentation=0,
                            caller_presentation_txt="Presentation Allowed, Not Screened")
        self._channel_event(channel, "ChannelConnectedLine", endpoint_only=True)

    def _created(self, channel: Channel, app_name: str, args: list[str]) -> None:
        self._endpoint_changed(channel.endpoint)
        app_data = ",".join([app_name, *args])
        channel.dialplan = Dialplan("from-agents", "s", 1, "Stasis", app_data)
        self._channel_event(channel, "ChannelDialplan", dialplan_app="Stasis",
                            dialplan_app_data=app_data)
        if not self._enter_stasis(channel, app_name, args, send_status_var=True):
            self._destroy(channel, 16)

    def dial(self, channel: Channel, caller: Channel | None, timeout: float) -> None:
        if channel.state != "Down":
            raise AriError(409, "Channel is not in the 'Down' state")
        channel.dial_timeout = timeout
        if caller is not None:
            channel.connected = Party(caller.caller.name, caller.caller.number)
            self._channel_event(channel, "ChannelConnectedLine")
        self._ring(channel, None, [], dialstring_kept=False)

    def _dial_event(self, channel: Channel, status: str, dialstring: str) -> None:
        self._channel_event(channel, "Dial", key="peer", dialstatus=status, forward="",
                            dialstring=dialstring)

    def _ring(self, channel: Channel, app_name: str | None, args: list[str],
              dialstring_kept: bool) -> None:
        """Dial "", Ringing, Dial RINGING, Up, Dial ANSWER, then StasisStart on answer (§4).
        ``app_name`` None: a created channel already in Stasis (/dial): no second StasisStart."""
        if channel.gone:
            return
        behaviour = channel.agent or AgentBehaviour.answer_after(0.0)
        resource = (channel.endpoint or "/").split("/", 1)[1]
        later_dialstring = resource if dialstring_kept else ""
        if app_name is not None:
            self._announce_new_channel(channel)
        self._dial_event(channel, "", resource)
        if behaviour.mode == "busy":
            # Unrecorded: modelled on the no-answer case with Q.850 17 / SIP 486.
            self._dial_event(channel, "BUSY", later_dialstring)
            self._fail_leg(channel, 17, 486)
            return
        if behaviour.mode == "never_answer" and not behaviour.ring:
            self._later(channel.dial_timeout, lambda: self._fail_leg(channel, 19, 480), channel)
            return
        channel.state = "Ringing"
        self._channel_event(channel, "ChannelStateChange")
        self._dial_event(channel, "RINGING", later_dialstring)
        self._device_changed(channel.endpoint or "", "RINGING")
        if behaviour.mode == "never_answer":
            self._later(channel.dial_timeout, lambda: self._fail_leg(channel, 19, 480), channel)
            return
        if behaviour.answer_delay >= channel.dial_timeout:
            self._later(channel.dial_timeout, lambda: self._fail_leg(channel, 19, 480), channel)
            return
        self._later(behaviour.answer_delay,
                    lambda: self._agent_answers(channel, app_name, args, later_dialstring),
                    channel)

    def _agent_answers(self, channel: Channel, app_name: str | None, args: list[str],
                       dialstring: str) -> None:
        if channel.gone:
            return
        channel.state = "Up"
        channel.answered_at = self._now()
        self._channel_event(channel, "ChannelStateChange")
        self._dial_event(channel, "ANSWER", dialstring)
        handle = self._handles.get(channel.id)
        if handle is not None:
            handle.answered = True
        if app_name:
            if not self._enter_stasis(channel, app_name, args, send_status_var=True):
                self._destroy(channel, 16)
                return
        self._device_changed(channel.endpoint or "", "INUSE")
        behaviour = channel.agent
        if behaviour is not None and behaviour.talk_seconds is not None:
            self._later(behaviour.talk_seconds, lambda: self.remote_hangup(channel), channel)

    def _fail_leg(self, channel: Channel, cause: int, tech_cause: int) -> None:
        """No answer / busy. For an originated leg (not yet in Stasis) only ChannelDestroyed
        follows (recorded, cause 19). For a created leg in Stasis (unrecorded) it is hung up."""
        if channel.gone:
            return
        if channel.app is not None:
            self._dial_event(channel, "NOANSWER" if cause == 19 else "BUSY", "")
            self.hangup_channel(channel, by_app=False, cause=cause,
                                request_fields={"cause": cause})
            return
        self._destroy(channel, cause, tech_cause)
        handle = self._handles.get(channel.id)
        if handle is not None:
            handle.fate = "hung_up_by_caller"

    # ----------------------------------------------------------------- snoop & externalMedia
    def snoop(self, target: Channel, params: Mapping[str, str], snoop_id: str | None) -> Channel:
        spy = params.get("spy", "none") or "none"
        whisper = params.get("whisper", "none") or "none"
        allowed = ("none", "both", "out", "in")
        if spy not in allowed or whisper not in allowed:
            raise AriError(400, "Invalid direction specified")
        if spy == "none" and whisper == "none":
            raise AriError(400, "Snoop must have spy or whisper enabled")
        app_name = params.get("app", "")
        if not app_name:
            raise AriError(400, "app cannot be empty")
        args = params.get("appArgs", "").split(",") if params.get("appArgs") else []
        snoop = Channel(
            id=self._new_channel_id(snoop_id),
            name=f"Snoop/{target.id}-{self._seq_name('snoop')}",
            kind="snoop",
            dialplan=Dialplan("default", "s", 1, "", ""),
            created_at=time.time(),
            state="Up",
            snoop_of=target.id,
            spy=spy,
            whisper=whisper,
        )
        self._register(snoop)
        target.snoops.append(snoop.id)
        body = snoop
        self._enter_stasis(snoop, app_name, args, send_status_var=False)
        return body

    async def external_media(self, params: Mapping[str, str]) -> tuple[dict[str, Any], Channel]:
        app_name = params.get("app", "")
        if not app_name:
            raise AriError(400, "app cannot be empty")
        host = params.get("external_host", "")
        encapsulation = params.get("encapsulation", "rtp") or "rtp"
        transport = params.get("transport", "udp") or "udp"
        if not host:
            raise AriError(400, "external_host is required for all but websocket server "
                                "connections")
        fmt_name = params.get("format", "")
        if not fmt_name:
            raise AriError(400, "format cannot be empty")
        if encapsulation == "rtp" and transport != "udp":
            raise AriError(400, "transport must be 'udp' for rtp encapsulation")
        if encapsulation != "rtp" or transport != "udp":
            raise AriError(501, "The encapsulation and/or transport is not supported")
        remote_host, sep, port_text = host.rpartition(":")
        if not sep or not remote_host or not port_text.isdigit():
            raise AriError(400, "external_host must be <host>:<port> for all transports other "
                                "than websocket")
        if fmt_name not in KNOWN_FORMATS or fmt_name not in RTP_FORMATS:
            # Asterisk knows more codecs than the emulator can encode; both fail the same way.
            raise AriError(500, "An internal error prevented this request from being handled")
        stream = ExternalMediaStream(RTP_FORMATS[fmt_name], (remote_host, int(port_text)))
        port = await stream.open()
        channel = Channel(
            id=self._new_channel_id(params.get("channelId")),
            name=f"UnicastRTP/{host}-0x{secrets.token_hex(6)}",
            kind="external_media",
            dialplan=Dialplan("default", "s", 1, "AppDial2", "(Outgoing Line)"),
            created_at=time.time(),
            subscribed_to_end=True,
            media=stream,
        )
        channel.variables.update({"UNICASTRTP_LOCAL_PORT": str(port),
                                  "UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1",
                                  "CHANNEL(audionativeformat)": f"({fmt_name})"})
        body = channel.json()
        body["channelvars"] = {"UNICASTRTP_LOCAL_PORT": str(port),
                               "UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1"}
        app = self.app(app_name)
        app.channel_ids.append(channel.id)
        self._register(channel)
        self._dial_event(channel, "", f"{host}/c({fmt_name})")
        channel.state = "Up"
        self._channel_event(channel, "ChannelStateChange")
        self._dial_event(channel, "ANSWER", f"{host}/c({fmt_name})")
        if not self._enter_stasis(channel, app_name, [], send_status_var=True):
            self._destroy(channel, 16)  # still 200 (FINDINGS §7), then hung up
            return body, channel
        self._spawn(stream.run(lambda frame, due: self._media_frame(channel, due)), channel)
        return body, channel

    # ----------------------------------------------------------------- audio in bridges
    def _media_frame(self, listener: Channel, due: float) -> Samples | None:
        """The mix an externalMedia leg hears during the 20 ms starting at ``due``."""
        if listener.media is None or listener.bridge_id is None:
            return None
        bridge = self._bridges.get(listener.bridge_id)
        if bridge is None:
            return None
        fmt = listener.media.fmt
        n = fmt.samples_per_frame
        frame_index = int(round(due / FRAME_SECONDS))
        parts: list[Samples] = []
        continuous = False
        if bridge.moh_class is not None or bridge.announcers:
            parts.append(tone(fmt.rate, n, frame_index * n, 330.0))
        for member_id in bridge.channels:
            member = self._channels.get(member_id)
            if member is None or member is listener:
                continue
            if member.kind == "snoop":
                continuous = True
                target = self._channels.get(member.snoop_of or "")
                if target is None:
                    continue
                if member.spy in ("in", "both"):
                    heard = self._caller_speech(target, fmt.rate, n, due)
                    if heard is not None:
                        parts.append(heard)
                if member.spy in ("out", "both") and f"channel:{target.id}" in self._current \
                        and self._current[f"channel:{target.id}"].state == "playing":
                    parts.append(tone(fmt.rate, n, frame_index * n, 440.0))
            else:
                heard = self._caller_speech(member, fmt.rate, n, due)
                if heard is not None:
                    parts.append(heard)
        if not parts:
            return np.zeros(n, dtype=np.int16) if continuous else None
        mix: npt.NDArray[np.int32] = np.sum([p.astype(np.int32) for p in parts], axis=0)
        return np.clip(mix, -32768, 32767).astype(np.int16)

    def _caller_speech(self, channel: Channel, rate: int, n: int, due: float) -> Samples | None:
        window = self._caller_audio_window(channel)
        if window is None or channel.audio is None or not (window[0] <= due < window[1]):
            return None
        pcm = channel.audio.samples(rate)
        # Whole frames from the audio start keep consecutive packets contiguous in the source.
        start = int(round((due - window[0]) / FRAME_SECONDS)) * n
        chunk = pcm[start : start + n]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), dtype=np.int16)])
        return chunk

    # ----------------------------------------------------------------- bridges
    def create_bridge(self, bridge_id: str | None, types: str, name: str) -> Bridge:
        if bridge_id and bridge_id in self._bridges:
            raise AriError(409, f"Bridge with id '{bridge_id}' already exists")
        kinds = [t.strip() for t in types.split(",") if t.strip()]
        bridge_type = "holding" if "holding" in kinds else "mixing"
        bridge = Bridge(bridge_id or str(uuid.uuid4()), bridge_type, name, time.time())
        self._bridges[bridge.id] = bridge
        return bridge

    def _peer_names(self, bridge: Bridge, channel: Channel) -> list[str]:
        names = list(bridge.announcers)
        names += [self._channels[c].name for c in bridge.channels
                  if c != channel.id and c in self._channels]
        return names

    def _refresh_bridge_vars(self, bridge: Bridge, skip_single: bool) -> None:
        """BRIDGEPEER (and BRIDGEPVTCALLID when the peer is PJSIP) for each member in join
        order, emitted only when the value changes."""
        if bridge.bridge_type == "holding":
            return
        members = [self._channels[c] for c in bridge.channels if c in self._channels]
        if skip_single and len(members) + len(bridge.announcers) < 2:
            return
        for member in members:
            peers = self._peer_names(bridge, member)
            if not peers:
                continue
            peer_value = ",".join(peers)
            if member.bridge_vars.get("BRIDGEPEER") != peer_value:
                member.bridge_vars["BRIDGEPEER"] = peer_value
                self._varset(member, "BRIDGEPEER", peer_value)
                others = [self._channels[c] for c in bridge.channels
                          if c != member.id and c in self._channels]
                if len(others) == 1 and not bridge.announcers \
                        and others[0].technology == "PJSIP" \
                        and member.bridge_vars.get("BRIDGEPVTCALLID") != others[0].protocol_id:
                    member.bridge_vars["BRIDGEPVTCALLID"] = others[0].protocol_id
                    self._varset(member, "BRIDGEPVTCALLID", others[0].protocol_id)

    def _refresh_connected(self, bridge: Bridge) -> None:
        if bridge.bridge_type == "holding" or len(bridge.channels) != 2:
            return
        first, second = (self._channels[c] for c in bridge.channels)
        for member, peer in ((second, first), (first, second)):
            if (member.connected.name, member.connected.number) != \
                    (peer.caller.name, peer.caller.number):
                member.connected = Party(peer.caller.name, peer.caller.number)
                self._channel_event(member, "ChannelConnectedLine")

    def add_to_bridge(self, bridge: Bridge, channel_ids: list[str]) -> None:
        channels = []
        for channel_id in channel_ids:
            channel = self._channels.get(channel_id)
            if channel is None:
                raise AriError(400, "Channel not found")
            channels.append(channel)
        for channel in channels:
            if channel.app is None:
                raise AriError(422, "Channel not in Stasis application")
        added = False
        for channel in channels:
            if channel.bridge_id == bridge.id:
                continue
            if channel.bridge_id is not None and channel.bridge_id in self._bridges:
                self._leave_bridge(channel, self._bridges[channel.bridge_id])
            bridge.channels.append(channel.id)
            channel.bridge_id = bridge.id
            self._bridge_event(bridge, channel, "ChannelEnteredBridge")
            added = True
        if added:
            self._refresh_bridge_vars(bridge, skip_single=True)
            self._refresh_connected(bridge)
        self._update_bridged_fates(bridge)

    def _leave_bridge(self, channel: Channel, bridge: Bridge) -> None:
        if channel.id not in bridge.channels:
            return
        if bridge.bridge_type != "holding":
            for var in ("BRIDGEPEER", "BRIDGEPVTCALLID"):
                if channel.bridge_vars.get(var):
                    channel.bridge_vars[var] = ""
                    self._varset(channel, var, "")
        bridge.channels.remove(channel.id)
        channel.bridge_id = None
        self._bridge_event(bridge, channel, "ChannelLeftBridge")
        if len(bridge.channels) + len(bridge.announcers) >= 2:
            self._refresh_bridge_vars(bridge, skip_single=True)
        handle = self._handles.get(channel.id)
        if handle is not None and handle.fate == "bridged":
            handle.fate = "in_stasis"
        self._update_bridged_fates(bridge)

    def _update_bridged_fates(self, bridge: Bridge) -> None:
        for member_id in bridge.channels:
            handle = self._handles.get(member_id)
            if handle is None or handle.fate not in ("in_stasis", "bridged"):
                continue
            others = [c for c in bridge.channels if c != member_id
                      and self._channels.get(c) is not None
                      and self._channels[c].kind in ("inbound", "originated", "created")]
            handle.fate = "bridged" if others else "in_stasis"

    def remove_from_bridge(self, bridge: Bridge, channel_ids: list[str]) -> None:
        channels = []
        for channel_id in channel_ids:
            channel = self._channels.get(channel_id)
            if channel is None:
                raise AriError(400, "Channel not found")
            if channel.app is None:
                raise AriError(422, "Channel not in Stasis application")
            if channel.bridge_id != bridge.id:
                raise AriError(422, "Channel not in this bridge")
            channels.append(channel)
        for channel in channels:
            self._leave_bridge(channel, bridge)

    def destroy_bridge(self, bridge: Bridge) -> None:
        self._stop_target_playbacks(f"bridge:{bridge.id}", state="done")
        for channel_id in list(bridge.channels):
            channel = self._channels.get(channel_id)
            if channel is not None:
                self._leave_bridge(channel, bridge)
        self._bridges.pop(bridge.id, None)
        bridge_json = bridge.json()
        for app in list(self._apps.values()):
            if bridge.id in app.bridge_ids or (bridge.destroy_visible and app.active
                                               and app.name == DEFAULT_APP) or app.subscribe_all:
                self._deliver(app, wire.event("BridgeDestroyed", app.name, bridge=bridge_json))
            if bridge.id in app.bridge_ids:
                app.bridge_ids.remove(bridge.id)

    def bridge_moh(self, bridge: Bridge, moh_class: str | None, start: bool) -> None:
        if not start:
            if bridge.moh_class is None:
                raise AriError(409, "Bridge isn't playing music")
            bridge.moh_class = None
            bridge.announcers = [a for a in bridge.announcers if "ARI_MOH" not in a]
            self._refresh_bridge_vars(bridge, skip_single=False)
            return
        if bridge.moh_class is None and bridge.bridge_type != "holding":
            bridge.announcers.insert(0, f"Announcer/ARI_MOH-{self._seq_name('unreal')};2")
            self._refresh_bridge_vars(bridge, skip_single=False)
        bridge.moh_class = moh_class or "default"

    # ----------------------------------------------------------------- playbacks
    def play(self, target_uri: str, app_name: str, media: list[str], playback_id: str | None,
             language: str) -> dict[str, Any]:
        if not media or not all(media):
            raise AriError(500, "Failed to queue media for playback")
        if playback_id and playback_id in self._playbacks:
            raise AriError(409, "Playback with the given id already exists")
        playback = Playback(playback_id or str(uuid.uuid4()), media, target_uri, app_name,
                            language)
        self._playbacks[playback.id] = playback
        body = playback.json()  # snapshot as queued; PlaybackStarted still beats the reply
        self._pending.setdefault(target_uri, []).append(playback)
        if target_uri not in self._current:
            self._start_next(target_uri)
        return body

    def _start_next(self, target_uri: str) -> None:
        queue = self._pending.get(target_uri)
        while queue:
            playback = queue.pop(0)
            if playback.id not in self._playbacks:
                continue
            self._current[target_uri] = playback
            self._begin_item(playback)
            return

    def _bridge_of(self, playback: Playback) -> Bridge | None:
        if playback.target_uri.startswith("bridge:"):
            return self._bridges.get(playback.target_uri[7:])
        return None

    def _begin_item(self, playback: Playback) -> None:
        bridge = self._bridge_of(playback)
        if bridge is not None and bridge.bridge_type != "holding" and playback.index == 0:
            bridge.announcers.insert(0, f"Announcer/ARI-{self._seq_name('unreal')};2")
            self._refresh_bridge_vars(bridge, skip_single=False)
        plan = plan_media(playback.media_uri, self.sounds)
        playback.state = "playing"
        playback.started_wall = time.time()
        self._playback_event(playback, "PlaybackStarted")
        self._record(playback, started=True)
        if plan.failed:
            self._finish(playback, "failed")
            return
        if plan.vanishes:
            # Recorded: PlaybackStarted, then never a PlaybackFinished; the playback is gone.
            self._playbacks.pop(playback.id, None)
            self._current.pop(playback.target_uri, None)
            self._start_next(playback.target_uri)
            return
        playback.remaining = plan.seconds
        self._run_item(playback)

    def _run_item(self, playback: Playback) -> None:
        playback.resumed_at = self._now()

        async def wait_then_advance() -> None:
            await asyncio.sleep(playback.remaining)
            self._advance(playback)

        task = asyncio.get_running_loop().create_task(self._guard(wait_then_advance()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        playback.task = task

    def _advance(self, playback: Playback) -> None:
        playback.task = None
        if playback.index + 1 < len(playback.media):
            playback.index += 1
            self._playback_event(playback, "PlaybackContinuing")
            plan = plan_media(playback.media_uri, self.sounds)
            if plan.failed or plan.vanishes:
                self._finish(playback, "failed")
                return
            playback.remaining = plan.seconds
            self._run_item(playback)
            return
        self._finish(playback, "done")

    def _finish(self, playback: Playback, state: str) -> None:
        if playback.task is not None and playback.task is not asyncio.current_task():
            playback.task.cancel()
        playback.task = None
        playback.state = state
        self._playbacks.pop(playback.id, None)
        self._playback_event(playback, "PlaybackFinished")
        self._record(playback, started=False)
        bridge = self._bridge_of(playback)
        if bridge is not None and bridge.announcers and bridge.bridge_type != "holding":
            announcer = next((a for a in bridge.announcers if "ARI_MOH" not in a), None)
            if announcer is not None:
                bridge.announcers.remove(announcer)
                self._refresh_bridge_vars(bridge, skip_single=False)
        if self._current.get(playback.target_uri) is playback:
            del self._current[playback.target_uri]
            self._start_next(playback.target_uri)

    def _record(self, playback: Playback, started: bool) -> None:
        if not playback.target_uri.startswith("channel:"):
            return
        handle = self._handles.get(playback.target_uri[8:])
        if handle is None:
            return
        if started:
            handle.playbacks.append(PlaybackRecord(playback.id, playback.media_uri,
                                                   self._now(), None, "playing"))
            return
        for record in reversed(handle.playbacks):
            if record.playback_id == playback.id and record.stopped_at is None:
                record.stopped_at = self._now()
                record.state = playback.state
                break

    def stop_playback(self, playback: Playback) -> None:
        if self._current.get(playback.target_uri) is playback:
            self._finish(playback, "done")
            return
        queue = self._pending.get(playback.target_uri, [])
        if playback in queue:
            queue.remove(playback)
        playback.state = "done"
        self._playbacks.pop(playback.id, None)
        self._playback_event(playback, "PlaybackFinished")

    def control_playback(self, playback: Playback, operation: str) -> None:
        if operation not in ("pause", "unpause", "restart", "reverse", "forward"):
            raise AriError(400, "Invalid operation parameter")
        if self._current.get(playback.target_uri) is not playback:
            raise AriError(409, "Playback not currently playing")
        if operation == "pause" and playback.state == "playing":
            assert playback.task is not None
            playback.task.cancel()
            playback.task = None
            playback.remaining = max(0.0, playback.remaining - (self._now() - playback.resumed_at))
            playback.state = "paused"
        elif operation == "unpause" and playback.state == "paused":
            playback.state = "playing"
            self._playback_event(playback, "PlaybackStarted")
            self._run_item(playback)
        elif operation in ("restart", "reverse", "forward"):
            full = plan_media(playback.media_uri, self.sounds).seconds
            left = playback.remaining
            if playback.state == "playing":
                left -= self._now() - playback.resumed_at
            new_left = {"restart": full, "reverse": min(full, left + 3.0),
                        "forward": max(0.0, left - 3.0)}[operation]
            if playback.task is not None:
                playback.task.cancel()
                playback.task = None
            playback.remaining = new_left
            if playback.state == "playing":
                self._run_item(playback)

    def _fail_playbacks(self, target_uri: str) -> None:
        """The target hung up: the playing item and every queued one end as "failed"."""
        current = self._current.pop(target_uri, None)
        queued = self._pending.pop(target_uri, [])
        if current is not None:
            self._finish(current, "failed")
        for playback in queued:
            if playback.id in self._playbacks:
                playback.state = "playing"
                self._playback_event(playback, "PlaybackStarted")
                self._record(playback, started=True)
                self._finish(playback, "failed")

    def _stop_target_playbacks(self, target_uri: str, state: str) -> None:
        current = self._current.pop(target_uri, None)
        self._pending.pop(target_uri, None)
        if current is not None:
            self._finish(current, state)

    # ----------------------------------------------------------------- restart
    def _wipe(self) -> None:
        """Asterisk restarted: every channel, bridge and playback is gone, with no events."""
        for channel in list(self._channels.values()):
            channel.gone = True
            if channel.media is not None:
                channel.media.close()
            for task in list(channel.tasks):
                task.cancel()
            handle = self._handles.get(channel.id)
            if handle is not None and handle.fate in ("in_stasis", "bridged"):
                handle.fate = "hung_up_by_caller"
        for playback in self._playbacks.values():
            if playback.task is not None:
                playback.task.cancel()
        self._channels.clear()
        self._bridges.clear()
        self._playbacks.clear()
        self._pending.clear()
        self._current.clear()
        self._device_states.clear()
        for endpoint in self._endpoints.values():
            endpoint.channel_ids.clear()
        self._apps.clear()
        self.startup_time = time.time()


class EndpointView:
    """``pbx.endpoint("PJSIP/agent1")``: the endpoint and handles on its live channels."""

    def __init__(self, pbx: Pbx, key: str) -> None:
        self._pbx = pbx
        self.key = key

    @property
    def state(self) -> Endpoint:
        return self._pbx.endpoints[self.key]

    @property
    def channels(self) -> list[SimulatedCall]:
        return [self._pbx.handle(c) for c in self._pbx.endpoints[self.key].channel_ids]
