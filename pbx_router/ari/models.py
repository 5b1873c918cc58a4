"""Typed views of the ARI JSON objects we use (field names as Asterisk sends them).

``from_json`` is tolerant of fields it does not know (Asterisk adds fields between versions) and
strict about the ones it needs: a missing ``id`` or a wrong type raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _str(d: dict[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise ValueError(f"{key!r} must be a string, got {type(v).__name__}")
    return v


def _obj(d: dict[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key) or {}
    if not isinstance(v, dict):
        raise ValueError(f"{key!r} must be an object")
    return v


@dataclass(frozen=True, slots=True)
class CallerId:
    name: str = ""
    number: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CallerId:
        return cls(name=str(d.get("name") or ""), number=str(d.get("number") or ""))


@dataclass(frozen=True, slots=True)
class DialplanCEP:
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DialplanCEP:
        prio = d.get("priority", 0)
        return cls(
            context=str(d.get("context") or ""),
            exten=str(d.get("exten") or ""),
            priority=int(prio) if isinstance(prio, int | str) and str(prio).lstrip("-").isdigit() else 0,
            app_name=str(d.get("app_name") or ""),
            app_data=str(d.get("app_data") or ""),
        )


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    state: str
    caller: CallerId = CallerId()
    connected: CallerId = CallerId()
    dialplan: DialplanCEP = DialplanCEP()
    creationtime: str = ""
    language: str = "en"
    protocol_id: str = ""
    channelvars: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Any) -> Channel:
        if not isinstance(d, dict):
            raise ValueError("channel must be an object")
        vars_ = d.get("channelvars") or {}
        return cls(
            id=_str(d, "id"),
            name=_str(d, "name", ""),
            state=_str(d, "state", ""),
            caller=CallerId.from_json(_obj(d, "caller")),
            connected=CallerId.from_json(_obj(d, "connected")),
            dialplan=DialplanCEP.from_json(_obj(d, "dialplan")),
            creationtime=str(d.get("creationtime") or ""),
            language=str(d.get("language") or "en"),
            protocol_id=str(d.get("protocol_id") or ""),
            channelvars={str(k): str(v) for k, v in vars_.items()} if isinstance(vars_, dict) else {},
        )

    def stasis_app(self) -> str | None:
        """The Stasis app this channel sits in according to its dialplan location, if any."""
        if self.dialplan.app_name != "Stasis":
            return None
        return self.dialplan.app_data.split(",", 1)[0] or None

    def stasis_args(self) -> list[str]:
        parts = self.dialplan.app_data.split(",")
        return parts[1:] if len(parts) > 1 else []


@dataclass(frozen=True, slots=True)
class Bridge:
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    creator: str = ""
    name: str = ""
    channels: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Any) -> Bridge:
        if not isinstance(d, dict):
            raise ValueError("bridge must be an object")
        chans = d.get("channels") or []
        if not isinstance(chans, list):
            raise ValueError("bridge.channels must be a list")
        return cls(
            id=_str(d, "id"),
            technology=str(d.get("technology") or ""),
            bridge_type=str(d.get("bridge_type") or ""),
            bridge_class=str(d.get("bridge_class") or ""),
            creator=str(d.get("creator") or ""),
            name=str(d.get("name") or ""),
            channels=tuple(str(c) for c in chans),
        )


@dataclass(frozen=True, slots=True)
class Playback:
    id: str
    media_uri: str = ""
    target_uri: str = ""
    state: str = ""
    language: str = ""
    next_media_uri: str | None = None

    @classmethod
    def from_json(cls, d: Any) -> Playback:
        if not isinstance(d, dict):
            raise ValueError("playback must be an object")
        nxt = d.get("next_media_uri")
        return cls(
            id=_str(d, "id"),
            media_uri=str(d.get("media_uri") or ""),
            target_uri=str(d.get("target_uri") or ""),
            state=str(d.get("state") or ""),
            language=str(d.get("language") or ""),
            next_media_uri=str(nxt) if nxt else None,
        )

    @property
    def channel_id(self) -> str | None:
        kind, _, ident = self.target_uri.partition(":")
        return ident if kind == "channel" else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    technology: str
    resource: str
    state: str = ""
    channel_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Any) -> Endpoint:
        if not isinstance(d, dict):
            raise ValueError("endpoint must be an object")
        ids = d.get("channel_ids") or []
        return cls(
            technology=_str(d, "technology"),
            resource=_str(d, "resource"),
            state=str(d.get("state") or ""),
            channel_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
        )
