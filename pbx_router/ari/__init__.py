"""Asterisk REST Interface adapter: typed REST client, typed events, the events websocket."""

from pbx_router.ari.client import AriClient
from pbx_router.ari.errors import (
    AriAuthError,
    AriBadRequest,
    AriConflict,
    AriError,
    AriGone,
    AriServerError,
    AriTimeout,
    AriUnavailable,
)
from pbx_router.ari.events import Event, parse_event
from pbx_router.ari.models import Bridge, CallerId, Channel, Endpoint, Playback
from pbx_router.ari.stream import Backoff, EventStream, StreamState

__all__ = [
    "AriAuthError", "AriBadRequest", "AriClient", "AriConflict", "AriError", "AriGone",
    "AriServerError", "AriTimeout", "AriUnavailable", "Backoff", "Bridge", "CallerId", "Channel",
    "Endpoint", "Event", "EventStream", "Playback", "StreamState", "parse_event",
]
