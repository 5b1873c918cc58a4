"""ARI events, parsed from the websocket's JSON text into typed objects.

Every event keeps its raw dict. Types we do not model come back as :class:`Event` with their
``type`` and ``raw`` untouched, so a newer Asterisk never breaks the daemon. Text that is not a
JSON object with a string ``type`` raises ``ValueError`` (the stream counts and drops it).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pbx_router.ari.models import Bridge, Channel, Playback


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    timestamp: str = ""
    application: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    #: ids of the channels this event concerns, used to deliver it to the owning call
    def channel_ids(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class ChannelEvent(Event):
    channel: Channel | None = None

    def channel_ids(self) -> tuple[str, ...]:
        return (self.channel.id,) if self.channel else ()


@dataclass(frozen=True, slots=True)
class StasisStart(ChannelEvent):
    args: tuple[str, ...] = ()
    replace_channel: Channel | None = None


@dataclass(frozen=True, slots=True)
class StasisEnd(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelDestroyed(ChannelEvent):
    cause: int = 0
    cause_txt: str = ""


@dataclass(frozen=True, slots=True)
class ChannelHangupRequest(ChannelEvent):
    cause: int | None = None
    soft: bool = False


@dataclass(frozen=True, slots=True)
class ChannelStateChange(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelDtmfReceived(ChannelEvent):
    digit: str = ""
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class ChannelVarset(ChannelEvent):
    variable: str = ""
    value: str = ""


@dataclass(frozen=True, slots=True)
class ChannelTalkingStarted(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelTalkingFinished(ChannelEvent):
    duration: int = 0


@dataclass(frozen=True, slots=True)
class BridgeChannelEvent(ChannelEvent):
    bridge: Bridge | None = None


@dataclass(frozen=True, slots=True)
class ChannelEnteredBridge(BridgeChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelLeftBridge(BridgeChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class BridgeDestroyed(Event):
    bridge: Bridge | None = None


@dataclass(frozen=True, slots=True)
class PlaybackEvent(Event):
    playback: Playback | None = None

    def channel_ids(self) -> tuple[str, ...]:
        cid = self.playback.channel_id if self.playback else None
        return (cid,) if cid else ()


@dataclass(frozen=True, slots=True)
class PlaybackStarted(PlaybackEvent):
    pass


@dataclass(frozen=True, slots=True)
class PlaybackContinuing(PlaybackEvent):
    pass


@dataclass(frozen=True, slots=True)
class PlaybackFinished(PlaybackEvent):
    pass


@dataclass(frozen=True, slots=True)
class Dial(Event):
    peer: Channel | None = None
    caller: Channel | None = None
    dialstatus: str = ""
    dialstring: str = ""

    def channel_ids(self) -> tuple[str, ...]:
        ids = []
        if self.peer:
            ids.append(self.peer.id)
        if self.caller:
            ids.append(self.caller.id)
        return tuple(ids)


@dataclass(frozen=True, slots=True)
class ApplicationReplaced(Event):
    pass


@dataclass(frozen=True, slots=True)
class DeviceStateChanged(Event):
    device_name: str = ""
    device_state: str = ""


@dataclass(frozen=True, slots=True)
class EndpointStateChange(Event):
    technology: str = ""
    resource: str = ""
    state: str = ""
    channel_ids_: tuple[str, ...] = ()


_CHANNEL_EVENTS: dict[str, type[ChannelEvent]] = {
    "StasisEnd": StasisEnd,
    "ChannelStateChange": ChannelStateChange,
    "ChannelTalkingStarted": ChannelTalkingStarted,
    "ChannelCreated": ChannelEvent,
    "ChannelDialplan": ChannelEvent,
    "ChannelCallerId": ChannelEvent,
    "ChannelConnectedLine": ChannelEvent,
    "ChannelHold": ChannelEvent,
    "ChannelUnhold": ChannelEvent,
}


def _int(value: Any) -> int:
    """A number Asterisk sends; a malformed one becomes 0 rather than costing the whole event."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _chan(d: dict[str, Any], key: str) -> Channel | None:
    v = d.get(key)
    return Channel.from_json(v) if v is not None else None


def _common(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": d["type"],
        "timestamp": str(d.get("timestamp") or ""),
        "application": str(d.get("application") or ""),
        "raw": d,
    }


def event_from_dict(d: dict[str, Any]) -> Event:
    """Build the typed event for ``d``; unknown types become a plain :class:`Event`."""
    t = d.get("type")
    if not isinstance(t, str) or not t:
        raise ValueError("event without a string 'type'")
    c = _common(d)
    if t == "StasisStart":
        args = d.get("args") or []
        if not isinstance(args, list):
            raise ValueError("StasisStart.args must be a list")
        return StasisStart(
            **c, channel=_chan(d, "channel"), args=tuple(str(a) for a in args),
            replace_channel=_chan(d, "replace_channel"),
        )
    if t in _CHANNEL_EVENTS:
        return _CHANNEL_EVENTS[t](**c, channel=_chan(d, "channel"))
    if t == "ChannelDestroyed":
        return ChannelDestroyed(
            **c, channel=_chan(d, "channel"), cause=_int(d.get("cause")),
            cause_txt=str(d.get("cause_txt") or ""),
        )
    if t == "ChannelHangupRequest":
        cause = d.get("cause")
        return ChannelHangupRequest(
            **c, channel=_chan(d, "channel"), cause=int(cause) if isinstance(cause, int) else None,
            soft=bool(d.get("soft", False)),
        )
    if t == "ChannelDtmfReceived":
        return ChannelDtmfReceived(
            **c, channel=_chan(d, "channel"), digit=str(d.get("digit") or ""),
            duration_ms=_int(d.get("duration_ms")),
        )
    if t == "ChannelVarset":
        return ChannelVarset(
            **c, channel=_chan(d, "channel"), variable=str(d.get("variable") or ""),
            value=str(d.get("value") or ""),
        )
    if t == "ChannelTalkingFinished":
        return ChannelTalkingFinished(**c, channel=_chan(d, "channel"), duration=_int(d.get("duration")))
    if t in ("ChannelEnteredBridge", "ChannelLeftBridge"):
        cls = ChannelEnteredBridge if t == "ChannelEnteredBridge" else ChannelLeftBridge
        b = d.get("bridge")
        return cls(**c, channel=_chan(d, "channel"), bridge=Bridge.from_json(b) if b is not None else None)
    if t == "BridgeDestroyed":
        b = d.get("bridge")
        return BridgeDestroyed(**c, bridge=Bridge.from_json(b) if b is not None else None)
    if t in ("PlaybackStarted", "PlaybackContinuing", "PlaybackFinished"):
        cls2: type[PlaybackEvent] = {
            "PlaybackStarted": PlaybackStarted,
            "PlaybackContinuing": PlaybackContinuing,
            "PlaybackFinished": PlaybackFinished,
        }[t]
        p = d.get("playback")
        return cls2(**c, playback=Playback.from_json(p) if p is not None else None)
    if t == "Dial":
        return Dial(
            **c, peer=_chan(d, "peer"), caller=_chan(d, "caller"),
            dialstatus=str(d.get("dialstatus") or ""), dialstring=str(d.get("dialstring") or ""),
        )
    if t == "ApplicationReplaced":
        return ApplicationReplaced(**c)
    if t == "DeviceStateChanged":
        ds = d.get("device_state") or {}
        if not isinstance(ds, dict):
            raise ValueError("device_state must be an object")
        return DeviceStateChanged(**c, device_name=str(ds.get("name") or ""), device_state=str(ds.get("state") or ""))
    if t == "EndpointStateChange":
        ep = d.get("endpoint") or {}
        if not isinstance(ep, dict):
            raise ValueError("endpoint must be an object")
        ids = ep.get("channel_ids") or []
        return EndpointStateChange(
            **c, technology=str(ep.get("technology") or ""), resource=str(ep.get("resource") or ""),
            state=str(ep.get("state") or ""),
            channel_ids_=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
        )
    return Event(**c)


def parse_event(text: str | bytes) -> Event:
    """Parse one websocket message. ``ValueError`` for anything that is not a well-formed event."""
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError("event is not a JSON object")
    try:
        return event_from_dict(d)
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"malformed {d.get('type')!r} event: {exc}") from None


class Deduplicator:
    """Drops byte-identical repeats among the last ``size`` messages.

    Asterisk delivers most channel events twice when the app also holds an endpoint subscription
    (once through the channel, once through the endpoint), as identical text.
    """

    DEFAULT_SIZE: ClassVar[int] = 512

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._seen: OrderedDict[int, None] = OrderedDict()

    def seen(self, text: str | bytes) -> bool:
        key = hash(text)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return False
