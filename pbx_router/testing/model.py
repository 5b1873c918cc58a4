"""The emulator's live state: channels, bridges, playbacks, endpoints, Stasis applications."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pbx_router.testing import wire
from pbx_router.testing.audio import CallerAudio

if TYPE_CHECKING:
    from pbx_router.testing.agents import AgentBehaviour
    from pbx_router.testing.rtp import ExternalMediaStream

ChannelKind = Literal["inbound", "originated", "created", "external_media", "snoop"]
Fate = Literal["in_stasis", "continued", "hung_up_by_app", "hung_up_by_caller", "bridged",
               "stasis_failed"]


@dataclass
class Party:
    name: str = ""
    number: str = ""

    def json(self) -> dict[str, str]:
        return {"name": self.name, "number": self.number}


@dataclass
class Dialplan:
    context: str
    exten: str
    priority: int
    app_name: str
    app_data: str

    def json(self) -> dict[str, Any]:
        return {"context": self.context, "exten": self.exten, "priority": self.priority,
                "app_name": self.app_name, "app_data": self.app_data}


@dataclass
class Channel:
    id: str
    name: str
    kind: ChannelKind
    dialplan: Dialplan
    created_at: float
    state: str = "Down"
    protocol_id: str = ""
    caller: Party = field(default_factory=Party)
    connected: Party = field(default_factory=Party)
    language: str = "en"
    endpoint: str | None = None  # "PJSIP/agent1"
    app: str | None = None  # the Stasis app it is in (None: not in Stasis)
    args: list[str] = field(default_factory=list)
    # Channels the app created stay subscribed after StasisEnd (-> STASISSTATUS + ChannelDestroyed).
    subscribed_to_end: bool = False
    bridge_id: str | None = None
    bridge_vars: dict[str, str] = field(default_factory=dict)  # BRIDGEPEER / BRIDGEPVTCALLID
    variables: dict[str, str] = field(default_factory=dict)
    channelvars: dict[str, str] | None = None  # only in the externalMedia response body
    talk_detect: bool = False
    answered_at: float | None = None
    audio: CallerAudio | None = None
    audio_at: float = 0.0
    snoop_of: str | None = None
    spy: str = "none"
    whisper: str = "none"
    snoops: list[str] = field(default_factory=list)
    media: ExternalMediaStream | None = None
    agent: AgentBehaviour | None = None
    dial_timeout: float = 30.0
    gone: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "name": self.name, "state": self.state,
            "protocol_id": self.protocol_id, "caller": self.caller.json(),
            "connected": self.connected.json(), "accountcode": "",
            "dialplan": self.dialplan.json(), "creationtime": wire.timestamp(self.created_at),
            "language": self.language,
        }
        return body

    @property
    def technology(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass
class Bridge:
    id: str
    bridge_type: str
    name: str
    created_at: float
    channels: list[str] = field(default_factory=list)
    # Hidden announcer legs (bridge playback, MOH) that still show in BRIDGEPEER on mixing bridges.
    announcers: list[str] = field(default_factory=list)
    moh_class: str | None = None
    # BridgeDestroyed is sent only when the app is subscribed, which a hangup inside also causes.
    destroy_visible: bool = False

    def json(self) -> dict[str, Any]:
        technology = "holding_bridge" if self.bridge_type == "holding" else "simple_bridge"
        return {"id": self.id, "technology": technology, "bridge_type": self.bridge_type,
                "bridge_class": "stasis", "creator": "Stasis", "name": self.name,
                "channels": list(self.channels), "creationtime": wire.timestamp(self.created_at),
                "video_mode": "talker"}


@dataclass
class Playback:
    id: str
    media: list[str]
    target_uri: str
    app: str
    language: str = "en"
    state: str = "queued"
    index: int = 0
    remaining: float = 0.0  # of the current item, while paused
    resumed_at: float = 0.0
    started_wall: float = 0.0
    task: asyncio.Task[None] | None = None

    @property
    def media_uri(self) -> str:
        return self.media[self.index]

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "media_uri": self.media_uri}
        if self.index + 1 < len(self.media):
            body["next_media_uri"] = self.media[self.index + 1]
        body.update({"target_uri": self.target_uri, "language": self.language,
                     "state": self.state})
        return body


@dataclass
class Endpoint:
    technology: str
    resource: str
    behaviour: AgentBehaviour | None = None
    state: str = "online"
    channel_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.technology}/{self.resource}"

    def json(self) -> dict[str, Any]:
        return {"technology": self.technology, "resource": self.resource, "state": self.state,
                "channel_ids": list(self.channel_ids)}


@dataclass
class RequestRecord:
    """One REST request as the emulator answered it."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any
    events_sent_before: int = 0  # len(pbx.sent_events) when the reply went out


@dataclass
class RequestFault:
    """Asterisk failing some requests (overloaded, a module error, a bug): matching requests are
    answered with ``status`` and Asterisk's error body instead of being performed. ``times`` is
    how many to fail (None: all of them, until removed); ``hits`` counts the failed ones."""

    method: str
    path: str  # fnmatch pattern on the path, e.g. /ari/channels/*/continue
    status: int = 500
    message: str = "Internal Server Error"
    times: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        import fnmatch

        if self.times is not None and self.hits >= self.times:
            return False
        return method.upper() == self.method.upper() and fnmatch.fnmatchcase(path, self.path)
