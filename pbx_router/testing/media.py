"""Media in the emulated Asterisk: snoop channels, externalMedia (RTP to the daemon) and what an
externalMedia leg hears of the bridge it is in.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx_router.testing.audio import RTP_FORMATS, Samples, tone
from pbx_router.testing.model import Channel, Dialplan
from pbx_router.testing.rtp import FRAME_SECONDS, ExternalMediaStream
from pbx_router.testing.state import AriError, PbxState

KNOWN_FORMATS = frozenset({"ulaw", "alaw", "slin", "slin16", "gsm", "g722", "g729", "slin12",
                           "slin24", "slin32", "slin44", "slin48", "slin96", "slin192", "opus",
                           "speex", "ilbc", "g726", "lpc10", "adpcm", "siren7", "siren14"})


class MediaMixin(PbxState):
    """Snoop and externalMedia channels, and the audio mixed for them."""

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
        if self.stasis_lag_s > 0:
            self._spawn(self._enter_stasis_later(snoop, app_name, args, send_status_var=False), snoop)
        else:
            self._enter_stasis(snoop, app_name, args, send_status_var=False)
        return body

    async def _enter_stasis_later(self, channel: Channel, app_name: str, args: list[str],
                                  send_status_var: bool) -> None:
        await asyncio.sleep(self.stasis_lag_s)  # emulated thread scheduling, not a test wait
        if channel.id in self._channels and channel.app is None:
            if not self._enter_stasis(channel, app_name, args, send_status_var=send_status_var):
                self._destroy(channel, 16)

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
        if self.stasis_lag_s > 0:
            self._spawn(self._enter_stasis_later(channel, app_name, [], send_status_var=True), channel)
        elif not self._enter_stasis(channel, app_name, [], send_status_var=True):
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
