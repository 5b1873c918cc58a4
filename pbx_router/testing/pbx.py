"""The telephony behaviour of the emulator: what Asterisk 22 does to channels, bridges and
playbacks, and which events it emits in which order. Every sequence here is taken from
``ari-samples/*/events.jsonl``; where the recordings had nothing, the comment says "unrecorded".

HTTP lives in ``http_api``; this module raises ``AriError`` with the exact status and body.

The class is split by resource so that each part can be read on its own:

- ``state``: the shared dictionaries, tasks and clock, ids and names, apps and event delivery;
- ``channels``: channel lifecycle, inbound calls, outbound legs;
- ``bridges``: bridges and their members;
- ``playbacks``: playback queues per channel or bridge;
- ``media``: snoop, externalMedia and the audio mixed for them.

``Pbx`` below composes them and holds what spans every resource (read-only views,
configuration, restart).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType

from pbx_router.testing.agents import AgentBehaviour
from pbx_router.testing.apps import StasisApp
from pbx_router.testing.bridges import BridgesMixin
from pbx_router.testing.call import SimulatedCall
from pbx_router.testing.channels import CAUSE_TEXT, HANGUP_REASONS, ChannelsMixin, parse_caller_id
from pbx_router.testing.media import KNOWN_FORMATS, MediaMixin
from pbx_router.testing.model import Bridge, Channel, Endpoint, Playback
from pbx_router.testing.playbacks import PlaybacksMixin
from pbx_router.testing.state import DEFAULT_APP, AriError, PbxState

__all__ = ["CAUSE_TEXT", "DEFAULT_APP", "HANGUP_REASONS", "KNOWN_FORMATS", "AriError", "EndpointView",
           "Pbx", "PbxState", "parse_caller_id"]


class Pbx(ChannelsMixin, BridgesMixin, PlaybacksMixin, MediaMixin):
    """The emulated Asterisk: one object holding every channel, bridge and playback. Its methods
    live in the module of the resource they act on (see the module docstring); the calls from one
    resource to another are listed at the end of ``PbxState``."""

    def __init__(self) -> None:
        super().__init__()
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
