"""Channels in the emulated Asterisk: Stasis entry and exit, hangup and destruction, inbound calls
(answer, DTMF, talk detection, continue in the dialplan) and outbound legs (originate, create,
dial, ring, answer, fail). Every sequence is taken from ``ari-samples/*/events.jsonl``.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from pbx_router.log import get_logger
from pbx_router.testing.agents import AgentBehaviour
from pbx_router.testing.audio import CallerAudio
from pbx_router.testing.call import SimulatedCall
from pbx_router.testing.model import Channel, Dialplan, Party
from pbx_router.testing.rtp import FRAME_SECONDS
from pbx_router.testing.state import AriError, PbxState

log = get_logger(__name__)

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
DTMF_DURATION_MS = 100
TALK_START_DELAY = 0.2  # ChannelTalkingStarted came ~0.2 s after speech began
TALK_SILENCE = 2.5  # default TALK_DETECT silence threshold (2500 ms)


def parse_caller_id(text: str | None) -> Party:
    """``Name <number>`` or a bare number, as ``callerId`` on originate."""
    if not text:
        return Party()
    if "<" in text and text.rstrip().endswith(">"):
        name, _, number = text.rpartition("<")
        return Party(name.strip().strip('"'), number.rstrip()[:-1].strip())
    return Party("", text.strip())


class ChannelsMixin(PbxState):
    """Channel lifecycle, inbound calls and outbound legs."""

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
