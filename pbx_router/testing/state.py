"""State shared by every resource of the emulated Asterisk, and the plumbing they all use: the
tasks and clock, ids and names, Stasis apps and event delivery. ``Pbx`` (``pbx.py``) composes
this with one module per resource: ``channels``, ``bridges``, ``playbacks`` and ``media``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pbx_router.log import get_logger
from pbx_router.testing import wire
from pbx_router.testing.apps import StasisApp
from pbx_router.testing.call import SimulatedCall
from pbx_router.testing.model import Bridge, Channel, Endpoint, Playback, RequestRecord
from pbx_router.testing.sounds import DEFAULT_SOUNDS

log = get_logger(__name__)

DEFAULT_APP = "pbx-router"


class AriError(Exception):
    """An ARI error reply: status and JSON body exactly as Asterisk sends them."""

    def __init__(self, status: int, message: str, key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.body = {key: message}


class PbxState:
    """The dictionaries of live channels, bridges, playbacks, endpoints and apps, and how events
    reach the apps watching them."""

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
        # Asterisk starts Stasis for a snoop or externalMedia channel on a thread of its own
        # (res_stasis_snoop.c, the originate behind externalMedia): usually its StasisStart beats
        # the HTTP reply, but not always, and until it comes addChannel answers 422 "Channel not
        # in Stasis application" (issue 11, D2: 3 calls in 35 on a real Asterisk 22.10.1). A test
        # sets this to make every such channel enter Stasis that long after the reply.
        self.stasis_lag_s = 0.0
        self._playback_ended: asyncio.Event | None = None  # set (and replaced) as playbacks end

    # ----------------------------------------------------------------- tasks & clock
    def _spawn(self, coro: Coroutine[Any, Any, None], channel: Channel | None = None) -> None:
        # The coroutine is the task itself (not awaited inside a wrapper): a task cancelled
        # before its first step then closes it, instead of leaving it "never awaited".
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._report)
        if channel is not None:
            channel.tasks.add(task)
            task.add_done_callback(channel.tasks.discard)

    @staticmethod
    def _report(task: asyncio.Task[None]) -> None:
        # A timer must never take the emulator down; an exception in one is a test bug.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("emulator_task_failed", exc_info=exc)

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

    if TYPE_CHECKING:
        # Calls between resources. Declared here so that each resource module type-checks on its
        # own; the definitions are in the module named beside each one (``Pbx`` composes them).
        def handle(self, channel_id: str) -> SimulatedCall: ...  # pbx

        def _register(self, channel: Channel) -> None: ...  # channels

        def _enter_stasis(self, channel: Channel, app_name: str, args: list[str],
                          send_status_var: bool) -> bool: ...  # channels

        def _leave_stasis(self, channel: Channel) -> None: ...  # channels

        def _destroy(self, channel: Channel, cause: int,
                     tech_cause: int | None = None) -> None: ...  # channels

        def _dial_event(self, channel: Channel, status: str,
                        dialstring: str) -> None: ...  # channels

        def _caller_audio_window(self, channel: Channel) -> tuple[float, float] | None: ...  # channels

        def _leave_bridge(self, channel: Channel, bridge: Bridge) -> None: ...  # bridges

        def _refresh_bridge_vars(self, bridge: Bridge, skip_single: bool) -> None: ...  # bridges

        def _fail_playbacks(self, target_uri: str) -> None: ...  # playbacks

        def _stop_target_playbacks(self, target_uri: str, state: str) -> None: ...  # playbacks

        def _end_snoop(self, snoop: Channel) -> None: ...  # media
