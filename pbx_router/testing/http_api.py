"""ARI over HTTP: routes, authentication, error bodies and status codes as Asterisk 22 sends them.

Every handler raises ``AriError`` for an ARI error; the middleware turns it into the recorded
body, answers unknown routes / wrong methods like Asterisk, waits until the events a request
caused are on the websocket (they precede the reply on the wire) and records the request.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pbx_router.testing import wire
from pbx_router.testing.model import Bridge, Channel, Playback, RequestRecord
from pbx_router.testing.pbx import DEFAULT_APP, HANGUP_REASONS, AriError

if TYPE_CHECKING:
    from pbx_router.testing.apps import StasisApp
    from pbx_router.testing.emulator import AsteriskEmulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PARAMS_KEY: web.RequestKey[dict[str, str]] = web.RequestKey("ari_params", dict)
VARIABLES_KEY: web.RequestKey[dict[str, str]] = web.RequestKey("ari_variables", dict)
DEVICE_STATES = frozenset({"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE",
                           "RINGING", "RINGINUSE", "ONHOLD"})


def _headers() -> dict[str, str]:
    return {"Server": wire.SERVER_HEADER, "Cache-Control": "no-cache, no-store"}


def ari_json(body: Any, status: int = 200) -> web.Response:
    text = json.dumps(body, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json",
                        headers=_headers())


def no_content() -> web.Response:
    return web.Response(status=204, headers=_headers())


class AriRoutes:
    def __init__(self, emulator: AsteriskEmulator) -> None:
        self.pbx = emulator
        self.emulator = emulator

    # ------------------------------------------------------------------ plumbing
    def build(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        r = app.router
        r.add_get("/ari", self.ari_root)
        r.add_get("/ari/events", self.emulator.events_socket)
        r.add_get("/ari/asterisk/info", self.asterisk_info)
        r.add_get("/ari/asterisk/ping", self.asterisk_ping)
        r.add_get("/ari/asterisk/variable", self.asterisk_variable)
        r.add_get("/ari/applications", self.applications_list)
        r.add_get("/ari/applications/{app}", self.application_get)
        r.add_post("/ari/applications/{app}/subscription", self.application_subscribe)
        r.add_delete("/ari/applications/{app}/subscription", self.application_unsubscribe)
        r.add_get("/ari/channels", self.channels_list)
        r.add_post("/ari/channels", self.channels_originate)
        r.add_post("/ari/channels/create", self.channels_create)
        r.add_post("/ari/channels/externalMedia", self.channels_external_media)
        r.add_get("/ari/channels/{id}", self.channel_get)
        r.add_post("/ari/channels/{id}", self.channels_originate)
        r.add_delete("/ari/channels/{id}", self.channel_hangup)
        r.add_post("/ari/channels/{id}/answer", self.channel_answer)
        r.add_post("/ari/channels/{id}/ring", self.channel_simple)
        r.add_delete("/ari/channels/{id}/ring", self.channel_simple)
        r.add_post("/ari/channels/{id}/continue", self.channel_continue)
        r.add_post("/ari/channels/{id}/play", self.channel_play)
        r.add_post("/ari/channels/{id}/play/{playbackId}", self.channel_play)
        r.add_post("/ari/channels/{id}/dial", self.channel_dial)
        r.add_post("/ari/channels/{id}/snoop", self.channel_snoop)
        r.add_post("/ari/channels/{id}/snoop/{snoopId}", self.channel_snoop)
        r.add_get("/ari/channels/{id}/variable", self.channel_get_variable)
        r.add_post("/ari/channels/{id}/variable", self.channel_set_variable)
        for sub in ("moh", "hold", "silence", "mute"):
            r.add_post(f"/ari/channels/{{id}}/{sub}", self.channel_simple)
            r.add_delete(f"/ari/channels/{{id}}/{sub}", self.channel_simple)
        r.add_post("/ari/channels/{id}/dtmf", self.channel_simple)
        r.add_get("/ari/bridges", self.bridges_list)
        r.add_post("/ari/bridges", self.bridge_create)
        r.add_get("/ari/bridges/{id}", self.bridge_get)
        r.add_post("/ari/bridges/{id}", self.bridge_create)
        r.add_delete("/ari/bridges/{id}", self.bridge_destroy)
        r.add_post("/ari/bridges/{id}/addChannel", self.bridge_add)
        r.add_post("/ari/bridges/{id}/removeChannel", self.bridge_remove)
        r.add_post("/ari/bridges/{id}/moh", self.bridge_moh_start)
        r.add_delete("/ari/bridges/{id}/moh", self.bridge_moh_stop)
        r.add_post("/ari/bridges/{id}/play", self.bridge_play)
        r.add_post("/ari/bridges/{id}/play/{playbackId}", self.bridge_play)
        r.add_get("/ari/playbacks/{id}", self.playback_get)
        r.add_delete("/ari/playbacks/{id}", self.playback_stop)
        r.add_post("/ari/playbacks/{id}/control", self.playback_control)
        r.add_get("/ari/endpoints", self.endpoints_list)
        r.add_put("/ari/endpoints/sendMessage", self.endpoint_send_message)
        r.add_get("/ari/endpoints/{tech}", self.endpoints_by_tech)
        r.add_get("/ari/endpoints/{tech}/{resource}", self.endpoint_get)
        r.add_put("/ari/endpoints/{tech}/{resource}/sendMessage", self.endpoint_send_message)
        r.add_get("/ari/deviceStates", self.device_states_list)
        r.add_get("/ari/deviceStates/{name:.+}", self.device_state_get)
        r.add_put("/ari/deviceStates/{name:.+}", self.device_state_put)
        r.add_delete("/ari/deviceStates/{name:.+}", self.device_state_delete)
        r.add_get("/ari/sounds", self.sounds_list)
        r.add_get("/ari/sounds/{id:.+}", self.sound_get)
        r.add_get("/ari/recordings/stored", self.recordings_list)
        r.add_get("/ari/recordings/stored/{name}", self.recording_get)
        return app

    def _authorised(self, request: web.Request) -> bool:
        expected = f"{self.emulator.username}:{self.emulator.password}"
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                if base64.b64decode(header[6:], validate=True).decode() == expected:
                    return True
            except (binascii.Error, UnicodeDecodeError):
                return False
        return request.query.get("api_key") == expected

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path != "/ari" and not path.startswith("/ari/"):
            return web.Response(status=404, text=wire.HTML_NOT_FOUND, content_type="text/html",
                                headers=_headers())
        if not self._authorised(request):
            denied = ari_json(wire.error("Authentication required"), 401)
            denied.headers["WWW-Authenticate"] = 'Basic realm="Asterisk REST Interface"'
            self._record(request, {}, denied.status, wire.error("Authentication required"))
            return denied
        params = {k: v for k, v in request.query.items() if k != "api_key"}
        variables: dict[str, str] = {}
        body_error = None
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            raw = await request.text()
            if raw.strip() and (raw.lstrip()[:1] in "{[" or request.content_type ==
                                "application/json"):
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    body_error = AriError(400, "Error parsing request body")
                else:
                    if isinstance(parsed, dict):
                        variables = {str(k): str(v) for k, v in
                                     (parsed.get("variables") or {}).items()}
                        params.update({k: str(v) for k, v in parsed.items()
                                       if k != "variables" and not isinstance(v, dict | list)})
        request[PARAMS_KEY] = params
        request[VARIABLES_KEY] = variables
        response: web.StreamResponse
        fault = next((f for f in self.emulator.faults if f.matches(request.method, path)), None)
        try:
            if body_error is not None:
                raise body_error
            if fault is not None:
                fault.hits += 1
                raise AriError(fault.status, fault.message)
            response = await handler(request)
        except AriError as exc:
            response = ari_json(exc.body, exc.status)
        except web.HTTPMethodNotAllowed:
            response = ari_json(wire.error("Invalid method"), 405)
        except web.HTTPNotFound:
            response = ari_json(wire.error("Resource not found"), 404)
        if isinstance(response, web.WebSocketResponse):
            return response
        await self.pbx.flush()
        body: Any = None
        if isinstance(response, web.Response) and response.text and \
                response.content_type == "application/json":
            body = json.loads(response.text)
        elif isinstance(response, web.Response) and response.text:
            body = response.text
        self._record(request, params, response.status, body)
        return response

    def _record(self, request: web.Request, params: dict[str, str], status: int,
                body: Any) -> None:
        self.pbx.requests.append(RequestRecord(request.method, request.path, dict(params),
                                               status, body, len(self.pbx.sent_events)))

    @staticmethod
    def _params(request: web.Request) -> dict[str, str]:
        return request[PARAMS_KEY]

    def _channel(self, channel_id: str) -> Channel:
        channel = self.pbx.channels.get(channel_id)
        if channel is None:
            raise AriError(404, "Channel not found")
        return channel

    def _stasis_channel(self, channel_id: str) -> Channel:
        channel = self._channel(channel_id)
        if channel.app is None:
            raise AriError(409, "Channel not in Stasis application")
        return channel

    def _bridge(self, bridge_id: str) -> Bridge:
        bridge = self.pbx.bridges.get(bridge_id)
        if bridge is None:
            raise AriError(404, "Bridge not found")
        return bridge

    def _playback(self, playback_id: str) -> Playback:
        playback = self.pbx.playbacks.get(playback_id)
        if playback is None:
            raise AriError(404, "Playback not found")
        return playback

    # ------------------------------------------------------------------ asterisk
    async def ari_root(self, request: web.Request) -> web.Response:
        raise AriError(405, "Invalid method")

    async def asterisk_info(self, request: web.Request) -> web.Response:
        started = wire.timestamp(self.pbx.startup_time)
        return ari_json({
            "build": {"os": "Linux", "kernel": "6.18.44-fc-v657", "machine": "x86_64",
                      "options": "OPTIONAL_API", "date": "2026-11-27 08:06:56 UTC",
                      "user": "root"},
            "system": {"version": wire.ASTERISK_VERSION, "entity_id": wire.ASTERISK_ID},
            "config": {"name": "", "default_language": "en",
                       "setid": {"user": "", "group": ""}},
            "status": {"startup_time": started, "last_reload_time": started},
        })

    async def asterisk_ping(self, request: web.Request) -> web.Response:
        return ari_json({"ping": "pong", "timestamp": wire.timestamp(),
                         "asterisk_id": wire.ASTERISK_ID})

    async def asterisk_variable(self, request: web.Request) -> web.Response:
        if not self._params(request).get("variable"):
            raise AriError(400, "Variable name is required")
        return ari_json({"value": ""})

    # ------------------------------------------------------------------ applications
    async def applications_list(self, request: web.Request) -> web.Response:
        return ari_json([a.json() for a in self.pbx.apps.values()
                         if self.pbx.app_exists(a.name)])

    def _app(self, name: str) -> Any:
        if not self.pbx.app_exists(name):
            raise AriError(404, "Application not found")
        return self.pbx.app(name)

    async def application_get(self, request: web.Request) -> web.Response:
        return ari_json(self._app(request.match_info["app"]).json())

    def _source(self, request: web.Request) -> tuple[str, str]:
        source = self._params(request).get("eventSource", "")
        if not source:
            raise AriError(400, "Missing parameter eventSource")
        kind, _, ident = source.partition(":")
        if kind not in ("channel", "bridge", "endpoint", "deviceState") or not ident:
            raise AriError(400, "Invalid event source URI scheme")
        return kind, ident

    def _source_list(self, app: StasisApp, kind: str) -> list[str]:
        return {"channel": app.channel_ids, "bridge": app.bridge_ids,
                "endpoint": app.endpoint_ids, "deviceState": app.device_names}[kind]

    async def application_subscribe(self, request: web.Request) -> web.Response:
        app = self._app(request.match_info["app"])
        kind, ident = self._source(request)
        exists = {
            "channel": ident in self.pbx.channels,
            "bridge": ident in self.pbx.bridges,
            "endpoint": ident in self.pbx.endpoints
            or any(e.technology == ident for e in self.pbx.endpoints.values()),
            "deviceState": True,
        }[kind]
        if not exists:
            raise AriError(422, "Event source does not exist")
        items = self._source_list(app, kind)
        if ident not in items:
            if kind == "deviceState":
                items.insert(0, ident)  # recorded: newest device first
            else:
                items.append(ident)
        return ari_json(app.json())

    async def application_unsubscribe(self, request: web.Request) -> web.Response:
        app = self._app(request.match_info["app"])
        kind, ident = self._source(request)
        items = self._source_list(app, kind)
        if ident not in items:
            raise AriError(422, "Event source was not subscribed to")
        items.remove(ident)
        return ari_json(app.json())

    # ------------------------------------------------------------------ channels
    async def channels_list(self, request: web.Request) -> web.Response:
        return ari_json([c.json() for c in self.pbx.channels.values()])

    async def channel_get(self, request: web.Request) -> web.Response:
        return ari_json(self._channel(request.match_info["id"]).json())

    async def channels_originate(self, request: web.Request) -> web.Response:
        params = dict(self._params(request))
        if "id" in request.match_info:
            params["channelId"] = request.match_info["id"]
        channel = self.pbx.originate(params, create_only=False)
        extra: dict[str, str] = request[VARIABLES_KEY]
        channel.variables.update(extra)
        return ari_json(channel.json())

    async def channels_create(self, request: web.Request) -> web.Response:
        channel = self.pbx.originate(self._params(request), create_only=True)
        extra: dict[str, str] = request[VARIABLES_KEY]
        channel.variables.update(extra)
        return ari_json(channel.json())

    async def channels_external_media(self, request: web.Request) -> web.Response:
        body, channel = await self.pbx.external_media(self._params(request))
        extra: dict[str, str] = request[VARIABLES_KEY]
        channel.variables.update(extra)
        return ari_json(body)

    async def channel_hangup(self, request: web.Request) -> web.Response:
        params = self._params(request)
        channel = self._channel(request.match_info["id"])
        cause = 16
        if params.get("reason_code"):
            try:
                cause = int(params["reason_code"])
            except ValueError as exc:
                raise AriError(400, "Invalid reason for hangup reason provided") from exc
        elif params.get("reason"):
            if params["reason"] not in HANGUP_REASONS:
                raise AriError(400, "Invalid reason for hangup reason provided")
            cause = HANGUP_REASONS[params["reason"]]
        if channel.app is None and channel.state != "Up" and channel.subscribed_to_end:
            # Unrecorded: cancelling a ringing leg. Dial CANCEL, then ChannelDestroyed.
            self.pbx._dial_event(channel, "CANCEL", "")
            self.pbx._destroy(channel, cause)
        else:
            self.pbx.hangup_channel(channel, by_app=True, cause=cause)
        return no_content()

    async def channel_answer(self, request: web.Request) -> web.Response:
        self.pbx.answer(self._stasis_channel(request.match_info["id"]))
        return no_content()

    async def channel_simple(self, request: web.Request) -> web.Response:
        """ring, moh, hold, silence, mute, dtmf: accepted, nothing on the event stream."""
        self._stasis_channel(request.match_info["id"])
        return no_content()

    async def channel_continue(self, request: web.Request) -> web.Response:
        params = self._params(request)
        channel = self._stasis_channel(request.match_info["id"])
        priority = None
        if params.get("priority"):
            try:
                priority = int(params["priority"])
            except ValueError as exc:
                raise AriError(400, "priority must be an integer") from exc
        self.pbx.continue_in_dialplan(channel, params.get("context"), params.get("extension"),
                                      priority)
        return no_content()

    async def channel_play(self, request: web.Request) -> web.Response:
        params = self._params(request)
        channel = self._stasis_channel(request.match_info["id"])
        media = [m for m in params.get("media", "").split(",")] if params.get("media") else []
        body = self.pbx.play(f"channel:{channel.id}", channel.app or DEFAULT_APP, media,
                             request.match_info.get("playbackId") or params.get("playbackId"),
                             params.get("lang") or channel.language)
        return ari_json(body, 201)

    async def channel_dial(self, request: web.Request) -> web.Response:
        params = self._params(request)
        channel = self._stasis_channel(request.match_info["id"])
        caller = None
        if params.get("caller"):
            caller = self.pbx.channels.get(params["caller"])
            if caller is None:
                raise AriError(404, "Caller channel not found")
        try:
            timeout = float(params.get("timeout") or 0) or 30.0
        except ValueError as exc:
            raise AriError(400, "timeout must be a number") from exc
        self.pbx.dial(channel, caller, timeout)
        return no_content()

    async def channel_snoop(self, request: web.Request) -> web.Response:
        target = self._channel(request.match_info["id"])
        params = self._params(request)
        snoop = self.pbx.snoop(target, params,
                               request.match_info.get("snoopId") or params.get("snoopId"))
        body = snoop.json()
        body["dialplan"] = {**body["dialplan"], "app_name": "", "app_data": ""}
        return ari_json(body)

    async def channel_get_variable(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["id"])
        name = self._params(request).get("variable", "")
        if not name:
            raise AriError(400, "Variable name is required")
        builtin = {
            "CALLERID(num)": channel.caller.number,
            "CALLERID(name)": channel.caller.name,
            "CALLERID(all)": f'"{channel.caller.name}" <{channel.caller.number}>',
            "CONNECTEDLINE(num)": channel.connected.number,
            "CONNECTEDLINE(name)": channel.connected.name,
            "CHANNEL(name)": channel.name,
            "CHANNEL(state)": channel.state,
            "UNIQUEID": channel.id,
            **channel.bridge_vars,
        }
        if name in channel.variables:
            return ari_json({"value": channel.variables[name]})
        if name in builtin:
            return ari_json({"value": builtin[name]})
        if "(" in name:
            raise AriError(500, "Unable to read provided function")
        raise AriError(404, "Provided variable was not found")

    async def channel_set_variable(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["id"])
        params = self._params(request)
        name = params.get("variable", "")
        if not name:
            raise AriError(400, "Variable name is required")
        value = params.get("value", "")
        if name == "TALK_DETECT(set)":
            if not channel.talk_detect:
                channel.talk_detect = True
                if channel.answered_at is not None:
                    self.pbx._schedule_talk_detect(channel)
        elif name == "TALK_DETECT(remove)":
            channel.talk_detect = False
        elif name == "CALLERID(num)":
            channel.caller.number = value
        elif name == "CALLERID(name)":
            channel.caller.name = value
        elif "(" in name:
            channel.variables[name] = value  # dialplan functions emit no ChannelVarset
        else:
            channel.variables[name] = value
            self.pbx._varset(channel, name, value)
        return no_content()

    # ------------------------------------------------------------------ bridges
    async def bridges_list(self, request: web.Request) -> web.Response:
        return ari_json([b.json() for b in self.pbx.bridges.values()])

    async def bridge_create(self, request: web.Request) -> web.Response:
        params = self._params(request)
        bridge_id = request.match_info.get("id") or params.get("bridgeId")
        bridge = self.pbx.create_bridge(bridge_id, params.get("type", "mixing"),
                                        params.get("name", ""))
        return ari_json(bridge.json())

    async def bridge_get(self, request: web.Request) -> web.Response:
        return ari_json(self._bridge(request.match_info["id"]).json())

    async def bridge_destroy(self, request: web.Request) -> web.Response:
        self.pbx.destroy_bridge(self._bridge(request.match_info["id"]))
        return no_content()

    def _channel_list(self, request: web.Request) -> list[str]:
        raw = self._params(request).get("channel", "")
        if not raw:
            raise AriError(400, "Missing parameter channel")
        return [c for c in raw.split(",") if c]

    async def bridge_add(self, request: web.Request) -> web.Response:
        self._bridge(request.match_info["id"])  # 404 at once for a missing bridge
        channels = self._channel_list(request)
        await self.pbx.channel_commands_done(channels)
        self.pbx.add_to_bridge(self._bridge(request.match_info["id"]), channels)
        return no_content()

    async def bridge_remove(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        self.pbx.remove_from_bridge(bridge, self._channel_list(request))
        return no_content()

    async def bridge_moh_start(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        self.pbx.bridge_moh(bridge, self._params(request).get("mohClass"), start=True)
        return no_content()

    async def bridge_moh_stop(self, request: web.Request) -> web.Response:
        self.pbx.bridge_moh(self._bridge(request.match_info["id"]), None, start=False)
        return no_content()

    async def bridge_play(self, request: web.Request) -> web.Response:
        params = self._params(request)
        bridge = self._bridge(request.match_info["id"])
        media = params.get("media", "").split(",") if params.get("media") else []
        app_name = next((self.pbx.channels[c].app for c in bridge.channels
                         if c in self.pbx.channels and self.pbx.channels[c].app), DEFAULT_APP)
        body = self.pbx.play(f"bridge:{bridge.id}", app_name or DEFAULT_APP, media,
                             request.match_info.get("playbackId") or params.get("playbackId"),
                             params.get("lang") or "en")
        return ari_json(body, 201)

    # ------------------------------------------------------------------ playbacks
    async def playback_get(self, request: web.Request) -> web.Response:
        return ari_json(self._playback(request.match_info["id"]).json())

    async def playback_stop(self, request: web.Request) -> web.Response:
        self.pbx.stop_playback(self._playback(request.match_info["id"]))
        return no_content()

    async def playback_control(self, request: web.Request) -> web.Response:
        playback = self._playback(request.match_info["id"])
        operation = self._params(request).get("operation", "")
        if not operation:
            raise AriError(400, "Missing parameter operation")
        self.pbx.control_playback(playback, operation)
        return no_content()

    # ------------------------------------------------------------------ endpoints & devices
    async def endpoints_list(self, request: web.Request) -> web.Response:
        return ari_json([e.json() for e in sorted(self.pbx.endpoints.values(),
                                                  key=lambda e: e.key)])

    async def endpoints_by_tech(self, request: web.Request) -> web.Response:
        tech = request.match_info["tech"]
        found = [e.json() for e in sorted(self.pbx.endpoints.values(), key=lambda e: e.key)
                 if e.technology == tech]
        if not found:
            raise AriError(404, "Endpoint not found")
        return ari_json(found)

    async def endpoint_get(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['tech']}/{request.match_info['resource']}"
        endpoint = self.pbx.endpoints.get(key)
        if endpoint is None:
            raise AriError(404, "Endpoint not found")
        return ari_json(endpoint.json())

    async def endpoint_send_message(self, request: web.Request) -> web.Response:
        if "tech" in request.match_info:
            key = f"{request.match_info['tech']}/{request.match_info['resource']}"
        else:
            to = self._params(request).get("to", "")
            tech, _, rest = to.partition(":")
            key = f"{tech.upper() if tech.lower() == 'pjsip' else tech}/{rest.split('@')[0]}"
        if key not in self.pbx.endpoints:
            raise AriError(404, "Endpoint not found")
        return web.Response(status=202, headers=_headers())

    def _device_name(self, request: web.Request) -> str:
        # Asterisk routes only an encoded slash (PJSIP%2Fagent1) to the device resource.
        raw_tail = request.raw_path.split("?", 1)[0].split("/ari/deviceStates/", 1)[-1]
        if "/" in raw_tail:
            raise AriError(404, "Resource not found")
        return request.match_info["name"]

    async def device_states_list(self, request: web.Request) -> web.Response:
        return ari_json([{"name": n, "state": s} for n, s in self.pbx._device_states.items()])

    async def device_state_get(self, request: web.Request) -> web.Response:
        name = self._device_name(request)
        return ari_json({"name": name, "state": self.pbx.device_state(name)})

    async def device_state_put(self, request: web.Request) -> web.Response:
        name = self._device_name(request)
        if not name.startswith("Stasis:"):
            raise AriError(409, "Uncontrolled device specified")
        state = self._params(request).get("deviceState", "")
        if state not in DEVICE_STATES:
            raise AriError(500, "Unknown device")
        self.pbx._device_states[name] = state
        self.pbx._device_changed(name, state)
        return no_content()

    async def device_state_delete(self, request: web.Request) -> web.Response:
        name = self._device_name(request)
        if not name.startswith("Stasis:"):
            raise AriError(409, "Uncontrolled device specified")
        if self.pbx._device_states.pop(name, None) is None:
            raise AriError(404, "Device name not found")
        return no_content()

    # ------------------------------------------------------------------ sounds & recordings
    async def sounds_list(self, request: web.Request) -> web.Response:
        return ari_json([{"id": s, "text": "", "formats": [{"language": "en", "format": "slin"}]}
                         for s in sorted(self.pbx.sounds)])

    async def sound_get(self, request: web.Request) -> web.Response:
        sound = request.match_info["id"]
        if sound not in self.pbx.sounds:
            raise AriError(404, "Sound not found")
        return ari_json({"id": sound, "formats": [{"language": "en", "format": "slin"}]})

    async def recordings_list(self, request: web.Request) -> web.Response:
        return ari_json([])

    async def recording_get(self, request: web.Request) -> web.Response:
        raise AriError(404, "Recording not found")
